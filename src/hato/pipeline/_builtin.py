"""The filters every Hato has: the trace field and submission's missing fields, for
clients and for local programs (the ``sendmail`` command, the pickup directory)."""

from __future__ import annotations

import email.utils
from typing import ClassVar

from ..spool import (
    ANNOTATION_FULL_NAME,
    ANNOTATION_PICKUP,
    ANNOTATION_SENDER_SET,
    ANNOTATION_USER,
    Envelope,
    Origin,
)
from ._filter import ACCEPT, Message, Stage, Verdict

__all__ = [
    "ANNOTATION_FULL_NAME",
    "ANNOTATION_PICKUP",
    "ANNOTATION_SENDER_SET",
    "ANNOTATION_USER",
    "LocalFields",
    "ReceivedField",
    "SubmissionFields",
    "received_field",
]


def _clean(text: str) -> str:
    # The HELO name is the client's text: keep it printable and free of comment syntax.
    return "".join(c if c.isprintable() and c not in "()\\" else "?" for c in text)[:255]


def received_field(envelope: Envelope, *, hostname: str, version: str, queue_id: str) -> bytes:
    """RFC 5321 4.4 with RFC 3848's with-protocol names (the envelope's ``protocol``)."""
    ip = envelope.client_ip
    address = f"IPv6:{ip}" if ":" in ip else ip
    lines = [
        f"Received: from {_clean(envelope.helo)} ({envelope.client_name or 'unknown'} [{address}])",
        f"\tby {hostname} (Hato {version}) with {envelope.protocol} id {queue_id}",
    ]
    if envelope.tls:
        lines.append(f"\t(using {envelope.tls})")
    if len(envelope.recipients) == 1:
        # RFC 5321 4.4: "for" only with a single recipient, so the others stay private.
        lines.append(f"\tfor <{envelope.recipients[0].address}>")
    lines[-1] += "; " + email.utils.formatdate(envelope.arrival, localtime=True)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class ReceivedField:
    """The ``Received:`` field of the hop into Hato, written before the data."""

    name: ClassVar[str] = "received"
    stages: ClassVar[Stage] = Stage.OPENING

    def __init__(self, *, hostname: str, version: str) -> None:
        self.hostname, self.version = hostname, version

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return received_field(
            envelope, hostname=self.hostname, version=self.version, queue_id=queue_id
        )

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        return ACCEPT


class SubmissionFields:
    """RFC 6409 8.2 and 8.3: a submission server adds ``Date:`` and ``Message-ID:`` when
    the message has none."""

    name: ClassVar[str] = "submission-fields"
    stages: ClassVar[Stage] = Stage.HEADER

    def __init__(self, *, hostname: str) -> None:
        self.hostname = hostname

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return _missing_fields(message, self.hostname)

    async def end(self, message: Message) -> Verdict:
        return ACCEPT


def _missing_fields(message: Message, hostname: str) -> bytes:
    """RFC 6409 8.2 and 8.3: ``Date:`` and ``Message-ID:`` when the message has none."""
    header, added = message.header, b""
    if not header.complete:
        return b""  # a section too long to read ahead: taken as it is
    if not header.has("Date"):
        added += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode()
    if not header.has("Message-ID"):
        added += f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\n".encode()
    return added


class LocalFields:
    """The fields of mail from local programs, as Postfix's pickup and sendmail write them:
    a ``Received:`` naming the user (or the pickup directory), an
    ``X-Authentication-Warning:`` when a user other than the server's chose the envelope
    sender (``sendmail -f``), and the ``From:``, ``Date:`` and ``Message-ID:`` a message
    without them lacks. Written at the header stage, above everything, since the
    annotations saying who submitted are not known to the opening stage."""

    name: ClassVar[str] = "local-fields"
    stages: ClassVar[Stage] = Stage.HEADER

    def __init__(self, *, hostname: str, version: str) -> None:
        self.hostname, self.version = hostname, version

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        notes, envelope = message.annotations, message.envelope
        uid, _, user = str(notes.get(ANNOTATION_USER, "")).partition(" ")
        if message.origin is Origin.PICKUP:
            source = "from the pickup directory"
        else:
            source = f"from userid {_clean(uid)}" + (f" ({_clean(user)})" if user else "")
        lines = [
            f"Received: by {self.hostname} (Hato {self.version}, {source})",
            f"\tid {message.queue_id}",
        ]
        if len(envelope.recipients) == 1:
            lines.append(f"\tfor <{envelope.recipients[0].address}>")
        lines[-1] += "; " + email.utils.formatdate(envelope.arrival, localtime=True)
        added = ("\r\n".join(lines) + "\r\n").encode("utf-8")
        if notes.get(ANNOTATION_SENDER_SET):
            added += (
                f"X-Authentication-Warning: {self.hostname}: {_clean(user or uid)} set sender to"
                f" {envelope.reverse_path or '<>'} using -f\r\n"
            ).encode()
        if message.header.complete and not message.header.has("From") and envelope.reverse_path:
            full_name = str(notes.get(ANNOTATION_FULL_NAME) or "")
            author = email.utils.formataddr((_clean(full_name), envelope.reverse_path))
            added += f"From: {author}\r\n".encode()
        return added + _missing_fields(message, self.hostname)

    async def end(self, message: Message) -> Verdict:
        return ACCEPT
