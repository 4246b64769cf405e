"""Durability primitives shared by everything that writes mail to disk.

``syncfs(fd)`` makes everything written to one file system durable in one call (Linux);
``fsync_dir`` makes a directory entry durable; ``sync_mode`` turns the configured
``auto | syncfs | fsync`` into what this platform can do.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

__all__ = ["HAVE_SYNCFS", "SYNC_MODES", "fsync_dir", "sync_mode", "syncfs"]

SYNC_MODES = ("auto", "syncfs", "fsync")


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux), or None where the platform lacks it."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()
HAVE_SYNCFS = _SYNCFS is not None


def syncfs(fd: int) -> None:
    """Flush every dirty page and inode of the file system holding ``fd``, and wait."""
    if _SYNCFS is None:  # pragma: no cover - sync_mode() never picks syncfs without it
        raise OSError("syncfs(2) is not available")
    if _SYNCFS(fd) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"syncfs: {os.strerror(errno)}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_mode(sync: str) -> Literal["syncfs", "fsync"]:
    """Resolve a configured mode; ValueError for a mode this platform cannot honour."""
    if sync not in SYNC_MODES:
        raise ValueError(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
    if sync == "syncfs" and not HAVE_SYNCFS:
        raise ValueError("sync='syncfs' needs syncfs(2), which this platform lacks")
    return "syncfs" if sync != "fsync" and HAVE_SYNCFS else "fsync"
