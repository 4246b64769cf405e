"""A mailbox's usage for quota checks, kept in its Maildir++ ``maildirsize`` file.

The format is Courier's (README.maildirquota), which Dovecot's "maildir" quota backend
reads and updates: a first line with the quota definition (``<bytes>S``, maybe
``,<count>C``), then lines of two integers, ``<bytes> <count>``, whose sums are the usage.
Whoever changes the mailbox appends one line in one ``O_APPEND`` write (Dovecot appends
negative ones when it expunges), and the file is rebuilt from a count of the mailbox when
it cannot be trusted. Hato rebuilds it when it is missing, unreadable, broken, 5120 bytes
or longer, or when it says the mailbox is over quota and then doubts it as Maildir++ does
(more than the one summary line, or older than 15 minutes) or because the folders changed
after it was last written (a message removed by hand).

Reading the file is a stat(2) and, when it changed, one read of at most 5 KiB: cheap
enough for an RCPT command on the event loop. Counting the mailbox (30,000 messages cost
about 40 ms) is never done there: one worker thread does it, at most once a second for a
mailbox, and until it is done the last known usage stands (a Maildir++ quota is soft).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hato.delivery._reading import entries, entry_size

__all__ = ["Usage", "UsageTracker", "count"]

SIZE_FILE = "maildirsize"
_LOCK_FILE = "maildirsize.lock"  # the dotlock name Dovecot uses while it rewrites the file
_MAX_SIZE = 5120  # at this length the file is rebuilt (Maildir++), so no read is longer
_STALE_AFTER = 15 * 60  # an over-quota figure older than this is counted again
_LOCK_STALE_AFTER = 30  # a lock file older than this was left by a crash (Dovecot: 30 s)
_RECOUNT_PAUSE = 1.0  # seconds between two counts of one mailbox, whatever asks for them
_RETRIES = 3  # counts spoiled by a delivery meanwhile before the figure is kept anyway

_Signature = tuple[int, int, int]  # (inode, size, mtime in ns) of the file as read


@dataclass(frozen=True, slots=True)
class Usage:
    """What a mailbox holds: bytes and messages."""

    bytes: int = 0
    messages: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.bytes + other.bytes, self.messages + other.messages)


@dataclass(frozen=True, slots=True)
class _Parsed:
    usage: Usage
    lines: int  # "<bytes> <count>" lines after the definition
    mtime_ns: int
    too_long: bool


@dataclass(slots=True)
class _Mailbox:
    """What the tracker knows of one maildir; guarded by the tracker's lock."""

    signature: _Signature | None = None
    parsed: _Parsed | None = None
    # The last count, and the file's signature when that count could not be written
    # (then it is preferred to that file); None: the file holds the count.
    counted: Usage | None = None
    counted_over: _Signature | None = None
    pending: bool = False
    next_count: float = 0.0
    delivering: int = 0  # deliveries between their first link into new/ and their line
    generation: int = 0  # deliveries finished so far


class UsageTracker:
    """Usage per maildir from ``maildirsize``; deliveries report what they add."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._mailboxes: dict[Path, _Mailbox] = {}
        self._worker: ThreadPoolExecutor | None = None

    # -- the check at RCPT time ----------------------------------------------------------

    def usage(self, maildir: Path, quota: int | None) -> Usage:
        """The maildir's usage as last known, at the cost of a stat(2) and a small read.

        A missing or doubtful file is counted again in the worker thread; meanwhile the
        answer is what the file (or the last count) says, ``Usage()`` when nothing is known.
        """
        path = maildir / SIZE_FILE
        try:
            status = os.stat(path)
        except OSError:
            status = None
        with self._lock:
            known = self._mailboxes.setdefault(maildir, _Mailbox())
            signature = None if status is None else _signature(status)
            if signature != known.signature:
                known.signature = signature
                known.parsed = None if signature is None else _read(path)
            parsed = known.parsed
            if known.counted is not None and known.counted_over == signature:
                answer: Usage | None = known.counted
            else:
                answer = None if parsed is None else parsed.usage
            if parsed is None or _doubtful(parsed, quota, maildir):
                self._count_later(maildir, known, quota)
            if answer is None:
                answer = known.counted
        return answer if answer is not None else Usage()

    def _count_later(self, maildir: Path, known: _Mailbox, quota: int | None) -> None:
        now = self._clock()
        if known.pending or now < known.next_count:
            return
        known.pending = True
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="hato-maildirsize")
        self._worker.submit(self._recount, maildir, quota)

    # -- deliveries ----------------------------------------------------------------------

    @contextlib.contextmanager
    def delivering(self, maildirs: Iterable[Path]) -> Iterator[Callable[[Path, int], None]]:
        """Around a batch's moves into new/: yields ``added(maildir, size)`` for each copy.

        At the end each maildir that gained copies gets one line in its ``maildirsize``
        (when it has one). A count that overlaps a batch is not written (it may have seen a
        copy the batch's line also counts); the worker counts again.
        """
        touched = set(maildirs)
        added: dict[Path, Usage] = {}
        with self._lock:
            for maildir in touched:
                self._mailboxes.setdefault(maildir, _Mailbox()).delivering += 1

        def add(maildir: Path, size: int) -> None:
            added[maildir] = added.get(maildir, Usage()) + Usage(size, 1)

        try:
            yield add
        finally:
            with self._lock:
                for maildir in touched:
                    known = self._mailboxes[maildir]
                    if maildir in added:
                        _append(maildir / SIZE_FILE, added[maildir])
                        if known.counted is not None:
                            known.counted += added[maildir]
                    known.delivering -= 1
                    known.generation += 1

    # -- counting, in the worker thread --------------------------------------------------

    def _recount(self, maildir: Path, quota: int | None) -> None:
        try:
            usage = Usage()
            for attempt in range(_RETRIES):
                with self._lock:
                    known = self._mailboxes[maildir]
                    generation, busy = known.generation, known.delivering
                if busy and attempt < _RETRIES - 1:
                    time.sleep(0.05)  # a batch is moving copies in: count after its line
                    continue
                usage = count(maildir)
                with self._lock:
                    if generation == known.generation and not known.delivering:
                        written = _replace(maildir, quota, usage)
                        known.counted = usage
                        known.counted_over = None if written else _now(maildir)
                        return
            # Deliveries kept overlapping: the last count, in memory only, until next time.
            with self._lock:
                known.counted, known.counted_over = usage, _now(maildir)
        finally:
            with self._lock:
                known = self._mailboxes[maildir]
                known.pending = False
                known.next_count = self._clock() + _RECOUNT_PAUSE

    def wait(self) -> None:
        """Wait for the counts asked for so far (for tests and tools)."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.submit(lambda: None).result()


def count(maildir: Path) -> Usage:
    """Count new/ and cur/ of the maildir and of its Maildir++ folders (``.Name/``)."""
    folders = [maildir]
    with contextlib.suppress(OSError), os.scandir(maildir) as scan:
        folders += [Path(e.path) for e in scan if e.name.startswith(".") and e.is_dir()]
    total = Usage()
    for folder in folders:
        for sub in ("new", "cur"):
            sizes = [entry_size(entry) for entry in entries(folder / sub)]
            found = [size for size in sizes if size is not None]
            total += Usage(sum(found), len(found))
    return total


# -- the file ---------------------------------------------------------------------------


def _signature(status: os.stat_result) -> _Signature:
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def _now(maildir: Path) -> _Signature | None:
    try:
        return _signature(os.stat(maildir / SIZE_FILE))
    except OSError:
        return None


def _read(path: Path) -> _Parsed | None:
    """The file's sums, or None if it is unreadable or broken (then it is counted again)."""
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_SIZE + 1)
            mtime_ns = os.fstat(file.fileno()).st_mtime_ns
    except OSError:
        return None
    if b"\0" in data:
        return None
    # A last line without its line feed is still being written: it is left out.
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    if len(lines) < 2:
        return None
    total = Usage()
    for line in lines[1:]:
        parts = line.split()
        if len(parts) != 2:
            return None
        try:
            total += Usage(int(parts[0]), int(parts[1]))
        except ValueError:
            return None
    if total.bytes < 0 or total.messages < 0:
        return None
    return _Parsed(total, len(lines) - 1, mtime_ns, too_long=len(data) >= _MAX_SIZE)


def _doubtful(parsed: _Parsed, quota: int | None, maildir: Path) -> bool:
    """Whether a readable file must be counted again (see the module's doc)."""
    if parsed.too_long:
        return True
    if quota is None or parsed.usage.bytes < quota:
        return False
    if parsed.lines > 1 or parsed.mtime_ns < time.time_ns() - _STALE_AFTER * 10**9:
        return True
    return _changed_since(maildir, parsed.mtime_ns)


def _changed_since(maildir: Path, mtime_ns: int) -> bool:
    """Whether new/ or cur/ changed after the file was written (an update it never got)."""
    for sub in ("new", "cur"):
        try:
            if os.stat(maildir / sub).st_mtime_ns > mtime_ns:
                return True
        except OSError:
            continue
    return False


def _definition(quota: int | None) -> str:
    return f"{quota or 0}S"


def _append(path: Path, added: Usage) -> None:
    """One line, one write, as Maildir++ writers do; nothing if the file does not exist."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        os.write(fd, f"{added.bytes} {added.messages}\n".encode())
    except OSError:
        pass  # a figure a line short is corrected by the next count
    finally:
        os.close(fd)


def _replace(maildir: Path, quota: int | None, usage: Usage) -> bool:
    """Write a fresh file through Dovecot's dotlock name; False if it could not be written.

    The maildir itself is not created for this: a mailbox that does not exist holds nothing.
    """
    lock = maildir / _LOCK_FILE
    content = f"{_definition(quota)}\n{usage.bytes} {usage.messages}\n".encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(2):
        try:
            fd = os.open(lock, flags, 0o600)
        except FileExistsError:
            if not _stale_lock(lock):
                return False  # someone else is rewriting it right now
            with contextlib.suppress(OSError):
                os.unlink(lock)
            continue
        except OSError:
            return False
        try:
            os.write(fd, content)
            os.close(fd)
            os.rename(lock, maildir / SIZE_FILE)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            return False
        return True
    return False


def _stale_lock(lock: Path) -> bool:
    try:
        return os.stat(lock).st_mtime < time.time() - _LOCK_STALE_AFTER
    except OSError:
        return True
