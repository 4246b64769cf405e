"""Reports as built: what email clients and report parsers will read from them."""

from __future__ import annotations

import io
import quopri
from pathlib import Path

import pytest
from dsn_samples import (
    ARRIVAL,
    HOST,
    NOW,
    ORIGINAL,
    STATUS_FOR,
    lines_are_sound,
    parse,
    recipient,
    report,
    value,
)

from hato.dsn import HEADER_SECTION_LIMIT, Action, Report, build_report, write_report

SUBJECTS = {
    Action.FAILED: "Undelivered Mail Returned to Sender",
    Action.DELAYED: "Delayed Mail (still being retried)",
    Action.DELIVERED: "Successful Mail Delivery Report",
    Action.RELAYED: "Relayed Mail Report",
    Action.EXPANDED: "Expanded Mail Report",
}


def build(r: Report, original: bytes = ORIGINAL) -> bytes:
    data = build_report(r, original, now=NOW, message_id_domain=HOST)
    lines_are_sound(data)
    return data


@pytest.mark.parametrize("action", list(Action))
def test_every_action_gives_a_parseable_report_with_the_fields_given(action: Action) -> None:
    retry = {"will_retry_until": ARRIVAL + 5 * 86400} if action is Action.DELAYED else {}
    one = recipient(action, remote_mta="mx.example.org", **retry)
    parsed = parse(build(report(one)))

    message = parsed.message
    assert message["Subject"] == SUBJECTS[action]
    assert message["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{HOST}"
    assert message["To"].addresses[0].addr_spec == "alice@example.com"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime.timestamp() == NOW
    assert message["Message-ID"].endswith(f"@{HOST}>")
    types = [p.get_content_type() for p in message.iter_parts()]
    assert types == ["text/plain", "message/delivery-status", "message/rfc822"]

    assert parsed.per_message == [
        ("Reporting-MTA", f"dns; {HOST}"),
        ("X-Hato-Queue-ID", "0ABCDEFGHIJ1234"),
        ("Arrival-Date", "Tue, 14 Nov 2023 22:13:20 +0000"),
    ]
    expected = [
        ("Final-Recipient", "rfc822; bob@example.org"),
        ("Action", action.value),
        ("Status", STATUS_FOR[action]),
        ("Remote-MTA", "dns; mx.example.org"),
        ("Last-Attempt-Date", "Tue, 14 Nov 2023 22:14:20 +0000"),
    ]
    if action is Action.DELAYED:
        expected.append(("Will-Retry-Until", "Sun, 19 Nov 2023 22:13:20 +0000"))
    assert parsed.per_recipient == [expected]


def test_email_reads_the_delivery_status_as_blocks_of_fields() -> None:
    """Python's own message/delivery-status support sees one block per recipient too."""
    two = (recipient(), recipient(final_recipient="carol@example.org", status="5.2.1"))
    blocks = parse(build(report(*two))).part(1).get_payload()
    assert isinstance(blocks, list)
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "rfc822; bob@example.org",
        "rfc822; carol@example.org",
    ]
    assert blocks[0]["Reporting-MTA"] == f"dns; {HOST}"


def test_message_ids_are_unique() -> None:
    first, second = (parse(build(report())).message["Message-ID"] for _ in range(2))
    assert first != second


def test_recipients_keep_their_order_and_fields() -> None:
    recipients = tuple(
        recipient(final_recipient=f"user{n}@example.org", status=f"5.1.{n}") for n in range(1, 4)
    )
    parsed = parse(build(report(*recipients)))
    assert [value(f, "Final-Recipient") for f in parsed.per_recipient] == [
        f"rfc822; user{n}@example.org" for n in range(1, 4)
    ]
    assert [value(f, "Status") for f in parsed.per_recipient] == ["5.1.1", "5.1.2", "5.1.3"]


@pytest.mark.parametrize("envid", [None, "QQ314159"])
def test_original_envelope_id_only_when_given(envid: str | None) -> None:
    parsed = parse(build(report(envid=envid)))
    assert value(parsed.per_message, "Original-Envelope-Id") == envid


@pytest.mark.parametrize(
    ("orcpt", "field"),
    [(None, None), ("rfc822;Bob@Example.org", "rfc822; Bob@Example.org")],
)
def test_original_recipient_only_when_given(orcpt: str | None, field: str | None) -> None:
    parsed = parse(build(report(recipient(original_recipient=orcpt))))
    assert value(parsed.per_recipient[0], "Original-Recipient") == field
    assert parsed.per_recipient[0][0][0] == ("Original-Recipient" if orcpt else "Final-Recipient")


def test_remote_reply_is_the_smtp_diagnostic_and_is_quoted_for_the_reader() -> None:
    reply = "550-5.1.1 <bob@example.org>: no such user\r\n550 5.1.1 see https://help.example.org"
    r = report(recipient(remote_mta="mx.example.org", remote_reply=reply))
    parsed = parse(build(r))
    assert value(parsed.per_recipient[0], "Diagnostic-Code") == (
        "smtp; 550-5.1.1 <bob@example.org>: no such user 550 5.1.1 see https://help.example.org"
    )
    text = parsed.text()
    assert "mx.example.org answered:" in text
    assert "        550-5.1.1 <bob@example.org>: no such user\n" in text
    assert "        550 5.1.1 see https://help.example.org\n" in text
    assert "the address does not exist" in parsed.words()
    assert "What to check:" in text


def test_a_local_explanation_is_an_x_hato_diagnostic() -> None:
    parsed = parse(build(report(recipient(status="5.4.6", detail="mail loop: too many hops"))))
    assert value(parsed.per_recipient[0], "Diagnostic-Code") == "X-Hato; mail loop: too many hops"
    assert value(parsed.per_recipient[0], "Remote-MTA") is None
    assert "Details: mail loop: too many hops" in parsed.text()


def test_no_diagnostic_when_nothing_was_said() -> None:
    parsed = parse(build(report(recipient())))
    assert value(parsed.per_recipient[0], "Diagnostic-Code") is None


def test_a_delay_report_says_until_when_it_retries() -> None:
    r = report(
        recipient(Action.DELAYED, will_retry_until=ARRIVAL + 5 * 86400),
        return_content="headers",
    )
    parsed = parse(build(r))
    words = parsed.words()
    assert "will keep trying until 2023-11-19 22:13 UTC" in words
    assert "do not need to send the message again" in words


def test_a_success_report_gives_no_advice() -> None:
    text = parse(build(report(recipient(Action.DELIVERED)))).words()
    assert "delivered to the recipients listed below" in text
    assert "What to check" not in text
    assert "What happened" not in text


def test_the_human_text_names_the_queue_id_and_arrival() -> None:
    text = parse(build(report())).text()
    assert "queue ID 0ABCDEFGHIJ1234" in text
    assert "2023-11-14 22:13 UTC" in text
    assert f"This is the mail system at {HOST}." in text
    assert all(len(line) <= 76 for line in text.splitlines())


def test_non_ascii_text_is_quoted_printable_and_decodes_back() -> None:
    r = report(recipient(detail="la boîte est pleine", status="5.2.2"))
    parsed = parse(build(r))
    header, content = parsed.raw_parts[0]
    assert b"Content-Transfer-Encoding: quoted-printable" in header
    assert content.isascii()
    assert "Details: la boîte est pleine" in quopri.decodestring(content).decode()
    assert "Details: la boîte est pleine" in parsed.text()


# --- what is returned ---------------------------------------------------------------


def test_full_returns_the_message_unchanged() -> None:
    parsed = parse(build(report(return_content="full")))
    header, content = parsed.raw_parts[2]
    assert b"Content-Type: message/rfc822" in header
    assert content == ORIGINAL
    inner = parsed.part(2).get_content()
    assert inner["Subject"] == "Lunch on Friday?"


def test_headers_returns_the_header_section_only() -> None:
    parsed = parse(build(report(return_content="headers")))
    part = parsed.part(2)
    assert part.get_content_type() == "text/rfc822-headers"
    _, content = parsed.raw_parts[2]
    assert content == ORIGINAL.partition(b"\r\n\r\n")[0] + b"\r\n"
    assert b"Shall we meet" not in build(report(return_content="headers"))


def test_none_returns_nothing() -> None:
    data = build(report(return_content="none"))
    parsed = parse(data)
    assert len(parsed.raw_parts) == 2
    assert b"Lunch on Friday" not in data
    assert "attached" not in parsed.text()


def test_headers_reads_no_further_than_the_empty_line() -> None:
    body = b"x" * 1_000_000 + b"\r\n"
    source = io.BytesIO(ORIGINAL + body)
    build_report(report(return_content="headers"), source, now=NOW, message_id_domain=HOST)
    assert source.tell() == ORIGINAL.index(b"\r\n\r\n") + 4


def test_header_lines_with_bare_lf_are_returned_with_crlf() -> None:
    original = b"From: a@example.com\nSubject: old client\n\nbody\n"
    parsed = parse(build(report(return_content="headers"), original))
    assert parsed.raw_parts[2][1] == b"From: a@example.com\r\nSubject: old client\r\n"


def test_the_full_message_is_copied_in_chunks_from_its_file(tmp_path: Path) -> None:
    body = b"".join(b"line %07d of a long message\r\n" % n for n in range(100_000))
    original = ORIGINAL + body
    path = tmp_path / "message"
    path.write_bytes(b"PREFIX" + original)
    chunks: list[bytes] = []
    with path.open("rb") as source:
        source.read(6)  # the report starts from where the file stands
        write_report(report(), source, chunks.append, now=NOW, message_id_domain=HOST)
    data = b"".join(chunks)
    assert parse(data).raw_parts[2][1] == original
    assert max(len(chunk) for chunk in chunks) <= 64 * 1024
    assert len(original) > 3 * 1024 * 1024


def test_full_needs_a_seekable_file() -> None:
    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: object) -> int:
            return 0

    with pytest.raises(ValueError, match="seekable"):
        build_report(report(), Pipe(), now=NOW, message_id_domain=HOST)  # type: ignore[arg-type]


def test_header_section_limit_bounds_a_message_without_an_empty_line() -> None:
    original = b"".join(b"X-Filler-%06d: %s\r\n" % (n, b"y" * 60) for n in range(10_000))
    data = build(report(return_content="headers"), original)
    returned = parse(data).raw_parts[2][1]
    assert 0 < len(returned) <= HEADER_SECTION_LIMIT
    assert returned.endswith(b"\r\n")
    assert original.startswith(returned)


@pytest.mark.parametrize("domain", ["", "two words", "a@b", "x\r\ny"])
def test_message_id_domain_must_be_a_domain(domain: str) -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        build_report(report(), ORIGINAL, now=NOW, message_id_domain=domain)
