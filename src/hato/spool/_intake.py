"""The one intake: every way a message enters Hato (an SMTP session, a report Hato writes,
the ``sendmail`` command, the pickup directory, and later the HTTP API) opens an
:class:`IncomingMessage`, streams the bytes into it and awaits ``finish``.

Promise, the same for every caller: ``finish`` returns :class:`Accepted` only once every
copy of the message is durable (in the spool, or in every local mailbox when it was
delivered while its sender waited); only then may the caller say so (``250``, exit 0).
Anything else is a :class:`Refusal` carrying the reply to give, and nothing was kept.

The protocol lives here, low, so that the server and the queue can both depend on it
without importing each other; its implementation (``pipeline.PipelineIntake``) runs the
message filters and is wired in ``app.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..smtp import Reply
from ._envelope import Envelope

__all__ = [
    "ANNOTATION_FULL_NAME",
    "ANNOTATION_PICKUP",
    "ANNOTATION_SENDER_SET",
    "ANNOTATION_USER",
    "Accepted",
    "IncomingMessage",
    "Intake",
    "Origin",
    "Refusal",
    "SessionFacts",
    "SessionStages",
]

# What a local way in tells the filters (Intake.open's annotations): the submitting user
# ("UID NAME", from the maildrop file's owner), the -F full name, True when a user
# other than the server's set the envelope sender with -f, and a pickup file's name.
ANNOTATION_USER = "local_user"
ANNOTATION_FULL_NAME = "full_name"
ANNOTATION_SENDER_SET = "sender_set"
ANNOTATION_PICKUP = "pickup_file"


class Origin(enum.StrEnum):
    """How a message came in: which filters apply to it depends on this."""

    SMTP = "smtp"  # an SMTP session that is not submission
    SUBMISSION = "submission"  # RFC 6409: the submission listeners
    REPORT = "report"  # a delivery report Hato wrote itself
    SENDMAIL = "sendmail"  # the sendmail command, through the maildrop directory
    PICKUP = "pickup"  # a file dropped into the pickup directory


@dataclass(frozen=True, slots=True)
class Accepted:
    queue_id: str
    # True: delivered into local mailboxes while the sender waited; never queued.
    delivered: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Not accepted: the reply to give (5xx refused, 4xx try again) and why, for the log."""

    reply: Reply
    reason: str


class IncomingMessage(Protocol):
    """One message being received. ``write`` raises ``SpoolError`` when the bytes cannot be
    kept; the message is then gone and ``finish`` refuses it."""

    @property
    def queue_id(self) -> str: ...

    @property
    def size(self) -> int: ...

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def abort(self) -> None: ...

    async def finish(self) -> Accepted | Refusal: ...


class Intake(Protocol):
    def open(
        self, envelope: Envelope, origin: Origin, *, annotations: Mapping[str, object] = {}
    ) -> IncomingMessage:
        """Start a message. The envelope is whole when its data begins (RFC 5321 3.3: the
        recipients precede DATA), and the trace fields written first need it.
        ``annotations`` is what the caller learnt before the data, for the filters (an SMTP
        session: ``{"spf": mailauth.SpfResult}`` when it checked SPF at MAIL FROM)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFacts:
    """What an SMTP session knows of its client at a stage, for the filters that take part
    before the data (a milter's connect, HELO, MAIL and RCPT callbacks and their macros)."""

    session_id: str
    listener: str  # "smtp", "submission" or "implicit_tls"
    client_ip: str
    client_port: int
    client_name: str | None  # forward-confirmed reverse DNS, when known
    server_ip: str
    server_port: int
    helo: str = ""
    tls_version: str = ""  # "TLSv1.3" once TLS is up
    cipher: str = ""
    auth_user: str | None = None


class SessionStages(Protocol):
    """The filters' say before the data, for one SMTP session (``None`` from the factory
    when no filter takes part for this listener). Each stage returns the refusal to give,
    or None to go on; the session then opens its messages with ``{"stages": this}`` in the
    annotations, so the same filters see the data at the end."""

    async def connect(self, facts: SessionFacts) -> Refusal | None: ...

    async def helo(self, facts: SessionFacts) -> Refusal | None: ...

    async def mail(
        self, facts: SessionFacts, sender: str, args: Sequence[str]
    ) -> Refusal | None: ...

    async def rcpt(
        self, facts: SessionFacts, recipient: str, args: Sequence[str]
    ) -> Refusal | None: ...

    def reset(self) -> None:
        """The transaction ended without a message reaching its end (RSET, HELO, a refusal)."""

    def close(self) -> None:
        """The session is over."""
