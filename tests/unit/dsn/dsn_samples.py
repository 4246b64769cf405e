"""Sample reports and a reader that takes a built report apart again, independently of hato."""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
from dataclasses import dataclass, replace

from hato.dsn import Action, RecipientReport, Report

HOST = "mx.example.com"
ARRIVAL = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 +0000
NOW = ARRIVAL + 3600
ORIGINAL = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Lunch on Friday?\r\n"
    b"Message-ID: <lunch@example.com>\r\n"
    b"\r\n"
    b"Shall we meet at noon?\r\n"
)
STATUS_FOR = {
    Action.FAILED: "5.1.1",
    Action.DELAYED: "4.4.1",
    Action.DELIVERED: "2.0.0",
    Action.RELAYED: "2.0.0",
    Action.EXPANDED: "2.0.0",
}


def recipient(action: Action = Action.FAILED, **changes: object) -> RecipientReport:
    base = RecipientReport(
        final_recipient="bob@example.org",
        original_recipient=None,
        action=action,
        status=STATUS_FOR[action],
        last_attempt=ARRIVAL + 60,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def report(*recipients: RecipientReport, **changes: object) -> Report:
    base = Report(
        reporting_mta=HOST,
        queue_id="0ABCDEFGHIJ1234",
        original_sender="alice@example.com",
        envid=None,
        arrival=ARRIVAL,
        recipients=recipients or (recipient(),),
        return_content="full",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


Fields = list[tuple[str, str]]


@dataclass
class Parsed:
    """A report as ``email`` sees it, plus its raw parts for byte-level checks."""

    message: email.message.EmailMessage
    raw_parts: list[tuple[bytes, bytes]]  # (MIME header, content) of each body part
    per_message: Fields
    per_recipient: list[Fields]

    def part(self, index: int) -> email.message.EmailMessage:
        parts = list(self.message.iter_parts())
        assert isinstance(parts[index], email.message.EmailMessage)
        return parts[index]

    def text(self) -> str:
        """Part 1 decoded, with ``\\n`` line ends."""
        content = self.part(0).get_content()
        assert isinstance(content, str)
        return content.replace("\r\n", "\n")

    def words(self) -> str:
        """Part 1 as one line, for phrases that wrapping may have split."""
        return " ".join(self.text().split())


def fields_of(block: bytes) -> Fields:
    """Parse one header block with ``email.parser``; values unfolded (RFC 5322 2.2.3)."""
    parsed = email.parser.Parser(policy=email.policy.compat32).parsestr(block.decode())
    assert not parsed.defects, parsed.defects
    assert parsed.get_payload() == "", f"text outside the fields: {parsed.get_payload()!r}"
    return [(name, str(value).replace("\r\n", "")) for name, value in parsed.items()]


def raw_parts(data: bytes, boundary: str) -> list[tuple[bytes, bytes]]:
    """Split a multipart body at its delimiters (RFC 2046 section 5.1.1) by hand."""
    pieces = data.split(b"\r\n--" + boundary.encode())
    assert pieces[-1] == b"--\r\n", "the close delimiter ends the message"
    found = []
    for piece in pieces[1:-1]:
        assert piece.startswith(b"\r\n")
        header, separator, content = piece[2:].partition(b"\r\n\r\n")
        assert separator, "every part has a header section and an empty line"
        found.append((header + b"\r\n", content))
    return found


def parse(data: bytes) -> Parsed:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    boundary = message.get_boundary()
    assert boundary is not None
    parts = raw_parts(data, boundary)
    assert len(parts) >= 2
    status = parts[1][1]
    assert status.endswith(b"\r\n")
    blocks = status[:-2].split(b"\r\n\r\n")
    return Parsed(
        message=message,
        raw_parts=parts,
        per_message=fields_of(blocks[0] + b"\r\n"),
        per_recipient=[fields_of(block + b"\r\n") for block in blocks[1:]],
    )


def value(fields: Fields, name: str) -> str | None:
    """The one value of field ``name``; None when absent; fails when repeated."""
    values = [v for n, v in fields if n.lower() == name.lower()]
    assert len(values) <= 1, f"{name} appears {len(values)} times"
    return values[0] if values else None


def lines_are_sound(data: bytes) -> None:
    """Every line ends in CRLF (no bare CR or LF anywhere) and holds at most 998 octets."""
    assert data.endswith(b"\r\n")
    lines = data[:-2].split(b"\r\n")
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, f"bare line end in {line[:80]!r}"
        assert len(line) <= 998, f"line of {len(line)} octets"
