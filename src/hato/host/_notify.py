"""systemd's notification protocol (sd_notify(3)): datagrams of ``KEY=VALUE`` lines.

``Notifier.from_environment()`` is None unless systemd (or a test) set ``NOTIFY_SOCKET``;
a path starting with ``@`` is an abstract socket. Sending never blocks and never fails the
server: a notification that cannot be delivered is dropped, as sd_notify does.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, address: str, *, watchdog_usec: int | None = None) -> None:
        # "@name" is the abstract namespace: a NUL byte first, no file.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_usec = watchdog_usec
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier | None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if not address or address[0] not in "/@":
            return None
        return cls(address, watchdog_usec=_watchdog_usec(env))

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of what systemd waits (sd_watchdog_enabled)."""
        if not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def send(self, **fields: str) -> bool:
        """One datagram, ``ready="1"`` as ``READY=1``; False when it could not be sent."""
        text = "".join(f"{key.upper()}={value}\n" for key, value in fields.items())
        try:
            self._sock.sendto(text.encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready="1", status=status, mainpid=str(os.getpid()))

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (Type=notify-reload) tell this reload from an older one.
        return self.send(reloading="1", monotonic_usec=str(time.monotonic_ns() // 1000))

    def stopping(self, status: str) -> bool:
        return self.send(stopping="1", status=status)

    def watchdog(self) -> bool:
        return self.send(watchdog="1")

    def close(self) -> None:
        self._sock.close()


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC, when meant for this process (WATCHDOG_PID unset or ours)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec)
