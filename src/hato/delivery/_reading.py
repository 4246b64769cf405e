"""Reading what Maildirs and queued messages hold: header lines, loop evidence, listings.

Headers are read a line (or a piece of a long line) at a time and only up to the empty
line that ends them, so a message of any size costs a few KiB here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.message import Message
from email.parser import BytesHeaderParser
from io import BufferedReader
from pathlib import Path
from typing import BinaryIO, Literal

__all__ = ["MaildirMessage", "entries", "entry_size", "find_loop", "header_lines", "summary"]

# Header lines are read at most this much at a time; a longer line is read in pieces.
_LINE_PIECE = 8 * 1024
# A Delivered-To value longer than this cannot be an address (RFC 5321 4.5.3.1: 256
# octets a path), so it is not kept whole just to be compared.
_MAX_ADDRESS_FIELD = 1024
# ``summary`` reads at most this much of each message to show its header fields.
_SUMMARY_HEADER_LIMIT = 64 * 1024
_HEADER_FIELD = re.compile(rb"(received|delivered-to)[ \t]*:", re.IGNORECASE)
_SIZE_IN_NAME = re.compile(r",S=([0-9]+)(?:,|$)")


@dataclass(frozen=True, slots=True, kw_only=True)
class MaildirMessage:
    """A stored message as a mailbox listing shows it; header fields are "" when absent."""

    path: Path
    name: str
    folder: Literal["new", "cur"]
    size: int
    mtime: float
    flags: str  # Maildir info flags after ":2," (e.g. "S" for seen), "" in new/
    message_id: str
    subject: str
    from_: str
    date: str


def header_lines(source: BinaryIO) -> Iterator[bytes]:
    """The header's lines (line ends kept), up to the empty line; long lines in pieces.

    A piece that continues a long line starts with no field name, so it is yielded with a
    leading space: to a reader of fields it is a continuation, never a new field.
    """
    at_line_start = True
    while piece := source.readline(_LINE_PIECE):
        if at_line_start and piece in (b"\r\n", b"\n"):
            return
        yield piece if at_line_start else b" " + piece
        at_line_start = piece.endswith(b"\n")


def find_loop(source: BinaryIO, delivered_to: str, max_received: int) -> str | None:
    """Why this message loops (RFC 5321 6.3), or None; reads only the header, by lines."""
    received = 0
    target = _address_key(delivered_to.encode())
    field_value: bytearray | None = None  # a Delivered-To value being unfolded
    for line in header_lines(source):
        if line[:1] in (b" ", b"\t"):
            if field_value is not None and len(field_value) < _MAX_ADDRESS_FIELD:
                field_value += line
            continue
        if field_value is not None and _address_key(field_value) == target:
            return f"already delivered to {delivered_to} (Delivered-To header)"
        field_value = None
        match = _HEADER_FIELD.match(line)
        if match is None:
            continue
        if match.group(1).lower() == b"received":
            received += 1
            if received > max_received:
                return f"more than {max_received} Received headers"
        else:
            field_value = bytearray(line[match.end() :])
    if field_value is not None and _address_key(field_value) == target:
        return f"already delivered to {delivered_to} (Delivered-To header)"
    return None


def _address_key(value: bytes | bytearray) -> str:
    text = "".join(value.decode("utf-8", "replace").split())
    return text.removeprefix("<").removesuffix(">").casefold()


def entries(directory: Path) -> list[os.DirEntry[str]]:
    """The message files in a new/ or cur/ directory; [] if there is none."""
    try:
        with os.scandir(directory) as scan:
            return [e for e in scan if not e.name.startswith(".") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def entry_size(entry: os.DirEntry[str], *, exact: bool = False) -> int | None:
    """The size its name states (``,S=``), or with ``exact`` the size it really has."""
    if not exact:
        match = _SIZE_IN_NAME.search(entry.name.partition(":")[0])
        if match is not None:
            return int(match.group(1))
    try:
        return entry.stat().st_size
    except FileNotFoundError:  # moved or expunged meanwhile
        return None


def summary(entry: os.DirEntry[str], folder: Literal["new", "cur"]) -> MaildirMessage | None:
    try:
        status = entry.stat()
        with open(entry.path, "rb") as file:
            header = b"".join(_bounded_header(file))
    except FileNotFoundError:  # moved to cur/ or expunged while we looked
        return None
    fields = BytesHeaderParser(policy=policy.default).parsebytes(header)
    _, _, info = entry.name.partition(":")
    return MaildirMessage(
        path=Path(entry.path),
        name=entry.name,
        folder=folder,
        size=entry_size(entry) or status.st_size,
        mtime=status.st_mtime,
        flags=info.removeprefix("2,") if info.startswith("2,") else "",
        message_id=_field(fields, "Message-ID"),
        subject=_field(fields, "Subject"),
        from_=_field(fields, "From"),
        date=_field(fields, "Date"),
    )


def _bounded_header(file: BufferedReader) -> Iterator[bytes]:
    taken = 0
    for line in header_lines(file):
        taken += len(line)
        if taken > _SUMMARY_HEADER_LIMIT:
            return
        yield line


def _field(fields: Message, name: str) -> str:
    """A header field's decoded value on one line; "" if absent, raw text if undecodable."""
    try:
        value = fields.get(name)
        text = "" if value is None else str(value)
    except (ValueError, TypeError, IndexError, LookupError, AttributeError, MessageError):
        # The email package gives up on some malformed fields: show those undecoded.
        raw = next((v for k, v in fields.raw_items() if k.lower() == name.lower()), "")
        text = str(raw).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())
