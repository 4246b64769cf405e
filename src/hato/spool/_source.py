"""Where a message's bytes are, handed out by the spool so that no reader builds a path."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MessageSource"]


@dataclass(frozen=True, slots=True)
class MessageSource:
    """A message in memory (just received, never stored) or in its spool file.

    ``open`` gives a fresh binary reader each time; the caller closes it. A reader of a
    large message reads it in chunks, never all at once, unless it asks for ``read()``.
    """

    path: Path | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("a message source is a path or bytes, exactly one")

    @property
    def in_memory(self) -> bool:
        """True for a message that was never written to the spool (so never attempted)."""
        return self.data is not None

    def open(self) -> io.BufferedReader | io.BytesIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def size(self) -> int:
        """Its length in bytes (a stat for a file)."""
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return os.stat(self.path).st_size
