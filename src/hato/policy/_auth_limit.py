"""Brute-force limits for SMTP AUTH: failures counted per client IP, then a ban.

Pure logic with an injectable clock; the server keeps one :class:`AuthLimiter` in memory.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["AuthLimiter"]


class AuthLimiter:
    """Count failed AUTH attempts per IP within ``window``; past ``max_failures``, ban.

    ``failed(ip)`` records a failure and returns True when the IP is banned: this failure is
    one more than ``max_failures`` within the window, or a ban was already running; either
    way the ban runs ``ban_time`` from now. The session should then be closed with 421.
    ``banned(ip)`` says whether a connection, or an AUTH in a session already open, is
    refused. A ban does not wipe the history: failures still within the window count on.
    """

    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        ban_time: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.ban_time = ban_time
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._bans: dict[str, float] = {}  # ip -> when the ban ends

    def banned(self, ip: str) -> bool:
        until = self._bans.get(ip)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._bans[ip]
        return False

    def failed(self, ip: str) -> bool:
        now = self._clock()
        self._prune(now)
        # The last max_failures + 1 failures are all that "more than max_failures" needs.
        stamps = self._failures.setdefault(ip, deque(maxlen=self.max_failures + 1))
        stamps.append(now)
        if len(stamps) > self.max_failures or self.banned(ip):
            self._bans[ip] = now + self.ban_time  # one more guess during a ban prolongs it
            return True
        return False

    def _prune(self, now: float) -> None:
        # Bounded memory: forget failures older than the window, and ended bans.
        horizon = now - self.window
        for ip in list(self._failures):
            stamps = self._failures[ip]
            while stamps and stamps[0] <= horizon:
                stamps.popleft()
            if not stamps:
                del self._failures[ip]
        for ip in [ip for ip, until in self._bans.items() if until <= now]:
            del self._bans[ip]
