"""What the engine reports to its caller: the commands that need a decision, and data.

Events marked *needs a reply* pause the engine until the caller answers with
``ServerConnection.send_reply``; the others are information and need nothing back.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._params import MailParams, RcptParams
from ._reply import Reply

__all__ = [
    "AuthResponse",
    "AuthStart",
    "CommandRejected",
    "DataChunk",
    "DataCommand",
    "Event",
    "Hello",
    "MailFrom",
    "MessageEnd",
    "RcptTo",
    "Reset",
    "StartTls",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """EHLO (``extended``) or HELO. Needs a reply (250 accepts, resetting any transaction)."""

    name: str
    extended: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MailFrom:
    """MAIL FROM, syntax already checked. Needs a reply (250 opens the transaction)."""

    reverse_path: str
    params: MailParams


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptTo:
    """RCPT TO, syntax and recipient limit already checked. Needs a reply (2xx accepts)."""

    forward_path: str
    params: RcptParams


@dataclass(frozen=True, slots=True, kw_only=True)
class DataCommand:
    """DATA with at least one accepted recipient. Needs a reply (354 starts the data)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataChunk:
    """Message octets, dot-unstuffed, in order; no reply. Not sent once the message is refused."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEnd:
    """The end of DATA or of ``BDAT ... LAST``. Needs a reply.

    ``problem`` is the refusal the engine found while reading (size, bare line ends,
    line length); the caller drops what it stored and sends it. Either way the
    transaction is over after the reply.
    """

    problem: Reply | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset:
    """The transaction was dropped (RSET); the engine has answered already."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTls:
    """STARTTLS. Needs a reply (220 makes the engine wait for ``tls_established``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthStart:
    """AUTH mechanism [initial-response]. Needs a reply (334 to continue, 235, or an error)."""

    mechanism: str
    initial_response: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResponse:
    """A line sent after a 334 challenge. Needs a reply."""

    data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """The engine refused a command itself (syntax, sequence, limit); already answered."""

    command: str
    reply: Reply


Event = (
    Hello
    | MailFrom
    | RcptTo
    | DataCommand
    | DataChunk
    | MessageEnd
    | Reset
    | StartTls
    | AuthStart
    | AuthResponse
    | CommandRejected
)
