"""The runtime state of one server that its sessions share: who is connected, whether
the server is stopping, and session IDs. Owned by :class:`SmtpServer`."""

from __future__ import annotations

import itertools
import os
from typing import Protocol

__all__ = ["Closable", "Sessions"]


class Closable(Protocol):
    def shutdown(self, *, force: bool) -> None: ...


class Sessions:
    def __init__(self) -> None:
        self.open: set[Closable] = set()
        self.stopping = False
        self._ids = itertools.count()
        # Session IDs of two runs of the server differ (the flight recorder keeps both).
        self._prefix = os.urandom(2).hex()

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids):06x}"

    def __len__(self) -> int:
        return len(self.open)
