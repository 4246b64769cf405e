"""The maildrop: where ``sendmail`` leaves a message for the server, as Postfix's postdrop.

A maildrop file is written whole elsewhere in the directory (a name starting with ``.``),
synced, then renamed into place, so the server never sees half of one; once renamed it is
durable and ``sendmail`` may exit 0. The file holds a first line naming the format, one
line of JSON (the envelope the command was given) and the message with CRLF line ends.

Who submitted it is never taken from the file's text: it is the file's owner (the kernel
sets it), read from the open descriptor, so a user cannot speak for another. The
directory is world-writable and sticky (mode 3733: no one but its owner lists it or
removes another's file; the set-group-ID bit gives each file the directory's group), and
each file is 0640: the server, as the directory's owner or group, reads it; other users
cannot.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spool import QueueIdSource, Recipient, fsync_dir

__all__ = [
    "BAD_DIR",
    "DATA_DIR_MODE",
    "MAILDROP_DIR",
    "MAILDROP_MODE",
    "PICKUP_DIR",
    "Drop",
    "DropError",
    "crlf",
    "open_drop",
    "prepare_directories",
    "read_drop",
    "write_drop",
]

MAILDROP_DIR = "maildrop"
PICKUP_DIR = "pickup"
BAD_DIR = "bad"  # under each: files that cannot be queued, each beside NAME.reason
# Sticky (no user removes another's file), set-group-ID (files get the directory's group),
# writable and searchable by all, listable by its owner alone.
MAILDROP_MODE = 0o3733
# The data directory itself: searchable by all (so the maildrop can be reached), listable
# and readable by its owner alone; everything else in it stays 0700/0600.
DATA_DIR_MODE = 0o711
FILE_MODE = 0o640
_MAGIC = b"HATO-MAILDROP 1\n"
_ENVELOPE_LIMIT = 1024 * 1024  # the JSON line: recipients and their parameters
_LINE_END = re.compile(rb"\r\n|\r|\n")
_IDS = QueueIdSource()


class DropError(Exception):
    """A drop file that cannot be taken; the message says why (for ``NAME.reason``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Drop:
    """What ``sendmail`` was told: the sender (None: the submitting user's own address),
    the recipients with their DSN NOTIFY, RET and ENVID, the ``-F`` full name."""

    sender: str | None
    recipients: tuple[Recipient, ...]
    ret: str | None = None
    envid: str | None = None
    full_name: str | None = None

    def to_json(self) -> bytes:
        data = {
            "sender": self.sender,
            "recipients": [r.to_dict() for r in self.recipients],
            "ret": self.ret,
            "envid": self.envid,
            "full_name": self.full_name,
        }
        return json.dumps(data, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, line: bytes) -> Drop:
        try:
            data: Any = json.loads(line)
            if not isinstance(data, dict) or not isinstance(data.get("recipients"), list):
                raise ValueError("not an envelope")
            recipients = tuple(Recipient.from_dict(r) for r in data["recipients"])
            if not recipients:
                raise ValueError("no recipients")
            fields = {k: data.get(k) for k in ("sender", "ret", "envid", "full_name")}
            if not all(v is None or isinstance(v, str) for v in fields.values()):
                raise ValueError("sender, ret, envid and full_name must be text")
            if fields["ret"] not in (None, "FULL", "HDRS"):
                raise ValueError(f"invalid RET {fields['ret']!r}")
        except (ValueError, TypeError, AttributeError) as error:
            raise DropError(f"unreadable envelope: {error}") from None
        return cls(recipients=recipients, **fields)


def crlf(data: bytes) -> bytes:
    """Every line end as CRLF, as the spool keeps messages (local programs write LF)."""
    return _LINE_END.sub(b"\r\n", data)


def prepare_directories(data_dir: Path) -> None:
    """The maildrop (3733, put right at every start) and the pickup directory with the
    ``bad/`` of each (0700 when made; an administrator may open the pickup directory to a
    group, ``chmod 2770``); the data directory made searchable (0711) so users reach the
    maildrop."""
    if stat.S_IMODE(data_dir.stat().st_mode) != DATA_DIR_MODE:
        data_dir.chmod(DATA_DIR_MODE)
    maildrop = data_dir / MAILDROP_DIR
    maildrop.mkdir(mode=0o700, exist_ok=True)
    if stat.S_IMODE(maildrop.stat().st_mode) != MAILDROP_MODE:
        maildrop.chmod(MAILDROP_MODE)  # mkdir's mode passes the umask; chmod does not
    for directory in (maildrop / BAD_DIR, data_dir / PICKUP_DIR, data_dir / PICKUP_DIR / BAD_DIR):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            directory.chmod(0o700)


def write_drop(directory: Path, drop: Drop, message: bytes) -> str:
    """Write one maildrop file durably and return its name. Raises OSError."""
    name = _IDS.next()
    partial = directory / f".{name}.{os.getpid()}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            data = memoryview(_MAGIC + drop.to_json() + b"\n" + message)
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(partial, directory / name)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    # A user may write the maildrop but not open it (no read bit): the file itself is
    # synced, and the journal commits the rename soon after.
    with contextlib.suppress(PermissionError):
        fsync_dir(directory)
    return name


def open_drop(path: Path) -> tuple[int, os.stat_result]:
    """Open a dropped file for reading without following a link, and check it is a plain
    file with one name (a user's link to another's file is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DropError("a symbolic link, not a file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise DropError("not a plain file with a single name")
    return fd, info


def read_drop(path: Path, max_size: int) -> tuple[Drop, bytes, int]:
    """A maildrop file's envelope, message and owner's uid. Raises DropError, OSError."""
    fd, info = open_drop(path)
    with os.fdopen(fd, "rb") as file:
        if file.read(len(_MAGIC)) != _MAGIC:
            raise DropError("not a maildrop file")
        line = file.readline(_ENVELOPE_LIMIT)
        if not line.endswith(b"\n"):
            raise DropError("envelope line missing or too long")
        message = file.read(max_size + 1)
    if len(message) > max_size:
        raise DropError(f"message larger than smtp.max_message_size ({max_size} bytes)")
    return Drop.from_json(line), message, info.st_uid
