"""Packets out (the MTA's commands) and packets in (the milter's replies), sans I/O.

:func:`encode` and the command helpers turn what the MTA wants to say into bytes;
:class:`ReplyReader` takes whatever bytes arrive, in any split, and hands out complete
:data:`Reply` events, each a small frozen dataclass checked where it is built. Garbage
(a length that cannot be, an unknown reply, data of the wrong shape) raises
:class:`MilterProtocolError` saying what was wrong; nothing else escapes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ._protocol import (
    MAX_BODY_CHUNK,
    NEVER_ANSWERED,
    PROTOCOL_VERSION,
    SKIPPED_BY,
    UNANSWERED_WITH,
    Action,
    Command,
    Family,
    MacroStage,
    Protocol,
    ReplyCode,
)

__all__ = [
    "MAX_PACKET",
    "Accept",
    "AddHeader",
    "AddRecipient",
    "ChangeFrom",
    "ChangeHeader",
    "ConnectionFail",
    "Continue",
    "DeleteRecipient",
    "Discard",
    "InsertHeader",
    "MilterProtocolError",
    "Negotiated",
    "Progress",
    "Quarantine",
    "Reject",
    "ReplaceBody",
    "Reply",
    "ReplyReader",
    "ReplyWithCode",
    "Shutdown",
    "Skip",
    "Tempfail",
    "answered",
    "body_packets",
    "connect",
    "encode",
    "header",
    "join_chunks",
    "macros",
    "negotiate",
    "parse_reply",
    "sent",
    "strings",
]

# Longest packet taken from a milter. Replies are small but for REPLACE_BODY, whose chunks
# a milter may size as it likes (libmilter keeps them under its 64 KiB or the negotiated
# 256 KiB / 1 MiB): beyond this, the milter is not speaking the protocol.
MAX_PACKET = 4 * 1024 * 1024
_LENGTH = struct.Struct("!I")


class MilterProtocolError(Exception):
    """The milter sent what the protocol does not allow; the message says what."""


def encode(command: Command, data: bytes = b"") -> bytes:
    """One packet: length (command byte and data), command, data."""
    return _LENGTH.pack(len(data) + 1) + command.value + data


def strings(*values: str | bytes) -> bytes:
    """NUL-terminated strings, as the protocol carries text (UTF-8 for str)."""
    out = bytearray()
    for value in values:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        if b"\0" in raw:
            raise ValueError("milter strings cannot hold NUL")
        out += raw + b"\0"
    return bytes(out)


def negotiate(actions: Action, protocol: Protocol, version: int = PROTOCOL_VERSION) -> bytes:
    """OPTNEG: the version we speak, the actions we allow, the protocol steps we offer."""
    return encode(Command.NEGOTIATE, struct.pack("!III", version, int(actions), int(protocol)))


def macros(command: Command, values: Mapping[str, str]) -> bytes:
    """MACRO: the macros for the command that follows (names as ``j`` or ``{daemon_name}``)."""
    pairs = [item for name, value in values.items() for item in (name, value)]
    return encode(Command.MACRO, command.value + strings(*pairs))


def connect(hostname: str, family: Family, port: int, address: str) -> bytes:
    """CONNECT: the client's name and address (UNKNOWN carries neither port nor address)."""
    if family is Family.UNKNOWN:
        return encode(Command.CONNECT, strings(hostname) + family.value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    data = strings(hostname) + family.value + struct.pack("!H", port) + strings(address)
    return encode(Command.CONNECT, data)


def header(name: str, value: bytes) -> bytes:
    return encode(Command.HEADER, strings(name, value))


def body_packets(data: bytes) -> Iterator[bytes]:
    """BODY packets of at most ``MAX_BODY_CHUNK`` bytes each (none for an empty body)."""
    view = memoryview(data)
    for start in range(0, len(data), MAX_BODY_CHUNK):
        yield encode(Command.BODY, bytes(view[start : start + MAX_BODY_CHUNK]))


# -- replies -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """The milter's OPTNEG: its version, the actions it wants, the steps it skips, and the
    macros it asks for per stage (SET_SYMBOL_LIST)."""

    version: int
    actions: Action
    protocol: Protocol
    macros: Mapping[MacroStage, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accept:
    """Accept: the rest of this message (or connection) needs no more of this milter."""


@dataclass(frozen=True, slots=True)
class Continue:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    pass


@dataclass(frozen=True, slots=True)
class Tempfail:
    pass


@dataclass(frozen=True, slots=True)
class Discard:
    pass


@dataclass(frozen=True, slots=True)
class ConnectionFail:
    pass


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


@dataclass(frozen=True, slots=True)
class Progress:
    """Still working: the MTA restarts its timer and waits on."""


@dataclass(frozen=True, slots=True)
class Skip:
    """No more BODY chunks wanted (only in answer to BODY)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyWithCode:
    """REPLYCODE: the SMTP reply to give, a 4xx or a 5xx (RFC 5321 4.2: three digits)."""

    code: int
    text: str  # after the code: the enhanced status code, if any, and the words

    def __post_init__(self) -> None:
        if not 400 <= self.code <= 599:
            raise MilterProtocolError(f"a reply code must be 4xx or 5xx, got {self.code}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Quarantine:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddHeader:
    name: str
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class InsertHeader:
    """Insert before the field at ``index`` (0: at the top) among all fields."""

    index: int
    name: str
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeHeader:
    """Replace the ``index``-th (from 1) field called ``name``; an empty value deletes it."""

    index: int
    name: str
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeFrom:
    sender: str
    args: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AddRecipient:
    recipient: str
    args: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecipient:
    recipient: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceBody:
    """One chunk of the new body; the chunks of one message, in order, are the body."""

    chunk: bytes


Reply = (
    Negotiated
    | Accept
    | Continue
    | Reject
    | Tempfail
    | Discard
    | ConnectionFail
    | Shutdown
    | Progress
    | Skip
    | ReplyWithCode
    | Quarantine
    | AddHeader
    | InsertHeader
    | ChangeHeader
    | ChangeFrom
    | AddRecipient
    | DeleteRecipient
    | ReplaceBody
)

_EMPTY: dict[ReplyCode, Reply] = {
    ReplyCode.ACCEPT: Accept(),
    ReplyCode.CONTINUE: Continue(),
    ReplyCode.REJECT: Reject(),
    ReplyCode.TEMPFAIL: Tempfail(),
    ReplyCode.DISCARD: Discard(),
    ReplyCode.CONNECTION_FAIL: ConnectionFail(),
    ReplyCode.SHUTDOWN: Shutdown(),
    ReplyCode.PROGRESS: Progress(),
    ReplyCode.SKIP: Skip(),
}
_CODES = {code.value: code for code in ReplyCode}


class ReplyReader:
    """Bytes from a milter in, replies out: ``feed`` whatever arrived, get what is whole."""

    def __init__(self, *, max_packet: int = MAX_PACKET) -> None:
        self._buffer = bytearray()
        self._max = max_packet

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies = []
        while len(self._buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length == 0:
                raise MilterProtocolError("a packet of length 0 (it needs a reply code)")
            if length > self._max:
                raise MilterProtocolError(f"a packet of {length} bytes (at most {self._max})")
            if len(self._buffer) < 4 + length:
                break
            packet = bytes(self._buffer[4 : 4 + length])
            del self._buffer[: 4 + length]
            replies.append(parse_reply(packet[:1], packet[1:]))
        return replies


def parse_reply(code: bytes, data: bytes) -> Reply:
    """One packet's reply; MilterProtocolError for anything the protocol does not allow."""
    known = _CODES.get(code)
    if known is None:
        raise MilterProtocolError(f"unknown reply code {code!r}")
    empty = _EMPTY.get(known)
    if empty is not None:
        return empty  # libmilter sends these with no data; any data is not looked at
    match known:
        case ReplyCode.NEGOTIATE:
            return _negotiated(data)
        case ReplyCode.REPLY_CODE:
            return _reply_code(_texts(known, data, 1)[0])
        case ReplyCode.QUARANTINE:
            return Quarantine(reason=_texts(known, data, 1)[0])
        case ReplyCode.ADD_HEADER:
            name, value = _fields(known, data, 2)
            return AddHeader(name=_header_name(name), value=value)
        case ReplyCode.INSERT_HEADER | ReplyCode.CHANGE_HEADER:
            if len(data) < 4:
                raise MilterProtocolError(f"{known.name} without its index")
            (index,) = _LENGTH.unpack_from(data)
            name, value = _fields(known, data[4:], 2)
            if known is ReplyCode.INSERT_HEADER:
                return InsertHeader(index=index, name=_header_name(name), value=value)
            return ChangeHeader(index=index, name=_header_name(name), value=value)
        case ReplyCode.CHANGE_FROM:
            texts = _texts(known, data, 1, 2)
            return ChangeFrom(sender=texts[0], args=texts[1] if len(texts) > 1 else "")
        case ReplyCode.ADD_RECIPIENT:
            return AddRecipient(recipient=_texts(known, data, 1)[0])
        case ReplyCode.ADD_RECIPIENT_PAR:
            texts = _texts(known, data, 1, 2)
            return AddRecipient(recipient=texts[0], args=texts[1] if len(texts) > 1 else "")
        case ReplyCode.DELETE_RECIPIENT:
            return DeleteRecipient(recipient=_texts(known, data, 1)[0])
        case ReplyCode.REPLACE_BODY:
            return ReplaceBody(chunk=data)
    raise MilterProtocolError(f"reply {known.name} is not one a milter sends after OPTNEG")


def _negotiated(data: bytes) -> Negotiated:
    if len(data) < 12:
        raise MilterProtocolError(f"OPTNEG of {len(data)} bytes (at least 12)")
    version, actions, protocol = struct.unpack_from("!III", data)
    found: dict[MacroStage, tuple[str, ...]] = {}
    rest = data[12:]
    while rest:
        # SET_SYMBOL_LIST: a stage as a 32-bit number and its macro names, space-separated.
        if len(rest) < 5:
            raise MilterProtocolError("OPTNEG's macro list is cut short")
        (stage,) = _LENGTH.unpack_from(rest)
        names, nul, rest = rest[4:].partition(b"\0")
        if not nul:
            raise MilterProtocolError("OPTNEG's macro list is not NUL-terminated")
        try:
            where = MacroStage(stage)
        except ValueError:
            raise MilterProtocolError(f"OPTNEG asks macros for unknown stage {stage}") from None
        found[where] = tuple(_text(names).split())
    return Negotiated(
        version=version,
        actions=Action(actions & _known(Action)),
        protocol=Protocol(protocol & _known(Protocol)),
        macros=found,
    )


def _known(flags: type[Action] | type[Protocol]) -> int:
    mask = 0
    for flag in flags:
        mask |= int(flag)
    return mask


def _reply_code(text: str) -> ReplyWithCode:
    code, _, rest = text.partition(" ")
    first = code.split("-", 1)[0]
    if len(first) != 3 or not first.isdigit():
        raise MilterProtocolError(f"REPLYCODE does not start with a reply code: {text[:60]!r}")
    return ReplyWithCode(code=int(first), text=rest.strip() if code == first else text[4:])


def _fields(code: ReplyCode, data: bytes, count: int) -> list[bytes]:
    parts = data.split(b"\0")
    if len(parts) < count + 1 or parts[-1]:
        raise MilterProtocolError(f"{code.name} needs {count} NUL-terminated strings")
    return parts[:count]


def _texts(code: ReplyCode, data: bytes, least: int, most: int | None = None) -> list[str]:
    parts = data.split(b"\0")
    if parts[-1]:
        raise MilterProtocolError(f"{code.name}: its data does not end in NUL")
    parts = parts[:-1]
    if not least <= len(parts) <= (most or least):
        raise MilterProtocolError(f"{code.name}: {len(parts)} strings, expected {least}")
    return [_text(part) for part in parts]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _header_name(raw: bytes) -> str:
    # RFC 5322 2.2: printable ASCII but for the colon.
    if not raw or any(byte < 33 or byte > 126 or byte == 58 for byte in raw):
        raise MilterProtocolError(f"not a header field name: {raw[:60]!r}")
    return raw.decode("ascii")


def join_chunks(replies: Iterable[Reply]) -> bytes:
    """The new body of a message's REPLACE_BODY chunks."""
    return b"".join(r.chunk for r in replies if isinstance(r, ReplaceBody))


def answered(command: Command, protocol: Protocol) -> bool:
    """Whether the milter answers ``command`` under the negotiated ``protocol``."""
    if command in NEVER_ANSWERED:
        return False
    skipped, unanswered = SKIPPED_BY.get(command), UNANSWERED_WITH.get(command)
    if skipped is not None and protocol & skipped:
        return False
    return not (unanswered is not None and protocol & unanswered)


def sent(command: Command, protocol: Protocol) -> bool:
    """Whether ``command`` is sent at all under ``protocol`` (NO_* switches it off)."""
    skipped = SKIPPED_BY.get(command)
    return skipped is None or not protocol & skipped
