"""BDAT (RFC 3030 CHUNKING): exact octet counts, binary data, and chunks that are
read in full even when refused, so their octets are never taken for commands."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from smtp_harness import HOST, AcceptAll

from hato.smtp import DataChunk, Limits, MailFrom, MessageEnd, State

Session = Callable[..., AcceptAll]

GREETED = b"EHLO client.example\r\n"
ENVELOPE = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\n"
QUEUED = "250 2.0.0 Ok: queued as Q1"
NEED_MAIL = "503 5.5.1 Error: need MAIL command"


def bdat(data: bytes, *, last: bool = False) -> bytes:
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def ready(session: Session, limits: Limits | None = None) -> AcceptAll:
    smtp = session(limits)
    assert smtp.feed(GREETED + ENVELOPE)[-1] == "250 2.1.5 Ok"
    return smtp


def test_chunks_then_last(session: Session) -> None:
    smtp = ready(session)
    out = smtp.feed(
        bdat(b"Subject: chunked\r\n\r\n") + bdat(b"first ") + bdat(b"second", last=True)
    )
    assert out == [
        "250 2.0.0 Ok: 20 octets received",
        "250 2.0.0 Ok: 26 octets received",
        QUEUED,
    ]
    assert smtp.messages == [b"Subject: chunked\r\n\r\nfirst second"]
    assert smtp.conn.state is State.GREETED
    assert smtp.conn.transaction is None


def test_single_last_chunk(session: Session) -> None:
    smtp = ready(session)
    assert smtp.feed(bdat(b"all of it\r\n", last=True)) == [QUEUED]
    assert smtp.messages == [b"all of it\r\n"]


def test_bdat_zero_last_ends_the_message(session: Session) -> None:
    smtp = ready(session)
    assert smtp.feed(bdat(b"body") + b"BDAT 0 LAST\r\n") == [
        "250 2.0.0 Ok: 4 octets received",
        QUEUED,
    ]
    assert smtp.messages == [b"body"]


def test_empty_message_with_bdat_zero_last(session: Session) -> None:
    smtp = ready(session)
    assert smtp.feed(b"bdat 0 last\r\n") == [QUEUED]
    assert smtp.messages == [b""]
    assert smtp.of_type(DataChunk) == []


def test_binary_octets_and_dots_are_data(session: Session) -> None:
    smtp = ready(session)
    payload = bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"")
    payload += b"\r\n.\r\nMAIL FROM:<evil@x.example>\r\n..\r\n.\r\n"
    assert smtp.feed(bdat(payload, last=True) + b"NOOP\r\n") == [QUEUED, "250 2.0.0 Ok"]
    assert smtp.messages == [payload]
    assert [e.reverse_path for e in smtp.of_type(MailFrom)] == ["alice@example.org"]


SMUGGLED = b"Subject: s\r\n\r\nhi\n.\nMAIL FROM:<evil@x.example>\nRCPT TO:<v@y.example>\n\r\n"
BARE = "550 5.5.2 Error: bare <CR> or <LF> in message data; lines must end with <CR><LF>"


@pytest.mark.parametrize("content", [SMUGGLED, b"a\rb\r\n", b"ends with CR\r", b"\n"])
def test_bare_line_ends_in_bdat_are_refused_as_in_data(session: Session, content: bytes) -> None:
    smtp = ready(session)
    assert smtp.feed(bdat(content, last=True) + b"NOOP\r\n") == [BARE, "250 2.0.0 Ok"]
    assert smtp.messages == []
    assert [e.reverse_path for e in smtp.of_type(MailFrom)] == ["alice@example.org"]


def test_bare_line_end_in_an_earlier_chunk_refuses_that_chunk(session: Session) -> None:
    smtp = ready(session)
    out = smtp.feed(bdat(b"a\nb\r\n") + bdat(b"more\r\n", last=True))
    assert out == [BARE, NEED_MAIL]
    assert smtp.messages == []
    assert smtp.conn.transaction is None


def test_crlf_split_between_chunks_is_one_line_end(session: Session) -> None:
    smtp = ready(session)
    out = smtp.feed(bdat(b"line one\r") + bdat(b"\nline two\r") + bdat(b"\n", last=True))
    assert out[-1] == QUEUED
    assert smtp.messages == [b"line one\r\nline two\r\n"]


@pytest.mark.parametrize(
    ("content", "stored"),
    [
        (SMUGGLED, SMUGGLED.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")),
        (b"a\rb\r\n", b"a\r\nb\r\n"),
        (b"ends with CR\r", b"ends with CR\r\n"),
    ],
)
def test_bare_line_ends_in_bdat_are_normalized_as_in_data(
    session: Session, content: bytes, stored: bytes
) -> None:
    smtp = ready(session, Limits(bare_newline="normalize"))
    assert smtp.feed(bdat(content, last=True)) == [QUEUED]
    assert smtp.messages == [stored]


def test_long_line_in_bdat_is_refused_as_in_data(session: Session) -> None:
    smtp = ready(session)
    assert smtp.feed(bdat(b"x" * 999 + b"\r\n", last=True)) == [
        "550 5.6.0 Error: message has a line over 998 octets"
    ]
    smtp = ready(session)
    assert smtp.feed(bdat(b"x" * 998 + b"\r\n", last=True)) == [QUEUED]


def test_binarymime_needs_bdat(session: Session) -> None:
    smtp = session()
    smtp.feed(GREETED)
    assert smtp.feed(
        b"MAIL FROM:<alice@example.org> BODY=BINARYMIME\r\nRCPT TO:<bob@example.com>\r\n"
        b"DATA\r\n" + bdat(b"\x00\x01\xff", last=True)
    ) == [
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "503 5.5.1 Error: BODY=BINARYMIME requires BDAT",
        QUEUED,
    ]
    assert smtp.messages == [b"\x00\x01\xff"]


def test_data_after_bdat_is_refused(session: Session) -> None:
    smtp = ready(session)
    assert smtp.feed(bdat(b"part") + b"DATA\r\n" + bdat(b"", last=True)) == [
        "250 2.0.0 Ok: 4 octets received",
        "503 5.5.1 Error: DATA after BDAT in one transaction",
        QUEUED,
    ]
    assert smtp.messages == [b"part"]


@pytest.mark.parametrize(
    ("before", "refusal"),
    [
        (b"", "503 5.5.1 Error: send HELO/EHLO first"),
        (GREETED, NEED_MAIL),
        (GREETED + b"MAIL FROM:<alice@example.org>\r\n", "554 5.5.1 Error: no valid recipients"),
    ],
)
def test_refused_chunk_is_read_in_full(session: Session, before: bytes, refusal: str) -> None:
    smtp = session()
    smtp.feed(before)
    state = smtp.conn.state
    hidden = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nQUIT\r\n"
    assert smtp.feed(bdat(hidden, last=True) + b"NOOP\r\n") == [refusal, "250 2.0.0 Ok"]
    assert all(e.reverse_path != "evil@x.example" for e in smtp.of_type(MailFrom))
    assert smtp.of_type(DataChunk) == []
    assert smtp.of_type(MessageEnd) == []
    assert smtp.conn.state is state
    assert not smtp.conn.closed


def test_pipelined_bdat_transaction(session: Session) -> None:
    smtp = session()
    burst = GREETED + ENVELOPE + bdat(b"abc") + bdat(b"def", last=True) + b"QUIT\r\n"
    assert smtp.feed(burst)[-5:] == [
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "250 2.0.0 Ok: 3 octets received",
        QUEUED,
        f"221 2.0.0 {HOST} closing connection",
    ]
    assert smtp.messages == [b"abcdef"]
    assert smtp.conn.closed


def test_pipelined_reply_comes_in_one_write() -> None:
    smtp = ready(AcceptAll)
    smtp.writes.clear()
    smtp.feed(bdat(b"abc") + bdat(b"def") + b"BDAT 0 LAST\r\nNOOP\r\n")
    assert smtp.writes == [
        b"250 2.0.0 Ok: 3 octets received\r\n250 2.0.0 Ok: 6 octets received\r\n"
        + QUEUED.encode()
        + b"\r\n250 2.0.0 Ok\r\n"
    ]


def test_oversized_last_chunk(session: Session) -> None:
    smtp = ready(session, Limits(max_message_size=10))
    assert smtp.feed(bdat(b"0123456789") + bdat(b"x", last=True) + b"NOOP\r\n") == [
        "250 2.0.0 Ok: 10 octets received",
        "552 5.3.4 Error: message exceeds fixed maximum size",
        "250 2.0.0 Ok",
    ]
    assert smtp.messages == []
    assert sum(len(e.data) for e in smtp.of_type(DataChunk)) <= 10
    assert smtp.conn.state is State.GREETED


def test_oversized_chunk_ends_the_transaction(session: Session) -> None:
    smtp = ready(session, Limits(max_message_size=10))
    hidden = b"RSET\r\nMAIL FROM:<evil@x.example>\r\n"
    assert smtp.feed(bdat(hidden) + bdat(b"more", last=True)) == [
        "552 5.3.4 Error: message exceeds fixed maximum size",
        NEED_MAIL,
    ]
    assert smtp.conn.transaction is None
    assert smtp.conn.state is State.GREETED
    assert smtp.of_type(MessageEnd) == []
    assert len(smtp.of_type(MailFrom)) == 1


@pytest.mark.parametrize(
    "command",
    [b"BDAT", b"BDAT x", b"BDAT -1", b"BDAT 1 FIRST", b"BDAT 1 LAST extra", "BDAT ²".encode()],
)
def test_bdat_syntax(session: Session, command: bytes) -> None:
    smtp = ready(session)
    assert smtp.feed(command + b"\r\nNOOP\r\n") == [
        "501 5.5.4 Syntax: BDAT size [LAST]",
        "250 2.0.0 Ok",
    ]
    assert smtp.conn.state is State.RCPT


def test_chunk_waits_for_all_its_octets() -> None:
    smtp = ready(AcceptAll)
    assert smtp.feed(b"BDAT 10 LAST\r\n01234") == []
    assert smtp.conn.in_message
    assert smtp.conn.state is State.BDAT
    assert smtp.feed(b"56789QUIT\r\n") == [QUEUED, f"221 2.0.0 {HOST} closing connection"]
    assert smtp.messages == [b"0123456789"]
