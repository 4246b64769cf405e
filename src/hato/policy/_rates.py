"""Per-IP limits: simultaneous connections, and connections, messages and recipients per minute.

Counts live in memory (a restart forgets them, as Postfix's anvil does) and each kind is
a sliding window of event times per client IP. An event that is refused is not counted,
so a client that waits gets back in. The clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ..smtp import reply
from ._relay import Decision

__all__ = ["ClientLimits"]

WINDOW = 60.0  # the rates are per minute
# Past this many tracked IPs, stale entries are swept so memory stays bounded.
_SWEEP_AT = 10_000


class ClientLimits:
    def __init__(
        self,
        *,
        max_connections: int = 0,
        connection_rate: int = 0,
        message_rate: int = 0,
        recipient_rate: int = 0,
        hostname: str = "localhost",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.hostname = hostname
        self.clock = clock
        self._per_minute = {
            "connection": connection_rate,
            "message": message_rate,
            "recipient": recipient_rate,
        }
        self._open: dict[str, int] = {}
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def connect(self, ip: str) -> Decision | None:
        """A new connection from ``ip``: None to greet it, else the 421 to close it with."""
        if self.max_connections and self._open.get(ip, 0) >= self.max_connections:
            return Decision(
                reply=reply(421, "4.7.0", f"{self.hostname} Error: too many connections from {ip}"),
                reason=f"more than {self.max_connections} simultaneous connections from {ip}",
                rule="max_connections",
            )
        refusal = self._count("connection", ip)
        if refusal is not None:
            return refusal
        self._open[ip] = self._open.get(ip, 0) + 1
        return None

    def disconnect(self, ip: str) -> None:
        """A connection that connect() let in has ended."""
        left = self._open.get(ip, 0) - 1
        if left > 0:
            self._open[ip] = left
        else:
            self._open.pop(ip, None)

    def message(self, ip: str) -> Decision | None:
        return self._count("message", ip)

    def recipient(self, ip: str) -> Decision | None:
        return self._count("recipient", ip)

    def _count(self, kind: str, ip: str) -> Decision | None:
        limit = self._per_minute[kind]
        if not limit:
            return None
        now = self.clock()
        times = self._seen.get((kind, ip))
        if times is None:
            if len(self._seen) >= _SWEEP_AT:
                self._sweep(now)
            times = self._seen[(kind, ip)] = deque()
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if len(times) >= limit:
            rule = f"{kind}_rate"
            reason = f"more than {limit} {kind}s per minute from {ip}"
            if kind == "connection":
                answer = reply(
                    421, "4.7.0", f"{self.hostname} Error: too many connections from {ip}"
                )
            else:
                answer = reply(450, "4.7.1", f"Error: too many {kind}s from {ip}, slow down")
            return Decision(reply=answer, reason=reason, rule=rule)
        times.append(now)
        return None

    def _sweep(self, now: float) -> None:
        stale = [key for key, times in self._seen.items() if not times or times[-1] <= now - WINDOW]
        for key in stale:
            del self._seen[key]
