"""``hato serve`` on a systemd host: sd_notify to a real datagram socket (a path and an
abstract one), socket activation (sockets passed by the test, and by
``systemd-socket-activate``), giving up root for ``server.user`` after binding a port
below 1024, and the unit files against ``systemd-analyze verify``."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
HATO = Path(sys.executable).with_name("hato")
RECIPIENT = "user@mx.test.example"
MESSAGE = b"Subject: host\r\n\r\nHello.\r\n"
RECEIVE_TIMEOUT = 10.0


class NotifySocket:
    """The service manager's end: a datagram socket collecting what Hato says."""

    def __init__(self, address: str) -> None:
        self.env_value = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(RECEIVE_TIMEOUT)
        self.received: list[dict[str, str]] = []

    def until(self, key: str, value: str = "1") -> dict[str, str]:
        """Read datagrams until one says ``key=value``; returns it."""
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        while time.monotonic() < deadline:
            fields = dict(line.split("=", 1) for line in self.sock.recv(4096).decode().splitlines())
            self.received.append(fields)
            if fields.get(key) == value:
                return fields
        raise AssertionError(f"no {key}={value} in {self.received}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    listener = NotifySocket(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env_value)
    monkeypatch.setenv("WATCHDOG_USEC", "300000")  # a ping every 0.15 s
    yield listener
    listener.close()


def test_ready_status_watchdog_reloading_and_stopping(
    notify: NotifySocket, hato_factory: Callable[..., HatoProcess]
) -> None:
    hato = hato_factory()
    hato.start()
    ready = notify.until("READY")
    assert ready["MAINPID"] == str(hato.pid)
    assert ready["STATUS"].startswith("serving SMTP on ")
    assert f"127.0.0.1:{hato.port}" in ready["STATUS"]
    assert {"STATUS": "starting"} in notify.received  # before the listeners were up
    for _ in range(3):
        notify.until("WATCHDOG")
    hato.signal(signal.SIGHUP)
    notify.until("RELOADING")
    assert notify.until("READY")["STATUS"] == ready["STATUS"]
    hato.signal(signal.SIGTERM)
    assert notify.until("STOPPING")["STATUS"].startswith("stopping")
    assert hato.wait() == 0


def test_abstract_notify_socket(
    monkeypatch: pytest.MonkeyPatch, hato_factory: Callable[..., HatoProcess]
) -> None:
    listener = NotifySocket(f"@hato-test-{secrets.token_hex(8)}")
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env_value)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    try:
        hato = hato_factory()
        hato.start()
        assert listener.until("READY")["MAINPID"] == str(hato.pid)
        assert not any("WATCHDOG" in fields for fields in listener.received)
    finally:
        listener.close()


def test_no_notify_socket_no_notifications(hato: HatoProcess) -> None:
    # Nothing to assert on a socket that does not exist: the server serves all the same.
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        assert client.ehlo("client.example")[0] == 250


# -- socket activation ---------------------------------------------------------------


def listening_socket() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


def local_user_server(hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    """A server (not started) whose RECIPIENT is a mailbox: mail to it is delivered."""
    hato = hato_factory(accept_all=False)
    added = hato.cli("domain", "add", RECIPIENT.partition("@")[2])
    assert added.returncode == 0, added.stderr
    hato.add_user(RECIPIENT)
    return hato


def start_activated(
    hato: HatoProcess, sockets: list[tuple[str, socket.socket]], tmp_path: Path
) -> subprocess.Popen[bytes]:
    """``hato serve`` with sockets at fds 3, 4, ... and LISTEN_* set as systemd does
    (LISTEN_PID is the shell's own pid, which ``exec`` keeps)."""
    moves = " ".join(f"{3 + i}<&{sock.fileno()}" for i, (_, sock) in enumerate(sockets))
    names = ":".join(name for name, _ in sockets)
    script = f'LISTEN_PID=$$ LISTEN_FDS={len(sockets)} LISTEN_FDNAMES={names} exec "$@" {moves}'
    env = dict(os.environ)
    env.pop("HATO_CONFIG", None)
    with (tmp_path / "activated.log").open("ab") as log:
        return subprocess.Popen(
            ["/bin/bash", "-c", script, "bash", *hato.command()],
            pass_fds=[sock.fileno() for _, sock in sockets],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )


def wait_started(hato: HatoProcess, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    def started() -> list[dict[str, object]]:
        assert proc.poll() is None, f"hato exited with {proc.returncode}"
        return hato.events("server_started")

    return hato.poll(started, what="server_started")[-1]  # type: ignore[no-any-return]


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(45)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def test_sockets_passed_by_the_manager_are_served(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    smtp_sock, submission_sock = listening_socket(), listening_socket()
    smtp_port, submission_port = smtp_sock.getsockname()[1], submission_sock.getsockname()[1]
    hato = local_user_server(hato_factory)
    proc = start_activated(hato, [("smtp", smtp_sock), ("submission", submission_sock)], tmp_path)
    smtp_sock.close()
    submission_sock.close()
    try:
        started = wait_started(hato, proc)
        assert started["listen"] == [f"127.0.0.1:{smtp_port}"]
        assert started["submission"] == [f"127.0.0.1:{submission_port}"]
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            assert client.sendmail("a@client.example", [RECIPIENT], MESSAGE) == {}
        with smtplib.SMTP("127.0.0.1", submission_port, timeout=10) as client:
            client.ehlo("client.example")
            assert client.has_extn("auth") or client.has_extn("starttls")  # submission
        hato.wait_for_event("delivered", recipient=RECIPIENT)
    finally:
        assert stop(proc) == 0


def test_a_socket_with_an_unknown_name_is_a_clear_start_error(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    sock = listening_socket()
    hato = hato_factory(accept_all=False)
    proc = start_activated(hato, [("pop3", sock)], tmp_path)
    sock.close()
    assert proc.wait(30) == 1
    output = (tmp_path / "activated.log").read_text()
    assert "named 'pop3'" in output and "Traceback" not in output, output


def test_systemd_socket_activate(hato_factory: Callable[..., HatoProcess]) -> None:
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd)")
    hato = local_user_server(hato_factory)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ)
    env.pop("HATO_CONFIG", None)
    # It hands the program only the variables named with -E.
    passed = [f"-E{name}" for name in ("PYTHONPATH", "PATH") if name in env]
    proc = subprocess.Popen(
        [tool, "-l", f"127.0.0.1:{port}", "--fdname=smtp", *passed, *hato.command()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        # systemd-socket-activate starts the program at the first connection.
        time.sleep(0.5)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            assert client.sendmail("a@client.example", [RECIPIENT], MESSAGE) == {}
        started = hato.wait_for_event("server_started")
        assert started["listen"] == [f"127.0.0.1:{port}"]
    finally:
        stop(proc)


# -- giving up root ------------------------------------------------------------------


def free_low_port() -> int:
    for port in range(700, 1024):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory the unprivileged user can reach (pytest's own are root's only)."""
    directory = Path(tempfile.mkdtemp(prefix="hato-user-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_binds_a_low_port_as_root_then_runs_as_the_user(
    reachable_dir: Path, hato_process_class: type[HatoProcess]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving up root needs the tests to run as root")
    HatoProcess = hato_process_class

    nobody = pwd.getpwnam("nobody")
    port = free_low_port()
    hato = HatoProcess(
        reachable_dir / "data",
        listen=f"127.0.0.1:{port}",
        extra_args=("-o", 'server.user="nobody"'),
    )
    try:
        assert hato.start() == port
        status = Path(f"/proc/{hato.pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
        gids = re.search(r"^Gid:\s+(.*)$", status, re.MULTILINE)
        assert uids is not None and gids is not None
        assert uids.group(1).split() == [str(nobody.pw_uid)] * 4
        assert gids.group(1).split() == [str(nobody.pw_gid)] * 4
        assert (reachable_dir / "data").stat().st_uid == nobody.pw_uid
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.sendmail("a@client.example", [RECIPIENT], MESSAGE) == {}
        queued = hato.wait_for_event("queued")
        owner = next((reachable_dir / "data" / "spool").rglob(queued["queue_id"] + "*"))
        assert owner.stat().st_uid == nobody.pw_uid
        assert hato.stop() == 0
    finally:
        hato.close()


def test_an_unknown_user_is_a_start_error_naming_the_key(
    hato_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    result = hato_cli(
        "serve", "--data-dir", tmp_path / "data", "--listen", "127.0.0.1:0",
        "-o", 'server.user="no-such-user-here"',
    )  # fmt: skip
    assert result.returncode == 1
    assert "server.user: no user 'no-such-user-here'" in result.stderr
    assert "Traceback" not in result.stderr


# -- the unit files ------------------------------------------------------------------


def test_unit_files_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # verify wants ExecStart's program to exist: the installed path becomes this hato.
    service = (PACKAGING / "hato.service").read_text()
    assert "ExecStart=/usr/local/bin/hato serve" in service
    (tmp_path / "hato.service").write_text(service.replace("/usr/local/bin/hato", str(HATO)))
    units = [tmp_path / "hato.service"]
    for socket_unit in PACKAGING.glob("*.socket"):
        shutil.copy(socket_unit, tmp_path / socket_unit.name)
        units.append(tmp_path / socket_unit.name)
    result = subprocess.run(
        [tool, "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hato.service" not in result.stderr, result.stderr  # no warnings about it
    for setting in (
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/hato",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
        "PrivateTmp=yes",
        "ProtectHome=yes",
    ):
        assert setting in service, setting
    tmpfiles = (PACKAGING / "hato.tmpfiles").read_text()
    assert "d /var/lib/hato 0700 hato hato" in tmpfiles
