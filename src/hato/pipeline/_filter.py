"""What a message filter is: the stages it may take part in, what it sees, what it returns.

A filter may act at three moments, each optional:

- ``opening``: before the first byte of data, trace fields that are known already
  (``Received:``). They are written first, so they cost no copy.
- ``header``: once the header section has been read (or 64 KiB of it), fields to add at
  the top of the message (submission's missing ``Date:`` and ``Message-ID:``).
- ``end``: after the final dot or ``BDAT LAST``, before the durable commit, with the whole
  message readable: a :class:`Verdict`. Only this stage may refuse, and it runs under a
  time limit.

A filter says which stages it takes part in (``stages``), so the intake never calls a
stage nobody has: an empty pipeline costs nothing per message.
"""

from __future__ import annotations

import enum
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar, Protocol

from ..smtp import Reply
from ..spool import Envelope, Origin

__all__ = [
    "ACCEPT",
    "Action",
    "Header",
    "Message",
    "MessageFilter",
    "Stage",
    "Verdict",
    "parse_header",
]


class Stage(enum.Flag):
    OPENING = enum.auto()
    HEADER = enum.auto()
    END = enum.auto()


class Action(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"  # a 5xx: the message is refused
    DEFER = "defer"  # a 4xx: the sender tries again later
    QUARANTINE = "quarantine"  # accepted, but delivered into the recipient's Junk folder


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    action: Action = Action.ACCEPT
    prepend: bytes = b""  # whole header fields, each ending in CRLF, added at the top
    # Received fields to remove: indexes into ``message.header.fields``. Only fields of
    # the held header section can go (the last one of an incomplete section cannot: its
    # end was not read); other indexes are ignored.
    drop: tuple[int, ...] = ()
    reply: Reply | None = None  # with REJECT and DEFER: what the sender is told
    reason: str = ""  # for the log and the flight recorder

    def __post_init__(self) -> None:
        if self.action in (Action.REJECT, Action.DEFER):
            if self.reply is None:
                raise ValueError(f"a {self.action.value} verdict needs a reply")
            wanted = 5 if self.action is Action.REJECT else 4
            if self.reply.code // 100 != wanted:
                raise ValueError(f"a {self.action.value} verdict needs a {wanted}xx reply")
        if self.prepend and not self.prepend.endswith(b"\r\n"):
            raise ValueError("prepended header fields must end in CRLF")
        if any(index < 0 for index in self.drop):
            raise ValueError("header field indexes to drop cannot be negative")

    @classmethod
    def accept(cls, prepend: bytes = b"", reason: str = "", drop: tuple[int, ...] = ()) -> Verdict:
        return cls(prepend=prepend, reason=reason, drop=drop)

    @classmethod
    def reject(cls, reply: Reply, reason: str) -> Verdict:
        return cls(action=Action.REJECT, reply=reply, reason=reason)

    @classmethod
    def defer(cls, reply: Reply, reason: str) -> Verdict:
        return cls(action=Action.DEFER, reply=reply, reason=reason)

    @classmethod
    def quarantine(cls, reason: str, prepend: bytes = b"", drop: tuple[int, ...] = ()) -> Verdict:
        return cls(action=Action.QUARANTINE, prepend=prepend, reason=reason, drop=drop)


ACCEPT = Verdict()


@dataclass(frozen=True, slots=True)
class Header:
    """The header section as received: its bytes, and its fields in order (RFC 5322 2.2:
    a field is a name, a colon and a body that continues on lines starting with WSP)."""

    raw: bytes  # up to and including the CRLF that ends the last field (not the blank line)
    fields: tuple[tuple[str, bytes], ...]  # (name as written, unfolded body without CRLF)
    complete: bool = True  # False: the section was longer than the intake reads ahead
    # Where each field lies in ``raw``: (start, end), its continuation lines and CRLF in.
    spans: tuple[tuple[int, int], ...] = ()

    def get(self, name: str) -> bytes | None:
        """The first field of that name (case-insensitive), or None."""
        wanted = name.lower()
        return next((body for key, body in self.fields if key.lower() == wanted), None)

    def has(self, name: str) -> bool:
        return self.get(name) is not None


def parse_header(section: bytes, *, complete: bool = True) -> Header:
    """Split a header section into fields; lines that are not fields are kept in ``raw``
    only (the message is not ours to repair)."""
    fields: list[tuple[str, bytes]] = []
    spans: list[tuple[int, int]] = []
    at = 0
    for line in section.split(b"\r\n"):
        start, at = at, min(at + len(line) + 2, len(section))
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, body = fields[-1]
                fields[-1] = (name, body + b" " + line.strip())
                spans[-1] = (spans[-1][0], at)
            continue
        key, colon, body = line.partition(b":")
        if colon and key and b" " not in key.strip(b" \t"):
            fields.append((key.strip().decode("ascii", "replace"), body.strip()))
            spans.append((start, at))
    return Header(raw=section, fields=tuple(fields), complete=complete, spans=tuple(spans))


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """What a filter sees of a message."""

    queue_id: str
    envelope: Envelope  # sender, recipients, and the client: IP, HELO, TLS, AUTH
    origin: Origin
    header: Header  # as received (before any field a filter adds)
    size: int  # bytes as stored so far
    # Opens the whole message as stored (from memory or its file); the filter reads what
    # it needs, in chunks, and closes it. Called in the filter's own thread if it has one.
    open: Callable[[], BinaryIO] = field(default=lambda: io.BytesIO(b""))
    added: bytes = b""  # fields earlier filters added at the top, in order
    # What the way in learnt before the data (Intake.open's annotations): "spf", the
    # session's mailauth.SpfResult from MAIL FROM, when it checked.
    annotations: Mapping[str, object] = field(default_factory=dict)

    def read_all(self) -> bytes:
        """The whole message with the fields added so far: for filters that need it all."""
        with self.open() as source:
            return self.added + source.read()


class MessageFilter(Protocol):
    """One step of the pipeline. Implement the stages named in ``stages``; the others are
    never called. ``end`` runs on the event loop: a filter with blocking work (DNS,
    crypto over the body) runs it in a thread itself."""

    name: ClassVar[str]
    stages: ClassVar[Stage]

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes: ...

    def header(self, message: Message) -> bytes: ...

    async def end(self, message: Message) -> Verdict: ...
