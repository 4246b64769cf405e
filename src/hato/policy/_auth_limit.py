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

    ``failed(ip)`` records a failure and returns True when it is one more than
    ``max_failures`` within the window: the IP is banned for ``ban_time`` and the session
    should be closed with 421. ``banned(ip)`` says whether a new connection is refused.
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
        stamps = self._failures.setdefault(ip, deque())
        stamps.append(now)
        if len(stamps) > self.max_failures:
            del self._failures[ip]
            self._bans[ip] = now + self.ban_time
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
