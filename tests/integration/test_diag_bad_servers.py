"""``hato test`` against servers that misbehave, each a real socket on loopback: nothing
listening, silence, a garbage banner, 421 and 554 banners, 500 to EHLO, a connection
closed mid-transaction, and an open relay. Each gets a diagnosis and exit 1 (the open
relay too), never a traceback or a hang."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from diag_helpers import codes, run_test
from scripted_smtp import ScriptedSmtp

TIMEOUT = 2  # --timeout for these runs: silence must be diagnosed quickly


def hato_test(*args: str) -> tuple[int, dict[str, Any]]:
    started = time.monotonic()
    status, report, _ = run_test(*args, "--no-tls", timeout=TIMEOUT)
    # Every wait is bounded: a few timeouts at most, never a hang.
    assert time.monotonic() - started < 10 * TIMEOUT + 10
    return status, report


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Script = Callable[[socket.socket], None]


class RawServer:
    """Accepts connections on loopback and runs ``script`` on each, in threads."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.lines: list[bytes] = []  # every line a client sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        conn.settimeout(15)
        with conn, contextlib.suppress(OSError):
            self.script(conn)

    def read_line(self, conn: socket.socket) -> bytes:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                break
            data += chunk
        self.lines.append(data)
        return data

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Script], RawServer]]:
    made: list[RawServer] = []

    def make(script: Script) -> RawServer:
        server = RawServer(script)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def test_nothing_listening() -> None:
    port = free_port()
    status, report = hato_test(f"127.0.0.1:{port}")
    assert status == 1
    assert codes(report) == ["connection-refused"]
    finding = report["hosts"][0]["findings"][0]
    assert "nothing is listening" in finding["title"]
    assert "ss -ltnp" in finding["next_steps"]
    assert [s["name"] for s in report["hosts"][0]["steps"]] == ["connect"]


def test_silent_server(raw_server: Callable[[Script], RawServer]) -> None:
    server = raw_server(lambda conn: time.sleep(4 * TIMEOUT))
    status, report = hato_test(f"127.0.0.1:{server.port}")
    assert status == 1
    assert codes(report) == ["no-banner"]
    assert "sent no banner" in report["hosts"][0]["findings"][0]["title"]


def test_garbage_banner(raw_server: Callable[[Script], RawServer]) -> None:
    server = raw_server(lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n") or time.sleep(1))
    status, report = hato_test(f"127.0.0.1:{server.port}")
    assert status == 1
    assert codes(report) == ["garbage"]
    assert "does not speak SMTP" in report["hosts"][0]["findings"][0]["title"]
    transcript = report["hosts"][0]["transcript"]
    assert transcript[-1]["text"] == "SSH-2.0-OpenSSH_9.6"


@pytest.mark.parametrize(
    ("banner", "code"),
    [
        (b"421 4.3.2 busy.test Service not available, try later\r\n", "banner-421"),
        (b"554 5.7.1 busy.test Your IP is on a blocklist\r\n", "banner-554"),
    ],
)
def test_refusing_banner(
    raw_server: Callable[[Script], RawServer], banner: bytes, code: str
) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(banner)
        if banner.startswith(b"554") and server.read_line(conn).startswith(b"QUIT"):
            conn.sendall(b"221 2.0.0 Bye\r\n")

    server = raw_server(script)
    status, report = hato_test(f"127.0.0.1:{server.port}")
    assert status == 1
    assert codes(report) == [code]
    host = report["hosts"][0]
    banner_step = next(s for s in host["steps"] if s["name"] == "banner")
    assert banner_step["status"] == "fail"
    if code == "banner-554":
        assert "your IP address" in host["findings"][0]["explanation"]
        assert server.lines == [b"QUIT\r\n"]  # a polite QUIT, nothing else


def test_500_to_ehlo_falls_back_to_helo(raw_server: Callable[[Script], RawServer]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 old.test SMTP ready\r\n")
        while line := server.read_line(conn):
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"500 Command unrecognized\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 Bye\r\n")
                return
            else:
                conn.sendall(b"250 Ok\r\n")

    server = raw_server(script)
    status, report = hato_test(f"127.0.0.1:{server.port}", "--to", "user@old.test")
    assert status == 0, report
    host = report["hosts"][0]
    assert [s["name"] for s in host["steps"]][:4] == ["connect", "banner", "EHLO", "HELO"]
    assert codes(report) == ["ehlo-refused-helo-ok"]
    assert host["extensions"] == []
    assert server.lines[1].startswith(b"HELO ")


def test_closed_mid_transaction(raw_server: Callable[[Script], RawServer]) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 flaky.test ESMTP\r\n")
        while line := server.read_line(conn):
            if line.upper().startswith(b"RCPT"):
                return  # hang up without a reply
            conn.sendall(b"250 Ok\r\n")

    server = raw_server(script)
    status, report = hato_test(f"127.0.0.1:{server.port}", "--to", "user@flaky.test")
    assert status == 1
    assert codes(report) == ["connection-reset"]
    finding = report["hosts"][0]["findings"][0]
    assert "after RCPT" in finding["title"]
    assert report["hosts"][0]["steps"][-1]["name"] == "RCPT"


def test_open_relay_is_reported(tmp_path: Path) -> None:
    # A deliberately misconfigured server: it accepts every recipient, anyone's.
    with ScriptedSmtp("127.0.0.1", free_port(), hostname="open.test") as relay:
        status, report = hato_test(
            f"127.0.0.1:{relay.port}", "--to", "postmaster@open.test", "--relay-test"
        )
    assert status == 1
    checks = report["hosts"][0]["relay_checks"]
    assert len(checks) == 5
    assert all(c["verdict"] == "open" for c in checks)
    assert codes(report).count("relay-open") == 5
    # Not this machine's Hato: nothing says whether it relays for anyone or trusts us.
    assert report["verdict"].startswith(
        "FAIL: 127.0.0.1 relayed hato-relay-test@example.net (foreign recipient) for"
        " 127.0.0.1: an OPEN RELAY, unless it trusts that address"
    )
    # Never DATA: the relay recorded transactions, none with a message.
    assert relay.delivered() == []
    assert any("%" in line for t in relay.transactions for line in t.recipients)
