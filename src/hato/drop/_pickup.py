"""Reading a pickup file: an RFC 5322 message whose envelope comes from its own lines.

As IIS SMTP's pickup directory takes it: ``X-Sender:`` and ``X-Receiver:`` lines at the
top of the file name the sender and the recipients, and are removed. Without them, the
recipients are those of ``To:``, ``Cc:`` and ``Bcc:`` and the sender the first address of
``Sender:`` or ``From:`` (the null sender when there is neither); ``Bcc:`` is removed
either way (RFC 5322 3.6.3: it is not shown to the other recipients).
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass

from ..smtp import AddressError, parse_path
from ..spool import Recipient
from ._maildrop import DropError, crlf

__all__ = ["PickupMessage", "header_recipients", "parse_pickup"]

# RFC 5322 2.2 and 3.6.8: a field name is printable US-ASCII but the colon.
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_ENVELOPE_FIELDS = (b"x-sender", b"x-receiver")


@dataclass(frozen=True, slots=True, kw_only=True)
class PickupMessage:
    sender: str
    recipients: tuple[Recipient, ...]
    message: bytes  # CRLF line ends, the envelope lines and Bcc removed
    smtputf8: bool


def _fields(header: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(lowercased name, body, the field's bytes) per field; DropError on other lines."""
    fields: list[tuple[bytes, bytes, bytes]] = []
    for number, line in enumerate(header.split(b"\r\n")[:-1], start=1):
        if line[:1] in (b" ", b"\t") and fields:
            name, body, raw = fields[-1]
            fields[-1] = (name, body + b"\r\n" + line, raw + line + b"\r\n")
            continue
        match = _FIELD.match(line)
        if match is None:
            raise DropError(
                f"not an RFC 5322 message: line {number} is neither a header field"
                " nor the continuation of one"
            )
        name = match.group().rstrip(b": \t").lower()
        fields.append((name, line[match.end() :], line + b"\r\n"))
    if not fields:
        raise DropError("not an RFC 5322 message: no header fields")
    return fields


def _addresses(bodies: list[bytes]) -> list[str]:
    texts = [body.decode("utf-8", "replace").replace("\r\n", "") for body in bodies]
    return [address for _, address in email.utils.getaddresses(texts) if address]


def _checked(address: str, what: str) -> str:
    try:
        return parse_path(f"<{address}>", utf8=True, allow_null=False).address
    except AddressError as error:
        raise DropError(f"{what} {address!r}: {error}") from None


def parse_pickup(data: bytes, max_size: int) -> PickupMessage:
    """The envelope and the message to store; DropError saying why a file is refused."""
    if len(data) > max_size:
        raise DropError(f"larger than smtp.max_message_size ({max_size} bytes)")
    if b"\0" in data:
        raise DropError("not an RFC 5322 message: it contains NUL bytes")
    data = crlf(data)
    if not data.strip(b"\r\n") or data.startswith(b"\r\n"):
        raise DropError("not an RFC 5322 message: no header fields")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    end = data.find(b"\r\n\r\n")
    # A file of header fields alone is a message with an empty body (RFC 5322 3.5).
    header, body = (data[: end + 2], data[end + 2 :]) if end >= 0 else (data, b"\r\n")
    fields = _fields(header)
    leading = 0
    while leading < len(fields) and fields[leading][0] in _ENVELOPE_FIELDS:
        leading += 1
    envelope, rest = fields[:leading], fields[leading:]
    if any(name == b"x-receiver" for name, _, _ in envelope):
        senders = _addresses([body for name, body, _ in envelope if name == b"x-sender"])
        wanted = _addresses([body for name, body, _ in envelope if name == b"x-receiver"])
    else:
        rest = fields
        author = [body for name, body, _ in rest if name == b"sender"] or [
            body for name, body, _ in rest if name == b"from"
        ]
        senders = _addresses(author[:1])
        wanted = _addresses([body for name, body, _ in rest if name in (b"to", b"cc", b"bcc")])
    if not wanted:
        raise DropError("no recipients: no X-Receiver, To, Cc or Bcc address")
    sender = _checked(senders[0], "sender") if senders else ""
    recipients = tuple(dict.fromkeys(_checked(a, "recipient") for a in wanted))
    kept = b"".join(raw for name, _, raw in rest if name != b"bcc")
    return PickupMessage(
        sender=sender,
        recipients=tuple(Recipient(address=a) for a in recipients),
        message=kept + body,
        smtputf8=not all(a.isascii() for a in (sender, *recipients)),
    )


def header_recipients(message: bytes) -> tuple[list[str], bytes]:
    """``sendmail -t``: the addresses of To, Cc and Bcc, and the message without Bcc.
    ``message`` has CRLF line ends. DropError when its header section cannot be read."""
    end = message.find(b"\r\n\r\n")
    header, body = (message[: end + 2], message[end + 2 :]) if end >= 0 else (message, b"")
    fields = _fields(header)
    wanted = _addresses([body for name, body, _ in fields if name in (b"to", b"cc", b"bcc")])
    kept = b"".join(raw for name, _, raw in fields if name != b"bcc")
    return wanted, kept + body
