"""Knowing when a file arrives in a directory: inotify(7) on Linux, polling elsewhere.

The watch only wakes its owner, who then lists the directory: an event names a file, but
a list is the truth (events can be lost when the kernel's queue overflows), so the owner
also lists it every ``RESCAN`` seconds whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

__all__ = ["POLL_INTERVAL", "RESCAN", "DirectoryWatch"]

POLL_INTERVAL = 0.5  # without inotify: new files are seen within this
RESCAN = 10.0  # with inotify: a listing anyway, in case an event was lost
# <sys/inotify.h>: a file closed after writing, moved in, or the queue overflowed.
_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_Q_OVERFLOW = 0x08, 0x80, 0x4000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, 0o2000000


def _inotify_fd(directories: list[Path]) -> int | None:
    """An inotify descriptor watching ``directories``, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    mask = _IN_CLOSE_WRITE | _IN_MOVED_TO
    for directory in directories:
        if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            os.close(fd)
            return None
    return fd


class DirectoryWatch:
    """``await watch.wait()`` returns when something may have arrived, or after the
    interval; the first call returns at once (files already there are taken too)."""

    def __init__(self, directories: list[Path], *, inotify: bool = True) -> None:
        self._fd = _inotify_fd(directories) if inotify else None
        self._woken = asyncio.Event()
        self._woken.set()
        self._reading = False

    @property
    def uses_inotify(self) -> bool:
        return self._fd is not None

    def wake(self) -> None:
        self._woken.set()

    async def wait(self) -> None:
        fd = self._fd
        if fd is not None and not self._reading:
            asyncio.get_running_loop().add_reader(fd, self._drain)
            self._reading = True
        interval = RESCAN if fd is not None else POLL_INTERVAL
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await self._woken.wait()
        self._woken.clear()

    def _drain(self) -> None:
        assert self._fd is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._fd, 65536):
                pass
        self._woken.set()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._reading:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
