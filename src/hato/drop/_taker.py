"""Taking dropped files through the intake: the maildrop (``sendmail``) and the pickup
directory, as Postfix's pickup daemon does.

Promise: a file is removed only once the intake said ``Accepted`` (every copy durable).
A file the intake refuses for good (5xx), or that cannot be read as what it should be,
moves to ``bad/`` beside ``NAME.reason``; nothing dropped is ever deleted unqueued. A
temporary failure (4xx, a spool error) leaves the file where it is for a later try. A
crash between the commit and the removal takes the file again on the next start: a
duplicate is possible, a loss is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pwd
import time
from dataclasses import dataclass
from pathlib import Path

from ..events import DropRefused, DropTaken, EventLog, InternalError
from ..smtp import AddressError, parse_path
from ..spool import (
    ANNOTATION_FULL_NAME,
    ANNOTATION_PICKUP,
    ANNOTATION_SENDER_SET,
    ANNOTATION_USER,
    Accepted,
    Envelope,
    Intake,
    Origin,
    SpoolError,
    fsync_dir,
)
from ._maildrop import (
    BAD_DIR,
    MAILDROP_DIR,
    PICKUP_DIR,
    DropError,
    open_drop,
    prepare_directories,
    read_drop,
)
from ._pickup import parse_pickup
from ._watch import DirectoryWatch

__all__ = ["CONCURRENCY", "RETRY_AFTER", "STOP_WAIT", "DropTaker", "Taken", "user_of"]

CONCURRENCY = 32  # files going through the intake at once (their commits share syncs)
RETRY_AFTER = 30.0  # seconds before a file that failed for now is tried again
# How long a stop waits for the files already in the intake (each is one commit away).
STOP_WAIT = 10.0
STALE_PARTIAL = 86400.0  # seconds after which a maildrop file left half-written is removed
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Taken:
    """One file read: its envelope and message, how it came in, and for the filters."""

    envelope: Envelope
    message: bytes
    origin: Origin
    annotations: dict[str, object]
    user: str = ""


def user_of(uid: int) -> str:
    """``"UID NAME"`` (the name from the password database, when it has one)."""
    try:
        return f"{uid} {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return str(uid)


def _gecos_name(uid: int) -> str:
    with contextlib.suppress(KeyError):
        return pwd.getpwuid(uid).pw_gecos.split(",")[0]
    return ""


def _remove_if_stale(path: Path) -> None:
    """A maildrop file never renamed into place a day on: its ``sendmail`` died before
    saying it was queued (the caller saw a failure), so nothing is lost by removing it."""
    with contextlib.suppress(OSError):
        if time.time() - path.lstat().st_mtime > STALE_PARTIAL:
            path.unlink()


class DropTaker:
    """Watches ``DATA/maildrop`` and ``DATA/pickup`` and queues what arrives there."""

    def __init__(
        self,
        *,
        data_dir: Path,
        intake: Intake,
        log: EventLog,
        hostname: str,
        max_size: int,
        inotify: bool = True,
    ) -> None:
        self.data_dir, self.intake, self.log = data_dir, intake, log
        self.hostname, self.max_size = hostname, max_size
        self.owner = os.getuid()
        self._inotify = inotify
        self._watch: DirectoryWatch | None = None
        self._task: asyncio.Task[None] | None = None
        self._later: dict[Path, float] = {}  # failed for now: not before this time
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._stopping = False

    async def start(self) -> None:
        prepare_directories(self.data_dir)
        dirs = [self.data_dir / MAILDROP_DIR, self.data_dir / PICKUP_DIR]
        self._watch = DirectoryWatch(dirs, inotify=self._inotify)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop taking files: those already in the intake finish (up to ``STOP_WAIT``),
        the rest wait for the next start where they are."""
        self._stopping = True
        task, self._task = self._task, None
        if self._watch is not None:
            self._watch.wake()
        if task is not None:
            try:
                async with asyncio.timeout(STOP_WAIT):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._watch is not None:
            self._watch.close()

    async def _run(self) -> None:
        assert self._watch is not None
        while not self._stopping:
            await self._watch.wait()
            if self._stopping:
                return
            try:
                await self.scan()
            except Exception as error:  # a damaged directory must not stop the server
                self.log.emit(InternalError(where="drop", error=repr(error)))

    async def scan(self) -> int:
        """Take every file waiting in both directories; how many were queued."""
        now, paths = time.monotonic(), []
        for directory in (MAILDROP_DIR, PICKUP_DIR):
            where = self.data_dir / directory
            names = sorted(await asyncio.to_thread(os.listdir, where))
            for name in names:
                path = where / name
                if name.startswith(".") and directory == MAILDROP_DIR:
                    await asyncio.to_thread(_remove_if_stale, path)
                if name.startswith(".") or name == BAD_DIR or self._later.get(path, 0) > now:
                    continue
                paths.append(path)
        results = await asyncio.gather(*(self._take_one(path) for path in paths))
        return sum(results)

    async def _take_one(self, path: Path) -> bool:
        async with self._slots:
            if self._stopping:
                return False  # left for the next start
            directory = path.parent.name
            try:
                taken = await asyncio.to_thread(self._read, path)
            except FileNotFoundError:
                return False  # taken away meanwhile
            except DropError as error:
                await asyncio.to_thread(self._refuse, path, str(error), "")
                return False
            except OSError as error:
                self._keep(path, f"cannot be read: {error.strerror or error}", "")
                return False
            return await self._queue(path, directory, taken)

    async def _queue(self, path: Path, directory: str, taken: Taken) -> bool:
        try:
            incoming = self.intake.open(taken.envelope, taken.origin, annotations=taken.annotations)
        except SpoolError as error:
            self._keep(path, f"spool error: {error}", taken.user)
            return False
        try:
            view = memoryview(taken.message)
            for at in range(0, len(view), _CHUNK):
                incoming.write(view[at : at + _CHUNK])
        except SpoolError:
            pass  # finish refuses it with the spool's 451
        outcome = await incoming.finish()
        if not isinstance(outcome, Accepted):
            reason = f"{outcome.reply} ({outcome.reason})"
            if outcome.reply.code >= 500:
                await asyncio.to_thread(self._refuse, path, f"refused: {reason}", taken.user)
            else:
                self._keep(path, f"deferred: {reason}", taken.user)
            return False
        await asyncio.to_thread(self._remove, path)
        self._later.pop(path, None)
        self.log.emit(
            DropTaken(
                directory=directory, file=path.name, queue_id=outcome.queue_id, user=taken.user
            )
        )
        return True

    def _read(self, path: Path) -> Taken:
        if path.parent.name == MAILDROP_DIR:
            return self._read_maildrop(path)
        fd, _ = open_drop(path)
        with os.fdopen(fd, "rb") as file:
            data = file.read(self.max_size + 1)
        pickup = parse_pickup(data, self.max_size)
        envelope = Envelope(
            reverse_path=pickup.sender,
            recipients=pickup.recipients,
            smtputf8=pickup.smtputf8,
            protocol="local",
            arrival=time.time(),
        )
        return Taken(
            envelope=envelope,
            message=pickup.message,
            origin=Origin.PICKUP,
            annotations={ANNOTATION_PICKUP: path.name},
        )

    def _read_maildrop(self, path: Path) -> Taken:
        drop, message, uid = read_drop(path, self.max_size)
        user = user_of(uid)
        own = f"{user.partition(' ')[2] or uid}@{self.hostname}"
        trusted = uid in (0, self.owner)
        sender = own if drop.sender is None else self._qualified(drop.sender)
        recipients = tuple(
            dataclasses.replace(r, address=self._qualified(r.address)) for r in drop.recipients
        )
        for address in (sender, *(r.address for r in recipients)):
            try:
                parse_path(f"<{address}>", utf8=True, allow_null=address is sender)
            except AddressError as error:
                raise DropError(f"address {address!r}: {error}") from None
        envelope = Envelope(
            reverse_path=sender,
            recipients=recipients,
            ret=drop.ret,
            envid=drop.envid,
            smtputf8=not all(a.isascii() for a in (sender, *(r.address for r in recipients))),
            protocol="local",
            arrival=time.time(),
        )
        annotations: dict[str, object] = {
            ANNOTATION_USER: user,
            ANNOTATION_FULL_NAME: drop.full_name or _gecos_name(uid),
            ANNOTATION_SENDER_SET: not trusted and sender != own,
        }
        return Taken(
            envelope=envelope,
            message=message,
            origin=Origin.SENDMAIL,
            annotations=annotations,
            user=user,
        )

    def _qualified(self, address: str) -> str:
        """A bare user name is this host's user, as sendmail takes it."""
        return address if "@" in address or not address else f"{address}@{self.hostname}"

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def _keep(self, path: Path, reason: str, user: str) -> None:
        self._later[path] = time.monotonic() + RETRY_AFTER
        self.log.emit(
            DropRefused(
                directory=path.parent.name, file=path.name, reason=reason, kept=True, user=user
            )
        )

    def _refuse(self, path: Path, reason: str, user: str) -> None:
        """Into ``bad/`` with the reason beside it; never deleted."""
        bad = path.parent / BAD_DIR
        target, count = bad / path.name, 0
        while target.exists() or target.with_name(target.name + ".reason").exists():
            count += 1
            target = bad / f"{path.name}.{count}"
        note = target.with_name(target.name + ".reason")
        note.write_text(reason + "\n", encoding="utf-8")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            note.unlink(missing_ok=True)
            return
        fsync_dir(bad)
        fsync_dir(path.parent)
        self._later.pop(path, None)
        self.log.emit(
            DropRefused(directory=path.parent.name, file=path.name, reason=reason, user=user)
        )
