"""Header fields that stay well-formed whatever text they carry: sanitized, escaped, folded."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

__all__ = ["MAX_LINE", "ascii_escape", "field", "one_line", "rfc5322_date", "unitext_address"]

# RFC 5322 section 2.1.1: a line MUST be at most 998 octets and SHOULD be at most 78,
# both without its CRLF. Fields are folded at 78 where there is a space to fold at.
MAX_LINE = 998
FOLD_AT = 78

# Anything a parser might take for a line end or that has no place in a header field:
# C0 and C1 controls (CR, LF, NUL, NEL among them), DEL, the Unicode line and paragraph
# separators, and lone surrogates (not encodable as UTF-8). A remote server's reply is
# untrusted text: this is what keeps it from injecting fields of its own.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")
_SPACES = re.compile(" {2,}")
# RFC 6533 section 3: QUCHAR, the characters a utf-8-addr-unitext carries as they are.
_QUCHAR = re.compile(r"[\x21-\x2b\x2d-\x5b\x5d-\x7e\u0080-\U0010ffff]")


def one_line(text: str) -> str:
    """``text`` as one line of printable characters: every unsafe run becomes one space."""
    return _SPACES.sub(" ", _UNSAFE.sub(" ", text)).strip()


def ascii_escape(text: str) -> str:
    """Non-ASCII characters as ``\\x{HEX}`` (RFC 6533 section 3), for ASCII-only fields."""
    return "".join(char if char.isascii() else f"\\x{{{ord(char):X}}}" for char in text)


def unitext_address(address: str) -> str:
    """An address as RFC 6533 utf-8-addr-unitext: UTF-8 as is, other specials escaped."""
    return "".join(char if _QUCHAR.match(char) else f"\\x{{{ord(char):02X}}}" for char in address)


def rfc5322_date(timestamp: float) -> str:
    """RFC 5322 section 3.3 date-time in UTC, e.g. ``Tue, 14 Nov 2023 22:13:20 +0000``."""
    return format_datetime(datetime.fromtimestamp(timestamp, UTC))


def _pieces(word: str, limit: int) -> Iterator[str]:
    """``word`` cut at character boundaries into pieces of at most ``limit`` UTF-8 octets."""
    piece: list[str] = []
    size = 0
    for char in word:
        octets = len(char.encode())
        if piece and size + octets > limit:
            yield "".join(piece)
            piece, size = [], 0
        piece.append(char)
        size += octets
    if piece or not word:
        yield "".join(piece)


def field(name: str, value: str) -> bytes:
    """``Name: value`` CRLF, made one line and folded (RFC 5322 section 2.2.3).

    Folding happens before a space, at 78 octets where possible. A word too long for even
    a 998-octet line is cut, and the fold adds a space there: the only change, and only
    to text no real address or reply has.
    """
    head = f"{name}:"
    limit = MAX_LINE - len(head.encode()) - 1
    lines: list[str] = []
    line, size = head, len(head.encode())
    for word in one_line(value).split(" "):
        for piece in _pieces(word, limit):
            octets = len(piece.encode()) + 1
            if line != head and size + octets > FOLD_AT:
                lines.append(line)
                line, size = "", 0
            line += " " + piece
            size += octets
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode()
