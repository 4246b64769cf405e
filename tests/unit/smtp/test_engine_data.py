"""DATA: dot handling, line ends, line length and size, always read to the real
<CRLF>.<CRLF> so that nothing inside a message is ever taken for a command."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from smtp_harness import HOST, AcceptAll, split_at

from hato.smtp import DataChunk, DataCommand, Limits, MailFrom, MessageEnd, RcptTo, State, reply

Session = Callable[..., AcceptAll]

OPEN = b"EHLO client.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\n"
BARE = "550 5.5.2 Error: bare <CR> or <LF> in message data; lines must end with <CR><LF>"
TOO_BIG = "552 5.3.4 Error: message exceeds fixed maximum size"
QUEUED = "250 2.0.0 Ok: queued as Q1"
BYE = f"221 2.0.0 {HOST} closing connection"


def in_data(session: Session, limits: Limits | None = None) -> AcceptAll:
    smtp = session(limits)
    assert smtp.feed(OPEN + b"DATA\r\n")[-1] == "354 End data with <CR><LF>.<CR><LF>"
    assert smtp.conn.state is State.DATA
    return smtp


@pytest.mark.parametrize(
    ("wire", "stored"),
    [
        (b"..x\r\n", b".x\r\n"),
        (b"...\r\n", b"..\r\n"),
        (b"a\r\n..\r\nb\r\n", b"a\r\n.\r\nb\r\n"),
        (b"a.b\r\n .c\r\n", b"a.b\r\n .c\r\n"),
        (b"..\r\n", b".\r\n"),
        (b"\r\n\r\n", b"\r\n\r\n"),
        (b"8bit \xc3\xa9 and \x00 NUL\r\n", b"8bit \xc3\xa9 and \x00 NUL\r\n"),
    ],
)
def test_dot_unstuffing(session: Session, wire: bytes, stored: bytes) -> None:
    smtp = in_data(session)
    assert smtp.feed(wire + b".\r\n") == [QUEUED]
    assert smtp.messages == [stored]
    assert smtp.conn.state is State.GREETED
    assert smtp.conn.transaction is None


def test_lone_dot_at_the_start_ends_an_empty_message(session: Session) -> None:
    smtp = in_data(session)
    assert smtp.feed(b".\r\nNOOP\r\n") == [QUEUED, "250 2.0.0 Ok"]
    assert smtp.messages == [b""]
    assert smtp.of_type(DataChunk) == []
    assert smtp.of_type(MessageEnd) == [MessageEnd(problem=None)]


def test_commands_pipelined_after_the_message(session: Session) -> None:
    smtp = in_data(session)
    assert smtp.feed(
        b"Subject: one\r\n\r\nbody\r\n.\r\nMAIL FROM:<carol@example.org>\r\n"
        b"RCPT TO:<dave@example.com>\r\nDATA\r\n.\r\n"
    ) == [
        QUEUED,
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Ok: queued as Q2",
    ]
    assert smtp.messages == [b"Subject: one\r\n\r\nbody\r\n", b""]


def test_data_chunks_arrive_before_the_end() -> None:
    smtp = in_data(AcceptAll)
    smtp.feed(b"line one\r\nline tw")
    assert b"".join(e.data for e in smtp.of_type(DataChunk)) == b"line one\r\n"
    assert smtp.of_type(MessageEnd) == []
    smtp.feed(b"o\r\n.\r\n")
    assert smtp.messages == [b"line one\r\nline two\r\n"]


# -- SMTP smuggling: only <CRLF>.<CRLF> ends the data --------------------------------------

SMUGGLED = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nforged\r\n"
FAKE_ENDS = {
    "lf-dot-lf": (b"\n.\n", b"hello\r\n.\r\n"),
    "cr-dot-cr": (b"\r.\r", b"hello\r\n.\r\n"),
    "crlf-dot-lf": (b"\r\n.\n", b"hello\r\n\r\n"),  # the dot leads a CRLF line: unstuffed
    "lf-dot-crlf": (b"\n.\r\n", b"hello\r\n.\r\n"),
    "cr-dot-crlf": (b"\r.\r\n", b"hello\r\n.\r\n"),
}


@pytest.mark.parametrize("fake", [v[0] for v in FAKE_ENDS.values()], ids=list(FAKE_ENDS))
def test_fake_end_of_data_is_never_the_end(session: Session, fake: bytes) -> None:
    smtp = in_data(session)
    smuggle = b"Subject: hi\r\n\r\nhello" + fake + SMUGGLED
    assert smtp.feed(smuggle + b".\r\nQUIT\r\n") == [BARE, BYE]
    assert [e.reverse_path for e in smtp.of_type(MailFrom)] == ["alice@example.org"]
    assert [e.forward_path for e in smtp.of_type(RcptTo)] == ["bob@example.com"]
    assert [str(e.problem) for e in smtp.of_type(MessageEnd)] == [BARE]
    assert smtp.messages == []
    # What did go out before the problem was seen holds only proper CRLF lines.
    sent = b"".join(e.data for e in smtp.of_type(DataChunk))
    assert sent.count(b"\n") == sent.count(b"\r\n") == sent.count(b"\r")


@pytest.mark.parametrize(("fake", "stored"), list(FAKE_ENDS.values()), ids=list(FAKE_ENDS))
def test_fake_end_of_data_normalized(session: Session, fake: bytes, stored: bytes) -> None:
    smtp = in_data(session, Limits(bare_newline="normalize"))
    smuggle = b"Subject: hi\r\n\r\nhello" + fake + SMUGGLED
    assert smtp.feed(smuggle + b".\r\nQUIT\r\n") == [QUEUED, BYE]
    assert len(smtp.of_type(MailFrom)) == 1
    assert smtp.messages == [b"Subject: hi\r\n\r\n" + stored + SMUGGLED]


def test_bare_line_ends_normalized_to_crlf(session: Session) -> None:
    smtp = in_data(session, Limits(bare_newline="normalize"))
    assert smtp.feed(b"a\rb\nc\r\r\nd\r\n.\r\n") == [QUEUED]
    assert smtp.messages == [b"a\r\nb\r\nc\r\n\r\nd\r\n"]


def test_message_after_a_refused_one_is_accepted(session: Session) -> None:
    smtp = in_data(session)
    assert smtp.feed(b"bad\nline\r\n.\r\n") == [BARE]
    assert smtp.conn.state is State.GREETED
    assert smtp.conn.transaction is None
    assert smtp.feed(OPEN[21:] + b"DATA\r\ngood\r\n.\r\n") == [
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Ok: queued as Q2",
    ]
    assert smtp.messages == [b"good\r\n"]


# -- line length ---------------------------------------------------------------------------

LONG_LINE = "550 5.6.0 Error: message has a line over 998 octets"


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"a" * 998, QUEUED),
        (b"a" * 999, LONG_LINE),
        (b".." + b"a" * 997, QUEUED),  # 999 on the wire, 998 once the stuffing dot goes
        (b"x\r\n" + b"a" * 999 + b"\r\ny", LONG_LINE),
        (b"a" * 5000, LONG_LINE),
    ],
)
def test_text_line_length(session: Session, wire: bytes, expected: str) -> None:
    smtp = in_data(session)
    assert smtp.feed(wire + b"\r\n.\r\nNOOP\r\n") == [expected, "250 2.0.0 Ok"]
    assert len(smtp.messages) == (1 if expected == QUEUED else 0)


@pytest.mark.parametrize("length", [998, 999, 1000, 1001, 3000])
@pytest.mark.parametrize("read", [1, 10, 100, 300, 997, 1001])
def test_long_line_split_across_many_reads(length: int, read: int) -> None:
    smtp = in_data(AcceptAll)
    wire = b"head\r\n" + b"b" * length + b"\r\ntail\r\n.\r\nNOOP\r\n"
    out: list[str] = []
    for start in range(0, len(wire), read):
        out += smtp.feed(wire[start : start + read])
    assert out == [QUEUED if length <= 998 else LONG_LINE, "250 2.0.0 Ok"]
    if length <= 998:
        assert smtp.messages == [b"head\r\n" + b"b" * length + b"\r\ntail\r\n"]


def test_long_line_whose_cr_ends_a_read() -> None:
    smtp = in_data(AcceptAll)
    assert smtp.feed(b"c" * 1500 + b"\r") == []
    assert smtp.feed(b"\n.\r\nNOOP\r\n") == [LONG_LINE, "250 2.0.0 Ok"]
    assert smtp.conn.state is State.GREETED


def test_smaller_text_line_limit(session: Session) -> None:
    smtp = in_data(session, Limits(max_text_line=80))
    assert smtp.feed(b"a" * 78 + b"\r\n.\r\n") == [QUEUED]
    smtp.feed(OPEN[21:] + b"DATA\r\n")
    assert smtp.feed(b"a" * 79 + b"\r\n.\r\n") == [
        "550 5.6.0 Error: message has a line over 78 octets"
    ]


# -- message size --------------------------------------------------------------------------


def test_message_at_the_size_limit(session: Session) -> None:
    smtp = in_data(session, Limits(max_message_size=1000))
    body = (b"a" * 98 + b"\r\n") * 10
    assert smtp.feed(body + b".\r\n") == [QUEUED]
    assert smtp.messages == [body]


def test_oversized_message_is_read_to_its_end_then_refused(session: Session) -> None:
    smtp = in_data(session, Limits(max_message_size=1000))
    body = (b"a" * 98 + b"\r\n") * 10 + b"MAIL FROM:<evil@x.example>\r\n" + b"z\r\n" * 200
    assert smtp.feed(body + b".\r\nMAIL FROM:<carol@example.org>\r\n") == [
        TOO_BIG,
        "250 2.1.0 Ok",
    ]
    assert [e.reverse_path for e in smtp.of_type(MailFrom)] == [
        "alice@example.org",
        "carol@example.org",
    ]
    assert smtp.messages == []
    # The caller never gets more octets than it could accept.
    assert sum(len(e.data) for e in smtp.of_type(DataChunk)) <= 1000
    assert smtp.conn.state is State.MAIL


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Several problems in one message: the answer must not depend on how reads fell.
        # Size outranks bare line ends, which outrank long lines.
        (b"a" * 1200 + b"\r\nb\nc\r\n", BARE),
        (b"b\nc\r\n" + b"a" * 1200 + b"\r\n", BARE),
        (b"x\r\n" * 5000 + b"b\nc\r\n", TOO_BIG),
        (b"b\nc\r\n" + b"x\r\n" * 5000, TOO_BIG),
        (b"a" * 1200 + b"\r\n" + b"x\r\n" * 5000, TOO_BIG),
    ],
)
def test_refusal_does_not_depend_on_reads(session: Session, body: bytes, expected: str) -> None:
    smtp = in_data(session, Limits(max_message_size=10_000))
    assert smtp.feed(body + b".\r\n") == [expected]


def test_refusal_does_not_depend_on_split_points() -> None:
    body = b"a" * 1200 + b"\r\n" + b"x\r\n" * 50 + b"b\rc\r\n" + b"y\r\n" * 400 + b".\r\n"
    answers = set()
    for points in ([], [1300], [5, 1210], list(range(0, len(body), 64))):
        smtp = in_data(AcceptAll, Limits(max_message_size=100_000))
        out: list[str] = []
        for piece in split_at(body, points):
            out += smtp.feed(piece)
        answers.add(tuple(out))
    assert answers == {(BARE,)}


def test_caller_may_refuse_the_message(session: Session) -> None:
    refuse = {MessageEnd: lambda _e: reply(451, "4.3.0", "Error: queue file write error")}
    smtp = session(answers=refuse)
    assert (
        smtp.feed(OPEN + b"DATA\r\nbody\r\n.\r\n")[-1] == "451 4.3.0 Error: queue file write error"
    )
    assert smtp.conn.state is State.GREETED
    assert smtp.conn.transaction is None


def test_data_refused_by_the_caller_keeps_the_envelope(session: Session) -> None:
    smtp = session(answers={DataCommand: lambda _e: reply(554, "5.7.1", "Error: no thanks")})
    assert smtp.feed(OPEN + b"DATA\r\nNOOP\r\n")[-2:] == [
        "554 5.7.1 Error: no thanks",
        "250 2.0.0 Ok",
    ]
    assert smtp.conn.state is State.RCPT
    assert smtp.conn.transaction is not None
