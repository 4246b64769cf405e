"""Spool, MessageWriter, and the committer thread that makes their commits durable in groups."""

import asyncio
import builtins
import contextlib
import fcntl
import os
import queue
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BufferedWriter, FileIO
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

from hato.spool._durable import fsync_dir, sync_mode, syncfs
from hato.spool._envelope import (
    QUEUED,
    Envelope,
    QueuedMessage,
    QueueIdSource,
    RecoveryReport,
    SpoolError,
    SpoolStats,
    is_queue_id,
)
from hato.spool._source import MessageSource
from hato.spool._store import SQLiteStore, Store, StoredMessage

__all__ = ["MessageWriter", "Spool", "message_path"]

# Python-side buffer of a message file: DATA arrives a line or a chunk at a time, and this turns
# small writes into few system calls while holding at most this much of a message in memory.
_WRITE_BUFFER = 64 * 1024
# An in-memory message (new_message(in_memory=True)) moves to its file past this size.
SPILL = 256 * 1024
_FILE_MODE = 0o600  # mail is private
_DIR_MODE = 0o700
# Fresh IDs collide only if two processes share a spool in one microsecond and draw the same
# random digits; a handful of attempts turns that into never.
_ID_ATTEMPTS = 8


def message_path(data_dir: Path, queue_id: str) -> Path:
    """Where a message's file lives; the last (random) character spreads them over 36 dirs."""
    return data_dir / "spool" / "msg" / queue_id[-1] / queue_id


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(mode=_DIR_MODE, parents=True)
    except FileExistsError:
        return
    fsync_dir(path.parent)  # the new entry must outlive a crash before the first commit


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _close_quietly(file: BinaryIO) -> None:
    with contextlib.suppress(OSError):
        file.close()


@dataclass(slots=True)
class _Counters:
    batches: int = 0
    messages: int = 0
    failed: int = 0
    largest_batch: int = 0


@dataclass(slots=True, eq=False)
class _Pending:
    """A commit handed from a session's event loop to the committer thread."""

    queue_id: str
    path: Path
    file: BinaryIO  # flushed; the committer fsyncs (in fsync mode) and closes it
    envelope: Envelope
    size: int
    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[None]"


_Outcome = tuple[_Pending, SpoolError | None]


class _Committer:
    """The one thread that makes pending commits durable, a whole batch per sync.

    While it syncs, new commits queue up and become the next batch: group commit without
    timers. ``syncfs_fds`` None means fsync mode (each file and directory, then a FULL commit);
    otherwise the index commits without syncing and one syncfs per filesystem covers it all.
    """

    def __init__(
        self,
        store: Store,
        counters: _Counters,
        *,
        syncfs_fds: tuple[int, ...] | None,
        max_batch: int,
    ) -> None:
        self._store = store
        self._counters = counters
        self._syncfs_fds = syncfs_fds
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hato-spool-committer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: _Pending) -> None:
        # Under the lock so nothing lands behind the stop marker and waits forever.
        with self._lock:
            if self._closed:
                raise SpoolError("spool is closed")
            self._queue.put(item)

    def close(self) -> None:
        """Commit what was submitted, then stop the thread."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._take()
            if not batch:
                continue
            try:
                outcomes = self._commit(batch)
            except Exception as exc:  # a bug must not leave sessions waiting forever
                outcomes = self._fail(batch, exc)
            _settle(outcomes)

    def _take(self) -> tuple[list[_Pending], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, batch: list[_Pending]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        ready: list[_Pending] = []
        for item in batch:
            error = self._seal(item)
            if error is None:
                ready.append(item)
            else:
                outcomes += self._fail([item], error)
        if ready:
            outcomes += self._make_durable(ready)
        return outcomes

    def _seal(self, item: _Pending) -> OSError | None:
        try:
            if self._syncfs_fds is None:
                os.fsync(item.file.fileno())
            item.file.close()
        except OSError as exc:
            _close_quietly(item.file)
            return exc
        return None

    def _make_durable(self, ready: list[_Pending]) -> list[_Outcome]:
        try:
            if self._syncfs_fds is None:
                for directory in {item.path.parent for item in ready}:
                    fsync_dir(directory)
            self._store.insert([_stored(item) for item in ready])
        except (OSError, SpoolError) as exc:
            return self._fail(ready, exc)
        try:
            for fd in self._syncfs_fds or ():
                syncfs(fd)
        except OSError as exc:
            return self._retract(ready, exc)
        counters = self._counters
        counters.batches += 1
        counters.messages += len(ready)
        counters.largest_batch = max(counters.largest_batch, len(ready))
        return [(item, None) for item in ready]

    def _retract(self, ready: list[_Pending], exc: OSError) -> list[_Outcome]:
        """The rows are committed but may not be durable: take them back, then fail."""
        try:
            self._store.delete(item.queue_id for item in ready)
        except SpoolError:
            # Keep the files: a message queued although its client saw 451 and retries is a
            # duplicate; a row without its file would be a loss.
            self._counters.failed += len(ready)
            return [(item, _error(item, exc)) for item in ready]
        return self._fail(ready, exc)

    def _fail(self, items: list[_Pending], exc: Exception) -> list[_Outcome]:
        for item in items:
            _close_quietly(item.file)
            _unlink(item.path)
        self._counters.failed += len(items)
        return [(item, _error(item, exc)) for item in items]


def _stored(item: _Pending) -> StoredMessage:
    states = (QUEUED,) * len(item.envelope.recipients)
    return StoredMessage(
        queue_id=item.queue_id, envelope=item.envelope, size=item.size, states=states
    )


def _error(item: _Pending, exc: Exception) -> SpoolError:
    error = SpoolError(f"cannot queue {item.queue_id}: {exc}")
    error.__cause__ = exc
    return error


def _settle(outcomes: list[_Outcome]) -> None:
    """Wake the waiters: one call per event loop and batch, not one per message."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, results in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, results)


def _resolve(outcomes: list[_Outcome]) -> None:
    for item, error in outcomes:
        if item.future.done():  # its waiter was cancelled
            continue
        if error is None:
            item.future.set_result(None)
        else:
            item.future.set_exception(error)


def _check_ranges(ranges: Sequence[tuple[int, int]], size: int) -> None:
    """Ranges to leave out are in order, apart, and inside the message: anything else is
    a caller's bug, found before a byte is moved."""
    at = 0
    for start, end in ranges:
        if not at <= start <= end <= size:
            raise ValueError(f"byte ranges to leave out must be in order within {size}")
        at = end


def _copy_bytes(source: BinaryIO, target: BinaryIO, length: int) -> None:
    while length > 0:
        chunk = source.read(min(length, _WRITE_BUFFER))
        if not chunk:
            raise OSError("the message file is shorter than it was written")
        target.write(chunk)
        length -= len(chunk)


class MessageWriter:
    """One message being received: its bytes stream into a file, ``commit`` queues it.

    Use it from the event loop thread that will await ``commit``. After a ``SpoolError`` the
    message is gone and further calls raise ``SpoolError`` again; calling ``write`` or
    ``commit`` after ``commit`` or ``abort`` is a bug and raises ``RuntimeError``.

    Without a file (``Spool.new_message(in_memory=True)``) the bytes are kept in memory
    until they pass ``SPILL`` or the message is committed, and then written to its file:
    a message delivered while its client waits and then dropped never costs the spool a
    file (``contents``).
    """

    def __init__(
        self,
        *,
        queue_id: str,
        path: Path,
        file: BinaryIO | None,
        committer: _Committer,
    ) -> None:
        self.queue_id = queue_id
        self.size = 0  # bytes written so far
        self._path = path
        self._file: BinaryIO | None = file
        self._memory: bytearray | None = bytearray() if file is None else None
        self._committer = committer
        self._failed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``: buffered, never synced, so cheap enough for the event loop."""
        memory = self._memory
        if memory is not None and len(memory) + len(data) <= SPILL:
            memory += data
            self.size += len(data)
        else:
            file = self._open_file()
            try:
                self.size += file.write(data)
            except OSError as exc:
                self._discard(failed=True)
                raise SpoolError(f"cannot write {self.queue_id}: {exc}") from exc

    def prepend(self, data: bytes, leave_out: Sequence[tuple[int, int]] = ()) -> None:
        """Put ``data`` (header fields a filter added at the end) before what was written,
        leaving out the byte ranges ``leave_out`` (``(start, end)`` offsets into what was
        written, in order and apart: fields a filter removes).

        In memory this is a splice. A message that already has its file is copied once
        into a new file behind the fields, which then takes the old one's name: call it
        in a thread for such a message. Nothing is synced; ``commit`` does that.
        """
        _check_ranges(leave_out, self.size)
        removed = sum(end - start for start, end in leave_out)
        memory = self._memory
        if memory is not None:
            for start, end in reversed(leave_out):
                del memory[start:end]
            memory[:0] = data
            self.size += len(data) - removed
            return
        old = self._open_file()
        staged = self._path.with_name(self._path.name + ".new")
        try:
            old.flush()
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
            new = BufferedWriter(FileIO(fd, "wb"), _WRITE_BUFFER)
            try:
                new.write(data)
                with open(self._path, "rb") as source:
                    for start, end in leave_out:
                        _copy_bytes(source, new, start - source.tell())
                        source.seek(end)
                    shutil.copyfileobj(source, new, _WRITE_BUFFER)
                new.flush()
            except OSError:
                _close_quietly(new)
                raise
            os.replace(staged, self._path)
        except OSError as exc:
            _unlink(staged)
            self._discard(failed=True)
            raise SpoolError(f"cannot write {self.queue_id}: {exc}") from exc
        _close_quietly(old)
        self._file = new
        self.size += len(data) - removed

    def source(self) -> MessageSource:
        """Where the message is now, for a reader before (or instead of) its commit: its
        bytes while it is only in memory, else its file, with what was written handed to
        the OS (no sync)."""
        if self._memory is not None:
            return MessageSource(data=bytes(self._memory))
        return MessageSource(path=self.flush())

    def contents(self) -> bytes | None:
        """The message when it is still only in memory; None once it has its file."""
        return bytes(self._memory) if self._memory is not None else None

    def flush(self) -> Path:
        """Hand what was written to the OS (no sync) and say where: for a reader in this
        process that takes the message before, or instead of, its commit."""
        file = self._open_file()
        try:
            file.flush()
        except OSError as exc:
            self._discard(failed=True)
            raise SpoolError(f"cannot write {self.queue_id}: {exc}") from exc
        return self._path

    def abort(self) -> None:
        """Drop the message: close and remove its file. Idempotent; no effect once committing."""
        if self._file is not None or self._memory is not None:
            self._discard(failed=False)

    async def commit(self, envelope: Envelope) -> None:
        """Return once bytes and envelope are durable; raise ``SpoolError`` if they cannot be.

        On failure the file is removed. If the awaiting task is cancelled the commit still
        completes, so the message may be queued although its client never saw 250.
        """
        file = self._open_file()
        loop = asyncio.get_running_loop()
        try:
            file.flush()
        except OSError as exc:
            self._discard(failed=True)
            raise SpoolError(f"cannot write {self.queue_id}: {exc}") from exc
        item = _Pending(
            queue_id=self.queue_id,
            path=self._path,
            file=file,
            envelope=envelope,
            size=self.size,
            loop=loop,
            future=loop.create_future(),
        )
        self._file = None  # from here the committer owns the file
        self._failed = True  # until the commit succeeds
        try:
            self._committer.submit(item)
        except SpoolError:
            _close_quietly(file)
            _unlink(self._path)
            raise
        await item.future
        self._failed = False

    def _open_file(self) -> BinaryIO:
        if self._file is not None:
            return self._file
        if self._memory is not None:
            return self._spill(self._memory)
        if self._failed:
            raise SpoolError(f"message {self.queue_id} was not queued")
        raise RuntimeError(f"message {self.queue_id} is already committed or aborted")

    def _spill(self, memory: bytearray) -> BinaryIO:
        """Give the message its file at last, with what memory held so far."""
        self._memory = None
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except OSError as exc:
            self._failed = True
            raise SpoolError(f"cannot create {self._path}: {exc}") from exc
        file = self._file = BufferedWriter(FileIO(fd, "wb"), _WRITE_BUFFER)
        try:
            file.write(memory)
        except OSError as exc:
            self._discard(failed=True)
            raise SpoolError(f"cannot write {self.queue_id}: {exc}") from exc
        return file

    def _discard(self, *, failed: bool) -> None:
        file, self._file = self._file, None
        self._memory = None
        self._failed = failed
        if file is not None:
            _close_quietly(file)
            _unlink(self._path)


class Spool:
    """Accepted messages under ``data_dir``: ``spool.sqlite3`` indexes ``spool/msg/XX/<ID>``.

    ``sync`` picks how commits become durable: "syncfs" (one syncfs(2) per batch), "fsync"
    (each file and directory, then the index; portable) or "auto" (syncfs where libc has it).
    For syncfs, a filesystem of the spool's own avoids syncing other programs' writes.
    """

    def __init__(self, data_dir: Path, *, sync: str = "auto", max_batch: int = 256) -> None:
        resolved = sync_mode(sync)
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.data_dir = Path(data_dir)
        self.sync: Literal["syncfs", "fsync"] = resolved
        self.max_batch = max_batch
        self.recovery: RecoveryReport | None = None  # set by open()
        self._msg_dir = self.data_dir / "spool" / "msg"
        self._db_path = self.data_dir / "spool.sqlite3"
        self._ids = QueueIdSource()
        self._known_dirs: set[str] = set()
        self._counters = _Counters()
        self._store: Store | None = None
        self._committer: _Committer | None = None
        self._lock_fd: int | None = None
        self._sync_fds: tuple[int, ...] = ()

    @classmethod
    def open_readonly(cls, data_dir: Path) -> "Spool":
        """Open for reading only, beside a running server: no lock, recovery or committer."""
        spool = cls(data_dir)
        spool._store = SQLiteStore(spool._db_path, readonly=True)
        return spool

    def open(self) -> RecoveryReport:
        """Create what is missing, take the spool's lock, recover, start the committer."""
        if self._store is not None:
            raise SpoolError("spool is already open")
        try:
            self._prepare()
            store = self._store = SQLiteStore(
                self._db_path, synchronous="NORMAL" if self.sync == "syncfs" else "FULL"
            )
            self.recovery = self._recover(store)
            if self.sync == "syncfs":
                self._sync_fds = self._open_filesystems()
            self._committer = _Committer(
                store,
                self._counters,
                syncfs_fds=self._sync_fds if self.sync == "syncfs" else None,
                max_batch=self.max_batch,
            )
            self._committer.start()
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise SpoolError(f"cannot open the spool in {self.data_dir}: {exc}") from exc
            raise
        return self.recovery

    def close(self) -> None:
        """Finish pending commits, stop the committer, close the index. Idempotent."""
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()
        store, self._store = self._store, None
        if store is not None:
            store.close()
        for fd in self._sync_fds:
            os.close(fd)
        self._sync_fds = ()
        if self._lock_fd is not None:  # last, so no other process opens the spool too early
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Spool":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def stats(self) -> SpoolStats:
        c = self._counters
        return SpoolStats(
            batches=c.batches, messages=c.messages, failed=c.failed, largest_batch=c.largest_batch
        )

    def new_message(self, *, in_memory: bool = False) -> MessageWriter:
        """Allocate a queue ID and create its file; the caller streams DATA into the writer.

        ``in_memory``: the file is made only when needed (see ``MessageWriter``).
        """
        committer = self._committer
        if committer is None:
            raise SpoolError("spool is not open for writing")
        for _ in range(_ID_ATTEMPTS):
            queue_id = self._ids.next()
            path = self._message_path(queue_id)
            try:
                self._ensure_subdir(path.parent)
                if in_memory:
                    # No file yet to claim the ID: IDs are unique by time and chance (see
                    # QueueIdSource), and the file, if ever made, is still made O_EXCL.
                    return MessageWriter(
                        queue_id=queue_id, path=path, file=None, committer=committer
                    )
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            except FileExistsError:
                continue
            except OSError as exc:
                raise SpoolError(f"cannot create {path}: {exc}") from exc
            file = BufferedWriter(FileIO(fd, "wb"), _WRITE_BUFFER)
            return MessageWriter(queue_id=queue_id, path=path, file=file, committer=committer)
        raise SpoolError("cannot allocate a unique queue ID")

    def get(self, queue_id: str) -> QueuedMessage | None:
        if not is_queue_id(queue_id):
            return None
        stored = self._require_store().get(queue_id)
        return None if stored is None else self._queued(stored)

    def source(self, queue_id: str) -> MessageSource:
        """The stored message of ``queue_id`` (whether or not it is still queued)."""
        return MessageSource(path=self._message_path(queue_id))

    def open_data(self, queue_id: str) -> BinaryIO:
        """The message bytes of a queued message; ``KeyError`` if no such message is queued."""
        if self.get(queue_id) is None:
            raise KeyError(queue_id)
        try:
            return open(self._message_path(queue_id), "rb")
        except OSError as exc:
            raise SpoolError(f"cannot read {queue_id}: {exc}") from exc

    def _require_store(self) -> Store:
        if self._store is None:
            raise SpoolError("spool is not open")
        return self._store

    def _message_path(self, queue_id: str) -> Path:
        return message_path(self.data_dir, queue_id)

    def _queued(self, stored: StoredMessage) -> QueuedMessage:
        return QueuedMessage(
            queue_id=stored.queue_id,
            envelope=stored.envelope,
            size=stored.size,
            path=self._message_path(stored.queue_id),
            states=stored.states,
        )

    def _ensure_subdir(self, path: Path) -> None:
        if path.name in self._known_dirs:
            return
        path.mkdir(mode=_DIR_MODE, exist_ok=True)
        if self.sync == "fsync":
            # Its entry in msg/ must be durable before a message in it is acknowledged. The
            # prefix is time-based, so this happens about once a month (and once per start).
            fsync_dir(self._msg_dir)
        self._known_dirs.add(path.name)

    def _prepare(self) -> None:
        for path in (self.data_dir, self.data_dir / "spool", self._msg_dir):
            _make_dir(path)
        self._lock_fd = os.open(self.data_dir / "spool.lock", os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise SpoolError(f"the spool in {self.data_dir} is in use by another process") from exc
        if not self._db_path.exists():
            # Created here rather than by SQLite, for its mode and its durable directory entry.
            os.close(os.open(self._db_path, os.O_WRONLY | os.O_CREAT, _FILE_MODE))
            fsync_dir(self.data_dir)

    def _open_filesystems(self) -> tuple[int, ...]:
        """A descriptor per filesystem holding the index or messages, for syncfs."""
        fds: dict[int, int] = {}
        try:
            for path in (self.data_dir, self._msg_dir):
                device = path.stat().st_dev
                if device not in fds:
                    fds[device] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            for fd in fds.values():
                os.close(fd)
            raise
        return tuple(fds.values())

    def _recover(self, store: Store) -> RecoveryReport:
        """Delete files never committed; report rows whose file is missing or truncated."""
        sizes = store.sizes()
        found: dict[str, int] = {}
        orphans: builtins.list[os.DirEntry[str]] = []
        for entry in self._message_files():
            if entry.name in sizes:
                found[entry.name] = entry.stat(follow_symlinks=False).st_size
            else:
                orphans.append(entry)
        for entry in orphans:
            _unlink(Path(entry.path))
        broken = tuple(q for q, size in sorted(sizes.items()) if found.get(q) != size)
        return RecoveryReport(
            queued=len(sizes) - len(broken),
            orphans_removed=tuple(sorted(entry.name for entry in orphans)),
            broken=broken,
        )

    def _message_files(self) -> Iterator[os.DirEntry[str]]:
        with os.scandir(self._msg_dir) as subdirs:
            for subdir in subdirs:
                if not subdir.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(subdir.path) as files:
                    for entry in files:
                        if (
                            entry.is_file(follow_symlinks=False)
                            and is_queue_id(entry.name)
                            and entry.name[-1:] == subdir.name
                        ):
                            yield entry

    def list(self) -> builtins.list[QueuedMessage]:
        """Every queued message, in arrival (queue ID) order."""
        return [self._queued(stored) for stored in self._require_store().list()]
