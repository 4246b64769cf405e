"""The Maildir agent: local delivery as a transaction (tmp/, durable, then new/)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BufferedReader, BytesIO
from pathlib import Path
from typing import Literal

from hato.delivery._maildirsize import Usage, UsageTracker
from hato.delivery._reading import (
    MaildirMessage,
    entries,
    entry_size,
    find_loop,
    summary,
)
from hato.delivery._result import (
    BAD_MAILBOX,
    MAIL_LOOP,
    SYSTEM_ERROR,
    Result,
    os_error_result,
)

# The spool's durability primitives, shared so both stores sync the same way.
from hato.spool import MessageSource, fsync_dir, is_queue_id, sync_mode, syncfs

__all__ = ["MaildirAgent", "MaildirJob"]

_Source = BufferedReader | BytesIO  # the message: its spool file, or still in memory
_FILE_MODE = 0o600  # mail is private
_DIR_MODE = 0o700
_FOLDERS: tuple[Literal["new", "cur"], ...] = ("new", "cur")
# Message bodies are copied in chunks of this size: a 50 MB message costs 256 KiB of memory.
_COPY_CHUNK = 256 * 1024
# What a mailbox or domain directory keeps as it is: RFC 5322 atext without "/" (a path
# separator) and "%" (our escape character), and "." except in front.
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_PLAIN = frozenset(_ALNUM + "!#$&'*+-=?^_`{|}~.")
_MAX_NAME = 255  # bytes in one directory entry (NAME_MAX)
_HOSTNAME_PLAIN = frozenset(_ALNUM + ".-_")


@dataclass(frozen=True, slots=True, kw_only=True)
class MaildirJob:
    """One recipient's copy of a spooled message, to be stored in one mailbox.

    ``queue_id`` and ``recipient_index`` together name the delivery: delivering the same job
    twice stores one copy. ``recheck`` is for a retry after a crash, when an earlier attempt
    may have stored the copy and an IMAP client may since have moved it to cur/.
    """

    queue_id: str
    recipient_index: int
    domain: str
    local_part: str
    delivered_to: str
    reverse_path: str  # "" is the null sender, stored as "Return-Path: <>"
    # The message: from the spool, or in memory while its client waits (delivery in the
    # DATA phase). One in memory was never attempted before, so no copy of it can exist
    # yet: its tmp/ file is renamed into new/ (one step, not two).
    source: MessageSource
    arrival: float
    recheck: bool = False
    # A Maildir++ folder of the mailbox ("" the inbox), e.g. "Junk" for a quarantined copy.
    folder: str = ""

    def __post_init__(self) -> None:
        if not is_queue_id(self.queue_id):
            raise ValueError(f"not a queue ID: {self.queue_id!r}")
        if self.recipient_index < 0:
            raise ValueError("recipient_index must not be negative")
        if self.arrival < 0:
            raise ValueError("arrival must not be negative")
        if not self.domain or not self.local_part or not self.delivered_to:
            raise ValueError("domain, local_part and delivered_to must not be empty")
        # Both become header fields: a line break in them would inject header lines.
        for name in ("delivered_to", "reverse_path"):
            if any(char in getattr(self, name) for char in "\r\n\0"):
                raise ValueError(f"{name} must not contain CR, LF or NUL")


@dataclass(slots=True, kw_only=True)
class _Staged:
    """A job whose copy waits for the batch's commit.

    Usually the copy is complete in tmp/ and waits to be moved into new/. With ``tmp`` None
    it is an earlier attempt's copy that ``recheck`` found in ``folder``: nothing to move,
    but it is synced again, since the crash may have come before that attempt's sync.
    """

    index: int
    maildir: Path
    device: int
    tmp: Path | None
    name: str
    size: int
    folder: Literal["new", "cur"] = "new"
    first: bool = False  # no earlier attempt: rename, no copy to look for
    detail: str = field(default="delivered to maildir")

    @property
    def path(self) -> Path:
        """Where the copy is, or will be once published."""
        return self.maildir / self.folder / self.name


class MaildirAgent:
    """Delivers into Maildirs under ``root`` (DATA/mailboxes): ``<domain>/<local_part>/``.

    ``sync`` picks how a batch is made durable before ``deliver`` returns: "syncfs" (one
    syncfs(2) per file system and batch), "fsync" (each file, then each new/ directory once;
    portable) or "auto" (syncfs where libc has it). One agent may serve several threads.
    """

    def __init__(
        self, root: Path, *, hostname: str, sync: str = "auto", max_received: int = 50
    ) -> None:
        resolved = sync_mode(sync)
        if max_received < 1:
            raise ValueError("max_received must be at least 1")
        if not hostname:
            raise ValueError("hostname must not be empty")
        self.root = Path(root)
        self.hostname = hostname
        self.sync: Literal["syncfs", "fsync"] = resolved
        self.max_received = max_received
        self._name_host = _escape_hostname(hostname)
        self._ready: dict[Path, int] = {}  # maildirs known to exist -> their st_dev
        self._tmp_serial = itertools.count()
        self._usage = UsageTracker()

    # -- delivery -----------------------------------------------------------------------

    def deliver(self, jobs: Sequence[MaildirJob]) -> list[Result]:
        """Store every job; return one result per job, in order, once all are durable."""
        results: list[Result | None] = [None] * len(jobs)
        staged: list[_Staged] = []
        for index, job in enumerate(jobs):
            outcome = self._stage(index, job)
            if isinstance(outcome, Result):
                results[index] = outcome
            else:
                staged.append(outcome)
        for index, result in self._commit(staged):
            results[index] = result
        return [_settled(result) for result in results]

    def _stage(self, index: int, job: MaildirJob) -> Result | _Staged:
        """Check the message and copy it into tmp/, or say why it cannot be delivered."""
        try:
            maildir = self.mailbox_dir(job.domain, job.local_part)
        except ValueError as exc:
            return Result.failed(BAD_MAILBOX, f"no mailbox name for this address: {exc}")
        if job.folder:
            maildir = maildir / f".{job.folder}"  # Maildir++: a folder is a dot-directory
        source: _Source
        try:
            source = job.source.open()
        except OSError as exc:
            return os_error_result(exc, "cannot read the queued message")
        with source:
            header = _trace_header(job)
            try:
                loop = find_loop(source, job.delivered_to, self.max_received)
                data = job.source.data
                length = len(data) if data is not None else os.fstat(source.fileno()).st_size
                size = len(header) + length
            except OSError as exc:
                return os_error_result(exc, "cannot read the queued message")
            if loop is not None:
                return Result.failed(MAIL_LOOP, f"mail loop: {loop}")
            if job.recheck and (found := self._earlier_copy(index, maildir, job, size)):
                return found
            name = f"{_base_name(job)}{self._name_host},S={size}"
            try:
                tmp, device = self._copy_in(maildir, name, header, source, size)
            except OSError as exc:
                self._ready.pop(maildir, None)  # look at it afresh next time
                return os_error_result(exc, "cannot write to the mailbox")
        return _Staged(
            index=index,
            maildir=maildir,
            device=device,
            tmp=tmp,
            name=name,
            size=size,
            first=job.source.in_memory,
        )

    def _copy_in(
        self, maildir: Path, name: str, header: bytes, source: _Source, size: int
    ) -> tuple[Path, int]:
        """Copy into the maildir's tmp/, creating the maildir if need be: (tmp file, st_dev)."""
        known = maildir in self._ready
        try:
            device = self._ensure_maildir(maildir)
            return self._write_tmp(maildir / "tmp" / name, header, source, size), device
        except FileNotFoundError:
            if not known:
                raise
        # Removed since we last delivered there (a deleted user, say): create it again.
        self._ready.pop(maildir, None)
        device = self._ensure_maildir(maildir)
        return self._write_tmp(maildir / "tmp" / name, header, source, size), device

    def _write_tmp(self, stem: Path, header: bytes, source: _Source, size: int) -> Path:
        """Write trace header and message into a fresh tmp/ file; fsync it in fsync mode."""
        # The tmp/ name is unique per attempt, so two attempts at one job never share a file;
        # leftovers of a crash are what Maildir readers clean out of tmp/ (Dovecot: 36 h).
        tmp = stem.with_name(f"{stem.name}.{os.getpid()}_{next(self._tmp_serial)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, _FILE_MODE)
        try:
            written = _write_all(fd, header) + _copy(source, fd)
            if written != size:
                raise OSError(errno.EIO, "the queued message changed while it was copied")
            if self.sync == "fsync":
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink(tmp)
            raise
        try:
            os.close(fd)
        except OSError:
            _unlink(tmp)
            raise
        return tmp

    def _commit(self, staged: list[_Staged]) -> list[tuple[int, Result]]:
        """Move the batch into new/ and make it durable: one sync for all of it."""
        done: list[tuple[int, Result]] = []
        linked: list[_Staged] = []
        # Each mailbox's maildirsize gets a line for the copies this batch adds.
        with self._usage.delivering(i.maildir for i in staged if i.tmp is not None) as added:
            for item in staged:
                try:
                    if item.tmp is not None:
                        item.detail = _publish(item, item.tmp)
                        if item.detail == _DELIVERED:
                            added(item.maildir, item.size)
                except OSError as exc:
                    _unlink(item.tmp)
                    done.append((item.index, os_error_result(exc, "cannot move into new/")))
                else:
                    linked.append(item)
        errors = self._make_durable(linked)
        for item in linked:
            error = errors.get(item.index)
            if error is None:
                done.append((item.index, Result.delivered(item.detail)))
            else:
                # Visible but perhaps not durable: the retry finds the copy and keeps it.
                done.append((item.index, os_error_result(error, "cannot make the copy durable")))
        return done

    def _make_durable(self, linked: list[_Staged]) -> dict[int, OSError]:
        """Sync what the batch wrote and found; the errors by job index."""
        failed: dict[Path | int, OSError] = {}  # by directory (fsync) or st_dev (syncfs)
        if self.sync == "fsync":
            # Files written now were fsynced before their link; found ones may not be.
            for item in linked:
                if item.tmp is None:
                    _try(_fsync_file, item.path, failed)
            for directory in {item.path.parent for item in linked}:
                _try(fsync_dir, directory, failed)
            return {
                item.index: error
                for item in linked
                if (error := failed.get(item.path) or failed.get(item.path.parent)) is not None
            }
        for device, maildir in {item.device: item.maildir for item in linked}.items():
            _try(_syncfs_of, maildir, failed, key=device)
        return {i.index: failed[i.device] for i in linked if i.device in failed}

    def _ensure_maildir(self, maildir: Path) -> int:
        """Create what is missing of root, domain, mailbox and its tmp/new/cur; its st_dev."""
        device = self._ready.get(maildir)
        if device is not None:
            return device
        fsync = self.sync == "fsync"
        if maildir.name.startswith("."):
            # A Maildir++ folder: its mailbox first, then the folder marked as one.
            self._ensure_maildir(maildir.parent)
            for directory in (maildir, *(maildir / s for s in ("tmp", "new", "cur"))):
                _make_dir(directory, fsync=fsync)
            (maildir / "maildirfolder").touch(mode=_FILE_MODE)
            device = os.stat(maildir).st_dev
            self._ready[maildir] = device
            return device
        if not self.root.is_dir():
            self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            if fsync:
                fsync_dir(self.root.parent)
        for directory in (maildir.parent, maildir, *(maildir / s for s in ("tmp", "new", "cur"))):
            _make_dir(directory, fsync=fsync)
        device = os.stat(maildir).st_dev
        self._ready[maildir] = device
        return device

    def _earlier_copy(
        self, index: int, maildir: Path, job: MaildirJob, size: int
    ) -> _Staged | None:
        """The whole copy an earlier attempt stored in new/ or cur/, if there is one."""
        base = _base_name(job)
        for folder in _FOLDERS:
            for entry in entries(maildir / folder):
                if entry.name.startswith(base) and entry_size(entry, exact=True) == size:
                    return _Staged(
                        index=index,
                        maildir=maildir,
                        device=entry.stat().st_dev,
                        tmp=None,
                        name=entry.name,
                        size=size,
                        folder=folder,
                        detail=f"already delivered to maildir ({folder}/{entry.name})",
                    )
        return None

    # -- mailboxes ----------------------------------------------------------------------

    def mailbox_dir(self, domain: str, local_part: str) -> Path:
        """``root/<domain>/<local_part>``, each made safe as one directory name.

        Ordinary addresses stay readable and as they are (so Dovecot's ``%d/%n`` finds
        them); "/", "%", controls and a leading "." become ``%XX`` (UTF-8 bytes), so no name
        can leave the tree or be taken for another. Names are in Unicode NFC, as the account
        store keeps them, so two spellings of one local part share one directory.
        ``ValueError`` if a part is empty or too long for a file name.
        """
        return self.root / _directory_name(domain) / _directory_name(local_part)

    def usage(self, domain: str, local_part: str, quota: int | None = None) -> Usage:
        """What the mailbox holds, cheaply enough for the event loop (no listing there).

        From the mailbox's Maildir++ ``maildirsize`` (Dovecot reads and updates the same
        file), counted again in a worker thread when it is missing or doubtful; ``quota``
        (bytes) goes into a file written anew and decides when an over-quota figure is
        doubted. Until a first count is done the answer is ``Usage()``: the quota is soft.
        """
        try:
            maildir = self.mailbox_dir(domain, local_part)
        except ValueError:
            return Usage()  # no mailbox can have this name, so it holds nothing
        return self._usage.usage(maildir, quota)

    def wait_usage(self) -> None:
        """Wait until the counts ``usage`` started are done (tests and tools)."""
        self._usage.wait()

    def messages(self, domain: str, local_part: str) -> list[MaildirMessage]:
        """The messages in new/ and cur/, oldest first; [] when the mailbox does not exist."""
        maildir = self.mailbox_dir(domain, local_part)
        found: list[MaildirMessage] = []
        for folder in _FOLDERS:
            for entry in entries(maildir / folder):
                message = summary(entry, folder)
                if message is not None:
                    found.append(message)
        found.sort(key=lambda m: (m.mtime, m.name))
        return found


# -- names ------------------------------------------------------------------------------


def _directory_name(text: str) -> str:
    if not text:
        raise ValueError("an empty name")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    parts = []
    for position, char in enumerate(text):
        plain = char in _PLAIN or (not char.isascii() and char.isprintable())
        if plain and not (position == 0 and char == "."):
            parts.append(char)
        else:
            parts.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")))
    name = "".join(parts)
    if len(name.encode("utf-8")) > _MAX_NAME:
        raise ValueError(f"{text[:40]!r}... is too long for a directory name")
    return name


def _escape_hostname(hostname: str) -> str:
    """The hostname as a Maildir name part: "/", ":" and "," must not appear (octal escapes)."""
    return "".join(
        char if char in _HOSTNAME_PLAIN else "".join(f"\\{b:03o}" for b in char.encode())
        for char in hostname
    )


def _base_name(job: MaildirJob) -> str:
    """The start every copy of this job has, whatever the hostname, size or flags."""
    return f"{int(job.arrival)}.Q{job.queue_id}R{job.recipient_index}."


def _trace_header(job: MaildirJob) -> bytes:
    return (f"Return-Path: <{job.reverse_path}>\r\nDelivered-To: {job.delivered_to}\r\n").encode()


# -- the transaction's file operations ---------------------------------------------------


_DELIVERED = "delivered to maildir"


def _publish(item: _Staged, tmp: Path) -> str:
    """Link the tmp/ file into new/: a copy already there under the name is the same job."""
    new = item.path
    if item.first:
        os.rename(tmp, new)  # a first attempt's name (queue ID, recipient) is new
        return _DELIVERED
    try:
        os.link(tmp, new)
    except FileExistsError:
        if os.lstat(new).st_size == item.size:
            _unlink(tmp)
            return "already delivered to maildir"
        # Torn by a crash before its sync: this attempt's copy replaces it.
        os.replace(tmp, new)
        return _DELIVERED
    _unlink(tmp)  # a leftover in tmp/ is harmless; the copy in new/ is what counts
    return _DELIVERED


def _try(
    sync: Callable[[Path], None],
    path: Path,
    failed: dict[Path | int, OSError],
    *,
    key: Path | int | None = None,
) -> None:
    try:
        sync(path)
    except OSError as exc:
        failed[path if key is None else key] = exc


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs_of(directory: Path) -> None:
    """One syncfs(2) of the file system holding ``directory``."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def _make_dir(path: Path, *, fsync: bool) -> None:
    try:
        os.mkdir(path, _DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
        return
    if fsync:
        fsync_dir(path.parent)  # the new entry must outlive a crash, like the file in it


def _write_all(fd: int, data: bytes | memoryview) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def _copy(source: _Source, fd: int) -> int:
    source.seek(0)
    buffer = bytearray(_COPY_CHUNK)
    chunk = memoryview(buffer)
    copied = 0
    while count := source.readinto(chunk):
        copied += _write_all(fd, chunk[:count])
    return copied


def _unlink(path: Path | None) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)


def _settled(result: Result | None) -> Result:
    if result is None:  # pragma: no cover - every job gets a result above
        return Result.deferred(SYSTEM_ERROR, "internal error: job left without a result")
    return result
