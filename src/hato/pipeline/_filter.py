"""What a message filter is: the stages it may take part in, what it sees, what it returns.

A filter may act at three moments, each optional:

- ``opening``: before the first byte of data, trace fields that are known already
  (``Received:``). They are written first, so they cost no copy.
- ``header``: once the header section has been read (or 64 KiB of it), fields to add at
  the top of the message (submission's missing ``Date:`` and ``Message-ID:``).
- ``end``: after the final dot or ``BDAT LAST``, before the durable commit, with the whole
  message readable: a :class:`Verdict`. Only this stage may refuse (or discard: accept
  and store nowhere), and it runs under a time limit.

A filter says which stages it takes part in (``stages``), so the intake never calls a
stage nobody has: an empty pipeline costs nothing per message.

A filter may also take part before the data, in the SMTP session's envelope stages
(``CONNECT``, ``HELO``, ``MAIL``, ``RCPT``: a milter's callbacks). It then implements
``session(facts)``, giving a :class:`FilterSession` for each session, whose verdicts are
honoured at their stage (a refused recipient is that recipient only; at MAIL the
transaction); its ``end`` finds that session again in ``message.sessions[name]``.

An end verdict may change the message beyond added fields: header edits (add, insert,
change or delete a field), a new body, a new sender, recipients added or deleted. They
apply to what is stored and delivered; the filters after it see the edited message.
"""

from __future__ import annotations

import enum
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar, Protocol

from ..smtp import Reply
from ..spool import Envelope, Origin, SessionFacts

__all__ = [
    "ACCEPT",
    "ENVELOPE_STAGES",
    "Action",
    "FilterSession",
    "Header",
    "HeaderEdit",
    "Message",
    "MessageFilter",
    "SessionFilter",
    "Stage",
    "Verdict",
    "parse_header",
]


class Stage(enum.Flag):
    OPENING = enum.auto()
    HEADER = enum.auto()
    END = enum.auto()
    # Before the data, in an SMTP session (FilterSession's methods).
    CONNECT = enum.auto()
    HELO = enum.auto()
    MAIL = enum.auto()
    RCPT = enum.auto()


ENVELOPE_STAGES = Stage.CONNECT | Stage.HELO | Stage.MAIL | Stage.RCPT


class Action(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"  # a 5xx: the message is refused
    DEFER = "defer"  # a 4xx: the sender tries again later
    QUARANTINE = "quarantine"  # accepted, but delivered into the recipient's Junk folder
    # Accepted (250), stored nowhere: the filter has taken the message (a test address's
    # analysis, a milter's discard). Later filters do not run; nothing is queued.
    DISCARD = "discard"


_EDITS = ("add", "insert", "change")


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderEdit:
    """One change to the header section, as the milter protocol names them:

    - ``add``: the field at the end of the header section;
    - ``insert``: before the field at ``index`` (0: at the top), among all fields;
    - ``change``: the ``index``-th field (from 1) called ``name`` becomes ``name:value``
      (an empty value deletes it; past the last one, the field is added).

    ``value`` is what follows the colon (its leading space included), folded with CRLF or
    LF; it is stored with CRLF."""

    action: str
    name: str
    value: bytes
    index: int = 0

    def __post_init__(self) -> None:
        if self.action not in _EDITS:
            raise ValueError(f"a header edit is one of {_EDITS}: {self.action!r}")
        if not self.name or any(c < "!" or c > "~" or c == ":" for c in self.name):
            raise ValueError(f"not a header field name: {self.name!r}")
        if self.index < 0:
            raise ValueError("a header edit's index cannot be negative")


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
    # Changes beyond added fields, applied to what is stored and delivered (accept and
    # quarantine only): header edits in order, a new body (after the blank line), a new
    # envelope sender ("" the null reverse-path), recipients added and deleted.
    edits: tuple[HeaderEdit, ...] = ()
    body: bytes | None = None
    sender: str | None = None
    add_recipients: tuple[str, ...] = ()
    delete_recipients: tuple[str, ...] = ()
    # The whole message after edits (set by the pipeline for the intake, not by filters):
    # ``prepend`` goes above it, ``drop`` was applied already.
    content: bytes | None = None

    @property
    def rewrites(self) -> bool:
        """Whether the message's bytes change beyond fields added at the top."""
        return bool(self.edits) or self.body is not None

    @property
    def readdresses(self) -> bool:
        """Whether the envelope changes."""
        return self.sender is not None or bool(self.add_recipients or self.delete_recipients)

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
    def discard(cls, reason: str) -> Verdict:
        return cls(action=Action.DISCARD, reason=reason)

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
    # Each envelope-stage filter's session (by filter name), for an SMTP session's message.
    sessions: Mapping[str, FilterSession] = field(default_factory=dict)
    # The fields of ``header`` a verdict drops, as byte ranges of what ``open`` reads.
    dropped: Callable[[tuple[int, ...]], Sequence[tuple[int, int]]] = lambda drop: ()

    def read_all(self) -> bytes:
        """The whole message with the fields added so far: for filters that need it all."""
        with self.open() as source:
            return self.added + source.read()

    def read_without(self, drop: tuple[int, ...]) -> bytes:
        """``read_all`` leaving out the held header fields at the indexes ``drop``."""
        with self.open() as source:
            stored = source.read()
        kept, at = bytearray(self.added), 0
        for start, end in self.dropped(drop):
            kept += stored[at:start]
            at = end
        return bytes(kept + stored[at:])


class FilterSession(Protocol):
    """One filter's part in one SMTP session, before the data. Each stage's verdict is
    ACCEPT (go on), REJECT or DEFER (that command is refused); anything else is for the
    filter to remember for its ``end`` (a discard asked for at RCPT, say). ``reset`` ends
    a transaction that did not reach the end of its data; ``close`` ends the session."""

    async def connect(self, facts: SessionFacts) -> Verdict: ...

    async def helo(self, facts: SessionFacts) -> Verdict: ...

    async def mail(self, facts: SessionFacts, sender: str, args: Sequence[str]) -> Verdict: ...

    async def rcpt(self, facts: SessionFacts, recipient: str, args: Sequence[str]) -> Verdict: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


class MessageFilter(Protocol):
    """One step of the pipeline. Implement the stages named in ``stages``; the others are
    never called. ``end`` runs on the event loop: a filter with blocking work (DNS,
    crypto over the body) runs it in a thread itself. ``name`` is a class variable, or an
    instance's (a milter's configured name)."""

    @property
    def name(self) -> str: ...

    stages: ClassVar[Stage]

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes: ...

    def header(self, message: Message) -> bytes: ...

    async def end(self, message: Message) -> Verdict: ...


class SessionFilter(MessageFilter, Protocol):
    """A filter with envelope stages (``stages & ENVELOPE_STAGES``): one session of it per
    SMTP session, opened at connect."""

    def session(self, facts: SessionFacts) -> FilterSession: ...
