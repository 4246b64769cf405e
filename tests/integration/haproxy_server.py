"""A private HAProxy in TCP mode for tests: frontends on loopback ports, each relaying to a
backend address with a PROXY header (``send-proxy`` v1 or ``send-proxy-v2``).

Each instance has its own configuration file in ``tmp_path`` and runs in the foreground as
a child of the test (``haproxy -db -f CONF``); the system's HAProxy is never touched.
``Frontend`` names one relay: where it listens is ``port`` once started. ``source`` makes
HAProxy connect to the backend from that address (to play a proxy that is not listed).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
START_TIMEOUT = 10.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before HAProxy binds it

CONFIG_HEAD = """\
# A private instance for Hato's tests; nothing here touches the system's HAProxy.
global
    maxconn 256

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""

FRONTEND = """
frontend {name}
    bind 127.0.0.1:{port}
    default_backend {name}_backend

backend {name}_backend
    server hato {backend_host}:{backend_port} {send}{source}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Frontend:
    name: str
    backend: tuple[str, int]
    send: str = "send-proxy-v2"  # or "send-proxy" (v1)
    source: str | None = None
    port: int = field(default=0, init=False)


class HAProxy:
    def __init__(self, directory: Path, frontends: list[Frontend]) -> None:
        self.directory = directory
        self.frontends = {frontend.name: frontend for frontend in frontends}
        self.config = directory / "haproxy.cfg"
        self.log = directory / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def port(self, name: str) -> int:
        return self.frontends[name].port

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(START_ATTEMPTS):
            self._write_config()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [HAPROXY, "-db", "-f", str(self.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._listening():
                return
            self.stop()
            if attempt + 1 == START_ATTEMPTS:
                raise AssertionError(f"haproxy did not start:\n{self.log.read_text()}")

    def _write_config(self) -> None:
        text = CONFIG_HEAD
        for frontend in self.frontends.values():
            frontend.port = free_port()
            host, port = frontend.backend
            text += FRONTEND.format(
                name=frontend.name,
                port=frontend.port,
                backend_host=host,
                backend_port=port,
                send=frontend.send,
                source=f" source {frontend.source}" if frontend.source else "",
            )
        self.config.write_text(text)

    def _listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        waiting = {frontend.port for frontend in self.frontends.values()}
        while waiting and time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            for port in list(waiting):
                with socket.socket() as probe:
                    # Not connect(): HAProxy would relay it, a session on the backend.
                    try:
                        probe.bind(("127.0.0.1", port))
                    except OSError:
                        waiting.discard(port)  # bound: by HAProxy
            time.sleep(0.05)
        return not waiting

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
