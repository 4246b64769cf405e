"""When to try again: exponential backoff with jitter, capped, within a lifetime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    initial: float = 300.0  # seconds before the first retry
    maximum: float = 3600.0  # longest wait between two attempts
    lifetime: float = 432000.0  # how long a message may stay queued
    jitter: float = 0.1  # up to this fraction is added, so retries of a burst spread out

    def delay(self, attempts: int, random: Callable[[], float]) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 for the first)."""
        base = min(self.initial * 2.0 ** max(0, attempts - 1), self.maximum)
        return base * (1.0 + self.jitter * random())

    def expired(self, arrival: float, now: float) -> bool:
        return now >= arrival + self.lifetime
