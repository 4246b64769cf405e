"""A report as an RFC 5322 message: multipart/report with text, delivery status, original."""

from __future__ import annotations

import io
import quopri
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import make_msgid
from typing import BinaryIO, Literal

from ._fields import ascii_escape, field, one_line, rfc5322_date, unitext_address
from ._model import RecipientReport, Report
from ._original import Encoding, Returned, returned_part
from ._text import SUBJECTS, human_text

__all__ = ["ReportEncoding", "build_report", "write_report"]

Write = Callable[[bytes], object]

# RFC 3464 section 2.3.6: the diagnostic type of our own explanations (the "X-" prefix
# marks a type that is not registered, as "X-Postfix" does).
_LOCAL_DIAGNOSTIC = "X-Hato"
BodyType = Literal["7BIT", "8BITMIME", "BINARYMIME"]
_BODY: dict[Encoding, BodyType] = {
    Encoding.SEVEN_BIT: "7BIT",
    Encoding.EIGHT_BIT: "8BITMIME",
    Encoding.BINARY: "BINARYMIME",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportEncoding:
    """How the report must travel: the MAIL FROM parameters its bytes need.

    ``smtputf8`` is true when the report's own header section has UTF-8 (a UTF-8 sender,
    who is also the report's recipient). UTF-8 inside the body parts (a global delivery
    status, a returned message/global) needs 8BITMIME only, which ``body`` says.
    """

    body: BodyType  # BODY= (RFC 6152, RFC 3030)
    smtputf8: bool  # SMTPUTF8 (RFC 6531)


def _needs_global(report: Report) -> bool:
    """RFC 6533 section 4: a UTF-8 address needs message/global-delivery-status."""
    return any(
        not r.final_recipient.isascii()
        or (r.original_recipient is not None and not r.original_recipient.isascii())
        for r in report.recipients
    )


class _Fields:
    """Field lines of one block; free text is ASCII-escaped unless the block allows UTF-8."""

    def __init__(self, *, utf8: bool) -> None:
        self.utf8 = utf8
        self.lines: list[bytes] = []

    def add(self, name: str, value: str | None) -> None:
        if value is not None:
            text = one_line(value)
            self.lines.append(field(name, text if self.utf8 else ascii_escape(text)))


def _address(address: str) -> str:
    """RFC 3464 section 2.3.2 address-type ";" address, with RFC 6533's utf-8 type."""
    text = one_line(address)
    return f"rfc822; {text}" if text.isascii() else f"utf-8; {unitext_address(text)}"


def _diagnostic(recipient: RecipientReport) -> str | None:
    if recipient.remote_reply is not None:
        return f"smtp; {recipient.remote_reply}"  # one_line joins a multiline reply
    if recipient.detail is not None:
        return f"{_LOCAL_DIAGNOSTIC}; {recipient.detail}"
    return None


def _date(timestamp: float | None) -> str | None:
    return None if timestamp is None else rfc5322_date(timestamp)


def _recipient_fields(recipient: RecipientReport, *, utf8: bool) -> bytes:
    """RFC 3464 section 2.3: one per-recipient block."""
    block = _Fields(utf8=utf8)
    if recipient.original_recipient is not None:
        addr_type, _, address = recipient.original_recipient.partition(";")
        block.add("Original-Recipient", f"{addr_type.strip()}; {address.strip()}")
    block.add("Final-Recipient", _address(recipient.final_recipient))
    block.add("Action", recipient.action.value)
    block.add("Status", recipient.status)
    if recipient.remote_mta is not None:
        block.add("Remote-MTA", f"dns; {recipient.remote_mta}")
    block.add("Diagnostic-Code", _diagnostic(recipient))
    block.add("Last-Attempt-Date", _date(recipient.last_attempt))
    block.add("Will-Retry-Until", _date(recipient.will_retry_until))
    return b"".join(block.lines)


def delivery_status(report: Report) -> tuple[str, bytes]:
    """Part 2: (media type, content), RFC 3464 section 2 (RFC 6533 section 4 for UTF-8).

    Per-message fields, then one block per recipient, blocks separated by empty lines.
    """
    utf8 = _needs_global(report)
    block = _Fields(utf8=utf8)
    block.add("Original-Envelope-Id", report.envid)
    block.add("Reporting-MTA", f"dns; {report.reporting_mta}")
    block.add("X-Hato-Queue-ID", report.queue_id)
    block.add("Arrival-Date", rfc5322_date(report.arrival))
    blocks = [b"".join(block.lines)]
    blocks += [_recipient_fields(r, utf8=utf8) for r in report.recipients]
    media = "message/global-delivery-status" if utf8 else "message/delivery-status"
    return media, b"\r\n".join(blocks)


def _text_part(report: Report) -> tuple[str, bytes]:
    """Part 1 as (transfer encoding, content): ASCII as is, anything else quoted-printable.

    Either way it is 7bit on the wire: remote replies quoted in it cannot make the report
    need 8BITMIME.
    """
    text = human_text(report).encode()
    if text.isascii():
        return "7bit", text.replace(b"\n", b"\r\n")
    return "quoted-printable", quopri.encodestring(text).replace(b"\n", b"\r\n")


def _part_header(content_type: str, description: str, cte: str) -> bytes:
    return (
        field("Content-Type", content_type)
        + field("Content-Description", description)
        + field("Content-Transfer-Encoding", cte)
    )


def _message_header(
    report: Report, *, now: float, message_id_domain: str, boundary: str, encoding: Encoding
) -> bytes:
    host = one_line(report.reporting_mta)
    return b"".join(
        [
            field("From", f"Mail Delivery System <MAILER-DAEMON@{host}>"),
            field("To", f"<{report.original_sender}>"),
            field("Subject", SUBJECTS[report.action]),
            field("Date", rfc5322_date(now)),
            field("Message-ID", make_msgid(domain=message_id_domain)),
            # RFC 3834 section 5: automatic responses say so, so that nobody answers them.
            field("Auto-Submitted", "auto-replied"),
            field("MIME-Version", "1.0"),
            # RFC 6522 section 3: the second part's type is named by report-type.
            field(
                "Content-Type",
                f'multipart/report; report-type=delivery-status; boundary="{boundary}"',
            ),
            field("Content-Transfer-Encoding", encoding.label),
        ]
    )


def _parts(report: Report, returned: Returned | None) -> Iterator[tuple[bytes, Encoding]]:
    """(MIME header, encoding) of each part; the third part's content is streamed apart."""
    cte, text = _text_part(report)
    text_header = _part_header("text/plain; charset=utf-8", "Notification", cte)
    yield text_header + b"\r\n" + text, Encoding.SEVEN_BIT
    media, status = delivery_status(report)
    encoding = Encoding.SEVEN_BIT if status.isascii() else Encoding.EIGHT_BIT
    yield _part_header(media, "Delivery report", encoding.label) + b"\r\n" + status, encoding
    if returned is not None:
        head = _part_header(returned.content_type, returned.description, returned.encoding.label)
        yield head + b"\r\n", returned.encoding


def write_report(
    report: Report,
    original: BinaryIO | bytes,
    write: Write,
    *,
    now: float,
    message_id_domain: str,
) -> ReportEncoding:
    """Write ``report`` as a complete message through ``write``, in pieces.

    ``original`` is the reported message (bytes, or a binary file read from its current
    position; seekable when the whole message is returned). Its content is copied in
    chunks, never held whole. Send the result with the null reverse-path
    (``REPORT_REVERSE_PATH``) and the returned BODY and SMTPUTF8 parameters.
    """
    if not message_id_domain or any(c in message_id_domain for c in " <>@\r\n"):
        raise ValueError(f"not a domain for a Message-ID: {message_id_domain!r}")
    source = io.BytesIO(original) if isinstance(original, bytes) else original
    returned = returned_part(source, report.return_content)
    parts = list(_parts(report, returned))
    encoding = max(part_encoding for _, part_encoding in parts)
    boundary = f"=_hato_{secrets.token_hex(16)}"
    delimiter = f"\r\n--{boundary}\r\n".encode()
    header = _message_header(
        report,
        now=now,
        message_id_domain=message_id_domain,
        boundary=boundary,
        encoding=encoding,
    )
    write(header + b"\r\nThis is a MIME-encapsulated message.\r\n")
    for part, _ in parts:
        write(delimiter + part)
    if returned is not None:
        returned.copy(write)
    write(f"\r\n--{boundary}--\r\n".encode())
    return ReportEncoding(body=_BODY[encoding], smtputf8=not header.isascii())


def build_report(
    report: Report, original: BinaryIO | bytes, *, now: float, message_id_domain: str
) -> bytes:
    """The whole report as bytes: :func:`write_report` into memory."""
    chunks: list[bytes] = []
    write_report(report, original, chunks.append, now=now, message_id_domain=message_id_domain)
    return b"".join(chunks)
