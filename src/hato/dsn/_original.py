"""The third part of a report: the original message, or its header section, read in chunks."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ._fields import MAX_LINE
from ._model import ReturnContent

__all__ = ["HEADER_SECTION_LIMIT", "Encoding", "Returned", "returned_part"]

Write = Callable[[bytes], object]

# Reads are bounded so that a message of any size costs only this much memory at once.
_CHUNK = 64 * 1024
# A message without an empty line is header section from end to end: a header-only report
# stops here (at a line end), well above what real header sections hold, so that a report
# stays small whatever message it is about.
HEADER_SECTION_LIMIT = 256 * 1024


class Encoding(enum.IntEnum):
    """RFC 2045 section 2.7 to 2.9: the least a body part needs, in increasing order."""

    SEVEN_BIT = 0  # ASCII, CRLF line ends, lines of at most 998 octets, no NUL
    EIGHT_BIT = 1  # the same, with octets above 127
    BINARY = 2  # anything else: bare CR or LF, NUL, or longer lines

    @property
    def label(self) -> str:
        """The Content-Transfer-Encoding value."""
        return ("7bit", "8bit", "binary")[self]


def _line_encoding(line: bytes) -> Encoding:
    """The encoding one line needs; ``line`` is at most one line, with its line end."""
    body = line.removesuffix(b"\r\n")
    if len(body) > MAX_LINE or b"\r" in body or b"\n" in body or b"\0" in body:
        return Encoding.BINARY
    return Encoding.SEVEN_BIT if body.isascii() else Encoding.EIGHT_BIT


def _lines(source: BinaryIO) -> Iterator[bytes]:
    """Lines of ``source``; a line longer than a chunk comes in pieces (and is binary)."""
    while piece := source.readline(_CHUNK):
        yield piece


def _scan(source: BinaryIO) -> tuple[bool, Encoding]:
    """One pass over the message: (header section has UTF-8, encoding the whole needs)."""
    utf8_headers = False
    encoding = Encoding.SEVEN_BIT
    in_header = True
    for line in _lines(source):
        if in_header and line in (b"\r\n", b"\n"):
            in_header = False
        elif in_header and not line.isascii():
            utf8_headers = True
        encoding = max(encoding, _line_encoding(line))
        if encoding is Encoding.BINARY and not in_header:
            break
    return utf8_headers, encoding


def _header_section(source: BinaryIO) -> bytes:
    """The header section, up to (not including) the first empty line, with CRLF line ends.

    Reads no further than that empty line, and stops at HEADER_SECTION_LIMIT.
    """
    kept: list[bytes] = []
    size = 0
    line = b""
    for piece in _lines(source):
        line += piece
        if size + len(line) > HEADER_SECTION_LIMIT:
            line = b""
            break
        if not line.endswith(b"\n"):
            continue
        if line in (b"\r\n", b"\n"):
            line = b""
            break
        kept.append(line.removesuffix(b"\n").removesuffix(b"\r") + b"\r\n")
        size += len(line)
        line = b""
    if line:  # the last line of a message that is all header, without a line end
        kept.append(line + b"\r\n")
    return b"".join(kept)


@dataclass(frozen=True, slots=True)
class Returned:
    """The third body part: its type, its transfer encoding, and how to write its content."""

    content_type: str
    description: str
    encoding: Encoding
    copy: Callable[[Write], object]


def _full(source: BinaryIO) -> Returned:
    start = source.tell()
    utf8_headers, encoding = _scan(source)

    def copy(write: Write) -> None:
        source.seek(start)
        while chunk := source.read(_CHUNK):
            write(chunk)

    # RFC 6532 section 3.7: a message whose header section has UTF-8 is message/global.
    content_type = "message/global" if utf8_headers else "message/rfc822"
    return Returned(content_type, "Original message", encoding, copy)


def _headers(source: BinaryIO) -> Returned:
    section = _header_section(source)
    encoding = max(
        (_line_encoding(line) for line in section.splitlines(keepends=True)),
        default=Encoding.SEVEN_BIT,
    )
    # RFC 6533 section 6.3: a header section with UTF-8 is message/global-headers.
    utf8 = not section.isascii()
    content_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    return Returned(content_type, "Original message headers", encoding, lambda w: w(section))


def returned_part(original: BinaryIO, content: ReturnContent) -> Returned | None:
    """Prepare part 3 from ``original``, a binary file read from its current position.

    For "full" the file must be seekable: it is read once to learn which encoding and
    media type to declare, and again while the report is written.
    """
    if content == "none":
        return None
    if content == "headers":
        return _headers(original)
    if not original.seekable():
        raise ValueError("returning the full message needs a seekable file")
    return _full(original)
