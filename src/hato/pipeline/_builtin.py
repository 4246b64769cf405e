"""The filters every Hato has: the trace field and submission's missing fields."""

from __future__ import annotations

import email.utils
from typing import ClassVar

from ..spool import Envelope, Origin
from ._filter import ACCEPT, Message, Stage, Verdict

__all__ = ["ReceivedField", "SubmissionFields", "received_field"]


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
        header, added = message.header, b""
        if not header.complete:
            return b""  # a section too long to read ahead: taken as it is
        if not header.has("Date"):
            added += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode()
        if not header.has("Message-ID"):
            added += f"Message-ID: {email.utils.make_msgid(domain=self.hostname)}\r\n".encode()
        return added

    async def end(self, message: Message) -> Verdict:
        return ACCEPT
