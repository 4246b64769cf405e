"""Fixtures shared by every test directory: a real ``hato serve`` process and a raw SMTP client.

``HatoProcess`` runs the installed ``hato`` console script on ``127.0.0.1:0`` with its own
data directory, learns its port from the ``server_started`` event in ``log/events.jsonl``, and
can stop it (SIGTERM), kill it (SIGKILL) and start it again on the same data directory.
``SmtpLineClient`` is a blocking socket that reads replies line by line with a deadline, so a
server that hangs fails the test instead of blocking it.

Use them through the fixtures ``hato_factory``, ``hato`` and ``smtp_connect``; import the
classes only for annotations (``if TYPE_CHECKING: from conftest import HatoProcess``), since
several directories may hold a ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from hato.spool import QueuedMessage, Spool

# The console script installed beside the interpreter running the tests (the venv's).
HATO = Path(sys.executable).with_name("hato")
HOSTNAME = "mx.test.example"
# Every address in a local domain is accepted, as the tests expect of a server that knows no
# users: a catch-all alias of each local domain leads off this server, to HOLD_TARGET. Mail to
# HOLD_TARGET's domain is routed to a closed loopback port (BASE_OPTIONS), so delivery there
# is deferred and an accepted message stays in the spool for the tests to read, rather than
# being delivered to a mailbox and removed.
HOLD_TARGET = "hold@relay.test.example"
# Every test server: loopback clients count as outside hosts (relay them only where a test
# says so), nothing ever asks a real DNS server, and HOLD_TARGET's domain goes to a closed
# loopback port, so what is addressed there stays queued (deferred) for the test to read.
# A test's own extra_args come later and win.
BASE_OPTIONS = (
    "relay.trusted_networks=[]",
    # No name server answers in tests unless a test starts one (tests/dns_server.py).
    "server.reverse_dns=false",
    'dns.nameservers=["127.0.0.1:9"]',
    # No SPF at MAIL FROM (each would wait out dns.timeout on that closed port) unless a
    # test turns it on beside its own DNS server.
    "mailauth.check=false",
    'relay.transports=["relay.test.example 127.0.0.1:9"]',
    # The built-in 127.0.0.1:2465 would clash between test servers: a free port instead,
    # found as HatoProcess.tls_port.
    'server.implicit_tls_listen=["127.0.0.1:0"]',
    # Likewise the built-in submission port 127.0.0.1:2587: HatoProcess.submission_port.
    'server.submission_listen=["127.0.0.1:0"]',
    # And the built-in web console port 127.0.0.1:8025: HatoProcess.web_port.
    'web.listen=["127.0.0.1:0"]',
)
# The server flushes its event log every 0.25 s; a start takes well under a second.
START_TIMEOUT = 20.0
# Past server.shutdown_grace (30 s by default), so a clean stop is never mistaken for a hang.
STOP_TIMEOUT = 45.0
POLL_INTERVAL = 0.02
# How long a read waits for the server before the test fails (a hang must not block the run).
READ_TIMEOUT = 10.0


def run_hato(
    *args: str | Path, timeout: float = 60.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``hato`` command to completion and capture its output."""
    return subprocess.run(
        [str(HATO), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def poll(
    condition: Callable[[], Any], *, timeout: float = START_TIMEOUT, what: str = "condition"
) -> Any:
    """Call ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_INTERVAL)


class HatoProcess:
    """One ``hato serve`` process on a loopback port and its data directory.

    ``start()`` may be called again after ``stop()`` or ``kill()``: the new process uses the
    same data directory (and so finds the same spool), on a new port. Before the first start
    the catch-all aliases described at ``HOLD_TARGET`` are added (unless ``accept_all`` is
    False, for tests about recipients).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        config: Path | None = None,
        hostname: str = HOSTNAME,
        extra_args: tuple[str, ...] = (),
        accept_all: bool = True,
        listen: str = "127.0.0.1:0",
    ) -> None:
        self.listen = listen
        self.host = listen.rpartition(":")[0]
        self.data_dir = data_dir
        self.accept_all = accept_all
        self._seeded = False
        self.config = config
        self.hostname = hostname
        self.extra_args = extra_args
        self.events_path = data_dir / "log" / "events.jsonl"
        self.stderr_path = data_dir.parent / f"{data_dir.name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._port: int | None = None
        self._tls_port: int | None = None
        self._submission_port: int | None = None
        self._web_port: int | None = None
        self._stderr: BinaryIO | None = None

    # -- the process ------------------------------------------------------------------

    def command(self) -> list[str]:
        args = [str(HATO), "serve", "--data-dir", str(self.data_dir)]
        args += ["--listen", self.listen, "--hostname", self.hostname]
        args += [arg for option in BASE_OPTIONS for arg in ("-o", option)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        return args + list(self.extra_args)

    def start(self, timeout: float = START_TIMEOUT) -> int:
        """Start the server and return its port once it listens."""
        if self.running:
            raise RuntimeError("hato is already running")
        self._close_stderr()
        if self.accept_all and not self._seeded:
            self._seed()
        started_before = len(self.events("server_started"))
        self._stderr = self.stderr_path.open("ab")
        env = dict(os.environ)
        env.pop("HATO_CONFIG", None)
        # SIGABRT makes a hung server print every thread's stack (see wait()).
        env["PYTHONFAULTHANDLER"] = "1"
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            env=env,
        )
        self.returncode = None
        self._port = None

        def listening() -> dict[str, Any] | None:
            started = self.events("server_started")
            if len(started) > started_before:
                return started[-1]
            assert self.proc is not None
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise AssertionError(
                    f"hato exited with {self.proc.returncode} before listening:\n{self.stderr()}"
                )
            return None

        event = poll(listening, timeout=timeout, what="server_started")
        host, _, port = event["listen"][0].rpartition(":")
        assert host == self.listen.rpartition(":")[0], event
        self.host = host
        self._port = int(port)
        implicit = event.get("implicit_tls") or []
        self._tls_port = int(implicit[0].rpartition(":")[2]) if implicit else None
        submission = event.get("submission") or []
        self._submission_port = int(submission[0].rpartition(":")[2]) if submission else None
        web = event.get("web") or []
        self._web_port = int(web[0].rpartition(":")[2]) if web else None
        return self._port

    def _seed(self) -> None:
        # Only the hostname matters to the alias commands (it makes a domain local).
        seed_config = self.data_dir.parent / f"{self.data_dir.name}-seed.toml"
        seed_config.write_text(f'[server]\nhostname = "{self.hostname}"\n')
        # Before the first start the CLI finds no data directory unless one is made for it.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for domain in ("localhost", self.hostname):
            args = ("alias", "add", f"@{domain}", HOLD_TARGET, "--config", seed_config)
            added = run_hato(*args, "--data-dir", self.data_dir)
            assert added.returncode == 0, added.stdout + added.stderr
        self._seeded = True

    def restart(self) -> int:
        """Start again on the same data directory (after ``stop`` or ``kill``)."""
        if self.running:
            self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("hato was never started")
        return self.proc.pid

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("hato is not listening")
        return self._port

    @property
    def tls_port(self) -> int:
        """The first implicit TLS listener's port (RFC 8314, port 465 style)."""
        if self._tls_port is None:
            raise RuntimeError("hato has no implicit TLS listener")
        return self._tls_port

    @property
    def submission_port(self) -> int:
        """The first message submission listener's port (RFC 6409, port 587 style)."""
        if self._submission_port is None:
            raise RuntimeError("hato has no submission listener")
        return self._submission_port

    @property
    def web_port(self) -> int:
        """The HTTP service's first port (web.listen)."""
        if self._web_port is None:
            raise RuntimeError("hato serves no HTTP (web.listen = [])")
        return self._web_port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def signal(self, signum: int) -> None:
        """Send a signal without waiting (to watch what the server does meanwhile)."""
        if self.proc is None:
            raise RuntimeError("hato was never started")
        self.proc.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit and return its status (negative: killed by a signal)."""
        if self.proc is None:
            raise RuntimeError("hato was never started")
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # faulthandler writes each thread's traceback to stderr before the process dies.
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError(
                f"hato did not exit within {timeout} s:\n{self.stderr()}"
            ) from None
        self._port = None
        self._close_stderr()
        return self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait for the exit; returns the exit status (0 for a clean stop)."""
        if self.running:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> int:
        """SIGKILL: the crash case, nothing gets to finish."""
        if self.running:
            self.signal(signal.SIGKILL)
        return self.wait()

    def close(self) -> None:
        """Teardown: make sure no process is left behind, however the test ended."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self._close_stderr()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr(self) -> str:
        """Everything the process wrote to stdout and stderr, across restarts."""
        try:
            return self.stderr_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def peak_rss_kib(self) -> int:
        """VmHWM of the running process: the most resident memory it has ever used."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
        assert match is not None, status
        return int(match.group(1))

    # -- the event log ----------------------------------------------------------------

    def events(self, name: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """Events written so far (all runs on this data dir), optionally filtered.

        ``fields`` must match exactly, e.g. ``events("queued", session=sid)``. A last line
        still being written (no newline yet) is left for the next call.
        """
        try:
            text = self.events_path.read_text("utf-8")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break
            record = json.loads(line)
            if name is not None and record.get("event") != name:
                continue
            if all(record.get(key) == value for key, value in fields.items()):
                found.append(record)
        return found

    def wait_for_event(
        self, name: str, *, timeout: float = START_TIMEOUT, **fields: Any
    ) -> dict[str, Any]:
        """The first event named ``name`` with these ``fields``, polling the log for it."""
        found = poll(
            lambda: self.events(name, **fields), timeout=timeout, what=f"event {name} {fields}"
        )
        return found[0]  # type: ignore[no-any-return]

    # -- the spool --------------------------------------------------------------------

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``hato ARGS --data-dir DIR`` (e.g. ``cli("queue", "list", "--json")``).

        The directory is made first, as an administrator's exists before they add to it
        (commands other than serve refuse one that does not)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return run_hato(*args, "--data-dir", self.data_dir)

    def add_user(self, address: str, password: str | None = None) -> None:
        """``hato user add`` (the password, if any, through --password-stdin); must succeed."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = ["user", "add", address, "--data-dir", str(self.data_dir)]
        if password is not None:
            args.append("--password-stdin")
        done = run_hato(*args, stdin=None if password is None else password + "\n")
        assert done.returncode == 0, done.stdout + done.stderr

    def queue(self) -> list[QueuedMessage]:
        """What the spool holds, read beside the server (or after it stopped)."""
        with Spool.open_readonly(self.data_dir) as spool:
            return spool.list()

    def message(self, queue_id: str) -> tuple[QueuedMessage, bytes]:
        """One queued message and its bytes (Received header included)."""
        with Spool.open_readonly(self.data_dir) as spool:
            message = spool.get(queue_id)
            assert message is not None, f"{queue_id} is not in the spool"
            with spool.open_data(queue_id) as data:
                return message, data.read()

    def messages(self) -> dict[str, bytes]:
        """Every queued message's bytes by queue ID."""
        with Spool.open_readonly(self.data_dir) as spool:
            found = {}
            for message in spool.list():
                with spool.open_data(message.queue_id) as data:
                    found[message.queue_id] = data.read()
            return found

    # Shared helpers, reachable through the fixtures' objects.
    poll = staticmethod(poll)

    @staticmethod
    def split_received(stored: bytes) -> tuple[bytes, bytes]:
        return split_received(stored)


def split_received(stored: bytes) -> tuple[bytes, bytes]:
    """Split a spooled message into the Received header Hato prepended and the rest."""
    assert stored.startswith(b"Received: "), stored[:200]
    end = 0
    while True:
        end = stored.index(b"\r\n", end) + 2
        if stored[end : end + 1] not in (b"\t", b" "):
            return stored[:end], stored[end:]


class SmtpLineClient:
    """A plain socket speaking SMTP line by line, with a deadline on every read."""

    def __init__(self, port: int, *, timeout: float = READ_TIMEOUT) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        # Each send() its own segment, so split writes reach the server split.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.eof = False

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into the buffer; False at end of stream."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no reply within {self.timeout} s; got {bytes(self.buffer)!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"no reply within {self.timeout} s; got {bytes(self.buffer)!r}"
            ) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def read_line(self) -> bytes:
        """One CRLF-terminated line, without the CRLF."""
        deadline = time.monotonic() + self.timeout
        while (end := self.buffer.find(b"\r\n")) < 0:
            if not self._fill(deadline):
                raise AssertionError(f"connection closed; left over: {bytes(self.buffer)!r}")
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def read_reply(self) -> list[str]:
        """A whole (possibly multi-line) reply as text lines, e.g. ["250 2.0.0 Ok"]."""
        lines = []
        while True:
            line = self.read_line().decode("utf-8", errors="replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def reply(self, line: str) -> str:
        """Send one command and return the last line of its reply."""
        self.command(line)
        return self.read_reply()[-1]

    def expect_closed(self) -> bytes:
        """Read until the server closes; returns whatever came before the end."""
        deadline = time.monotonic() + self.timeout
        while self._fill(deadline):
            pass
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hato_process_class() -> type[HatoProcess]:
    """The class itself, for a test that builds a server its own way: ``from conftest
    import HatoProcess`` at run time can find another directory's conftest module."""
    return HatoProcess


@pytest.fixture
def hato_factory(tmp_path: Path) -> Iterator[Callable[..., HatoProcess]]:
    """Make (not start) ``HatoProcess`` instances; every one is killed at teardown."""
    made: list[HatoProcess] = []

    def make(
        *,
        config: str | None = None,
        name: str = "data",
        extra_args: tuple[str, ...] = (),
        accept_all: bool = True,
        listen: str = "127.0.0.1:0",
    ) -> HatoProcess:
        config_path = None
        if config is not None:
            config_path = tmp_path / f"{name}.toml"
            config_path.write_text(config)
        process = HatoProcess(
            tmp_path / name,
            config=config_path,
            extra_args=extra_args,
            accept_all=accept_all,
            listen=listen,
        )
        made.append(process)
        return process

    yield make
    for process in made:
        process.close()


@pytest.fixture
def hato(hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    """A started server with the built-in configuration."""
    process = hato_factory()
    process.start()
    return process


@pytest.fixture
def hato_plain(hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    """A started server exactly as ``make serve`` runs it: no catch-all seeded."""
    process = hato_factory(accept_all=False, name="plain")
    process.start()
    return process


@pytest.fixture(scope="module")
def shared_hato(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HatoProcess]:
    """One server with the built-in configuration for a whole test module."""
    process = HatoProcess(tmp_path_factory.mktemp("shared") / "data")
    try:
        process.start()
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def module_hato_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., HatoProcess]]:
    """Like ``hato_factory``, for servers that every test of a module shares (started here,
    with ``-o`` options, unless ``start`` is False); every one is killed after the module."""
    made: list[HatoProcess] = []

    def make(
        name: str,
        *options: str,
        listen: str = "127.0.0.1:0",
        hostname: str = HOSTNAME,
        accept_all: bool = True,
        start: bool = True,
    ) -> HatoProcess:
        args = tuple(arg for option in options for arg in ("-o", option))
        process = HatoProcess(
            tmp_path_factory.mktemp(name) / "data",
            extra_args=args,
            hostname=hostname,
            accept_all=accept_all,
            listen=listen,
        )
        made.append(process)
        if start:
            process.start()
        return process

    yield make
    for process in made:
        process.close()


@pytest.fixture
def hato_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a ``hato`` command to completion: ``hato_cli("config", "check", path)``."""
    return run_hato


@pytest.fixture
def smtp_connect() -> Iterator[Callable[[int], SmtpLineClient]]:
    """Open ``SmtpLineClient`` connections that are all closed at teardown."""
    opened: list[SmtpLineClient] = []

    def connect(port: int, *, timeout: float = READ_TIMEOUT) -> SmtpLineClient:
        client = SmtpLineClient(port, timeout=timeout)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()
