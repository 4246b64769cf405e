"""Untrusted text, long text, UTF-8 and 8-bit content: the report stays well-formed."""

from __future__ import annotations

import pytest
from dsn_samples import HOST, NOW, ORIGINAL, lines_are_sound, parse, recipient, report, value

from hato.dsn import Action, Report, build_report, write_report


def build(r: Report, original: bytes = ORIGINAL) -> bytes:
    data = build_report(r, original, now=NOW, message_id_domain=HOST)
    lines_are_sound(data)
    return data


INJECTION = "550 no\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\nFinal-Recipient: rfc822; x@y"


@pytest.mark.parametrize("line_end", ["\r\n", "\n", "\r", "\x85", "\u2028", "\x00"])
def test_a_remote_reply_cannot_inject_fields(line_end: str) -> None:
    reply = INJECTION.replace("\r\n", line_end)
    parsed = parse(build(report(recipient(remote_reply=reply))))
    assert len(parsed.per_recipient) == 1
    fields = parsed.per_recipient[0]
    assert [name for name, _ in fields] == [
        "Final-Recipient",
        "Action",
        "Status",
        "Diagnostic-Code",
        "Last-Attempt-Date",
    ]
    assert value(fields, "Action") == "failed"
    assert value(fields, "Status") == "5.1.1"
    assert value(fields, "Diagnostic-Code") == (
        "smtp; 550 no Action: delivered Status: 2.0.0 Final-Recipient: rfc822; x@y"
    )


def test_no_field_value_can_inject_fields() -> None:
    evil = "\r\nAction: delivered\r\n"
    r = report(
        recipient(
            final_recipient=f"bob@example.org{evil}",
            original_recipient=f"rfc822;bob@example.org{evil}",
            remote_mta=f"mx.example.org{evil}",
            detail=f"local{evil}",
        ),
        envid=f"ENV{evil}",
        queue_id=f"Q{evil}",
        reporting_mta=f"{HOST}{evil}",
    )
    data = build(r)
    parsed = parse(data)
    names = [name for name, _ in parsed.per_message + parsed.per_recipient[0]]
    assert names.count("Action") == 1
    assert value(parsed.per_recipient[0], "Action") == "failed"
    assert value(parsed.per_message, "Original-Envelope-Id") == "ENV Action: delivered"
    assert parsed.message["Subject"] == "Undelivered Mail Returned to Sender"


def test_a_sender_address_cannot_inject_headers() -> None:
    data = build(report(original_sender="alice@example.com>\r\nBcc: <victim@example.net"))
    parsed = parse(data)
    assert parsed.message["Bcc"] is None
    assert b"\r\nBcc:" not in data


def test_a_long_diagnostic_is_folded_at_spaces() -> None:
    reply = "550 5.7.1 " + " ".join(f"word{n}" for n in range(1000))
    data = build(report(recipient(status="5.7.1", remote_reply=reply)))
    parsed = parse(data)
    assert value(parsed.per_recipient[0], "Diagnostic-Code") == f"smtp; {reply}"
    status_lines = parsed.raw_parts[1][1].split(b"\r\n")
    assert max(len(line) for line in status_lines) <= 78


def test_a_word_longer_than_a_line_is_cut_below_998_octets() -> None:
    word = "x" * 3000
    data = build(report(recipient(remote_reply=f"550 {word}")))
    parsed = parse(data)
    diagnostic = value(parsed.per_recipient[0], "Diagnostic-Code")
    assert diagnostic is not None
    assert diagnostic.replace(" ", "") == f"smtp;550{word}"  # cut, never lost
    assert max(len(line) for line in parsed.raw_parts[1][1].split(b"\r\n")) <= 998


def test_a_long_utf8_word_is_cut_between_characters() -> None:
    address = "ü" * 800 + "@example.org"  # 1600 octets in one word
    data = build(report(recipient(final_recipient=address)))
    status = parse(data).raw_parts[1][1]
    status.decode()  # every line is whole UTF-8: no character was split
    assert max(len(line) for line in status.split(b"\r\n")) <= 998


# --- UTF-8 addresses (RFC 6533) ---------------------------------------------------------


def test_an_ascii_report_is_message_delivery_status() -> None:
    data = build(report())
    parsed = parse(data)
    assert parsed.part(1).get_content_type() == "message/delivery-status"
    assert data.isascii()


@pytest.mark.parametrize(
    ("final", "orcpt"),
    [("jörg@bücher.example", None), ("bob@example.org", "rfc822;jörg@bücher.example")],
)
def test_a_utf8_address_makes_it_global_delivery_status(final: str, orcpt: str | None) -> None:
    parsed = parse(build(report(recipient(final_recipient=final, original_recipient=orcpt))))
    header, status = parsed.raw_parts[1]
    assert b"Content-Type: message/global-delivery-status" in header
    assert b"Content-Transfer-Encoding: 8bit" in header
    assert "jörg@bücher.example" in status.decode()


def test_a_utf8_final_recipient_has_the_utf8_address_type() -> None:
    parsed = parse(build(report(recipient(final_recipient="jörg@bücher.example"))))
    assert value(parsed.per_recipient[0], "Final-Recipient") == "utf-8; jörg@bücher.example"


def test_utf8_in_free_text_of_an_ascii_report_is_escaped() -> None:
    r = report(recipient(remote_reply="550 Benutzer unbekannt: jörg"), envid="ümlaut")
    parsed = parse(build(r))
    header, status = parsed.raw_parts[1]
    assert b"message/delivery-status" in header
    assert status.isascii()
    assert value(parsed.per_recipient[0], "Diagnostic-Code") == (
        "smtp; 550 Benutzer unbekannt: j\\x{F6}rg"
    )
    assert value(parsed.per_message, "Original-Envelope-Id") == "\\x{FC}mlaut"
    assert "jörg" in parsed.text()  # the human text keeps it readable


def write(r: Report, original: bytes) -> tuple[bytes, str, bool]:
    chunks: list[bytes] = []
    encoding = write_report(r, original, chunks.append, now=NOW, message_id_domain=HOST)
    return b"".join(chunks), encoding.body, encoding.smtputf8


def test_a_utf8_sender_needs_smtputf8() -> None:
    data, _, smtputf8 = write(report(original_sender="jörg@bücher.example"), ORIGINAL)
    assert smtputf8
    parse(data)
    assert "\r\nTo: <jörg@bücher.example>\r\n".encode() in data  # RFC 6532: raw UTF-8
    assert not write(report(), ORIGINAL)[2]


# --- what the returned message needs --------------------------------------------------------

EIGHT_BIT_BODY = ORIGINAL.replace(b"noon?", b"noon? \xc3\xa0 midi")
UTF8_HEADER = ORIGINAL.replace(b"Lunch", b"D\xc3\xa9jeuner")
NUL = ORIGINAL.replace(b"noon?", b"noon?\x00")
LONG_LINE = ORIGINAL + b"y" * 1200 + b"\r\n"
BARE_LF = ORIGINAL + b"unix line\n"


@pytest.mark.parametrize(
    ("original", "content_type", "cte", "body"),
    [
        (ORIGINAL, "message/rfc822", "7bit", "7BIT"),
        (EIGHT_BIT_BODY, "message/rfc822", "8bit", "8BITMIME"),
        (UTF8_HEADER, "message/global", "8bit", "8BITMIME"),
        (NUL, "message/rfc822", "binary", "BINARYMIME"),
        (LONG_LINE, "message/rfc822", "binary", "BINARYMIME"),
        (BARE_LF, "message/rfc822", "binary", "BINARYMIME"),
    ],
)
def test_the_full_message_is_labelled_as_what_it_is(
    original: bytes, content_type: str, cte: str, body: str
) -> None:
    data, found_body, _ = write(report(return_content="full"), original)
    header, content = parse(data).raw_parts[2]
    assert f"Content-Type: {content_type}\r\n".encode() in header
    assert f"Content-Transfer-Encoding: {cte}\r\n".encode() in header
    assert content == original
    assert found_body == body
    top = data.partition(b"\r\n\r\n")[0]
    assert f"Content-Transfer-Encoding: {cte}\r\n".encode() in top + b"\r\n"


@pytest.mark.parametrize(
    ("original", "content_type", "body"),
    [
        (ORIGINAL, "text/rfc822-headers", "7BIT"),
        (EIGHT_BIT_BODY, "text/rfc822-headers", "7BIT"),  # the body is not returned
        (UTF8_HEADER, "message/global-headers", "8BITMIME"),
    ],
)
def test_the_header_section_is_labelled_as_what_it_is(
    original: bytes, content_type: str, body: str
) -> None:
    data, found_body, _ = write(report(return_content="headers"), original)
    assert parse(data).part(2).get_content_type() == content_type
    assert found_body == body


def test_nothing_returned_is_plain_7bit() -> None:
    data, body, smtputf8 = write(report(return_content="none"), EIGHT_BIT_BODY)
    assert (body, smtputf8) == ("7BIT", False)
    assert data.isascii()


def test_a_delay_report_of_a_utf8_message_is_still_a_report() -> None:
    r = report(
        recipient(Action.DELAYED, final_recipient="jörg@bücher.example"),
        return_content="headers",
    )
    data, body, _ = write(r, UTF8_HEADER)
    lines_are_sound(data)
    parsed = parse(data)
    assert [p.get_content_type() for p in parsed.message.iter_parts()] == [
        "text/plain",
        "message/global-delivery-status",
        "message/global-headers",
    ]
    assert body == "8BITMIME"
