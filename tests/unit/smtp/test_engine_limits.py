"""Named limits: command line length, recipients per message, errors per session."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from smtp_harness import HOST, AcceptAll

from hato.smtp import CLOSED, CommandRejected, Limits, MailFrom, RcptTo, State, reply

Session = Callable[..., AcceptAll]

GREETED = b"EHLO client.example\r\n"
TOO_LONG = "500 5.5.6 Error: line too long (limit 512 octets)"


@pytest.mark.parametrize(("length", "ok"), [(510, True), (511, False), (2000, False)])
def test_command_line_limit_counts_the_crlf(session: Session, length: int, ok: bool) -> None:
    smtp = session()
    line = b"NOOP " + b"x" * (length - 5)
    assert len(line) == length
    assert smtp.feed(line + b"\r\n") == ["250 2.0.0 Ok" if ok else TOO_LONG]


def test_tail_of_a_long_line_is_never_a_command(session: Session) -> None:
    smtp = session()
    smtp.feed(GREETED)
    long_line = b"X-Padding: " + b"A" * 600 + b"QUIT\r\n"
    assert smtp.feed(long_line + b"NOOP\r\n") == [TOO_LONG, "250 2.0.0 Ok"]
    assert not smtp.conn.closed
    assert [e.command for e in smtp.of_type(CommandRejected)] == [""]


def test_long_line_spread_over_reads_is_refused_once() -> None:
    smtp = AcceptAll()
    smtp.feed(GREETED)
    out: list[str] = []
    for _ in range(10):
        out += smtp.feed(b"B" * 400)
    out += smtp.feed(b"MAIL FROM:<evil@x.example>\r\nNOOP\r\n")
    assert out == [TOO_LONG, "250 2.0.0 Ok"]
    assert smtp.of_type(MailFrom) == []


def test_smaller_command_line_limit(session: Session) -> None:
    smtp = session(Limits(max_command_line=64))
    assert smtp.feed(b"HELO " + b"h" * 57 + b"\r\n") == [f"250 {HOST}"]
    assert smtp.feed(b"HELO " + b"h" * 58 + b"\r\n") == [
        "500 5.5.6 Error: line too long (limit 64 octets)"
    ]


def test_hundred_and_first_recipient(session: Session) -> None:
    smtp = session()
    smtp.feed(GREETED + b"MAIL FROM:<alice@example.org>\r\n")
    rcpts = b"".join(b"RCPT TO:<user%d@example.com>\r\n" % i for i in range(101))
    out = smtp.feed(rcpts)
    assert out == ["250 2.1.5 Ok"] * 100 + ["452 4.5.3 Error: too many recipients"]
    assert len(smtp.of_type(RcptTo)) == 100
    assert smtp.conn.transaction is not None
    assert len(smtp.conn.transaction.recipients) == 100
    # The accepted hundred still make a message.
    assert smtp.feed(b"DATA\r\nhi\r\n.\r\n") == [
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Ok: queued as Q1",
    ]


def test_refused_recipients_do_not_count(session: Session) -> None:
    smtp = session(Limits(max_recipients=2))
    smtp.feed(GREETED + b"MAIL FROM:<alice@example.org>\r\n")
    out = smtp.feed(
        b"RCPT TO:<>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<bad>\r\n"
        b"RCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n"
    )
    assert [line[:3] for line in out] == ["501", "250", "501", "250", "452"]


def test_too_many_errors_closes_the_session(session: Session) -> None:
    smtp = session(Limits(max_errors=3))
    assert smtp.feed(b"FOO\r\nMAIL FROM:<a@b.example>\r\nBAR\r\nNOOP\r\nBAZ\r\n") == [
        '500 5.5.2 Command unrecognized: "FOO" (type HELP for the list)',
        "503 5.5.1 Error: send HELO/EHLO first",
        '500 5.5.2 Command unrecognized: "BAR" (type HELP for the list)',
        f"421 4.7.0 {HOST} Error: too many errors",
    ]
    assert smtp.conn.state is State.CLOSED
    assert smtp.last is CLOSED
    assert smtp.feed(b"NOOP\r\n") == []
    assert smtp.conn.errors == 3


def test_caller_refusals_count_as_errors(session: Session) -> None:
    smtp = session(Limits(max_errors=2), answers={RcptTo: lambda _e: reply(550, "5.1.1", "No")})
    smtp.feed(GREETED + b"MAIL FROM:<alice@example.org>\r\n")
    assert smtp.feed(b"RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nNOOP\r\n") == [
        "550 5.1.1 No",
        "550 5.1.1 No",
        f"421 4.7.0 {HOST} Error: too many errors",
    ]
    assert smtp.conn.transaction is None


def test_errors_below_the_limit_keep_the_session(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"FOO\r\n" * 19 + b"NOOP\r\n")[-1] == "250 2.0.0 Ok"
    assert smtp.feed(b"FOO\r\n")[-1] == f"421 4.7.0 {HOST} Error: too many errors"


def test_too_long_mail_line_names_the_same_limit_however_it_arrives(session: Session) -> None:
    # MAIL and RCPT get 1000 more octets (RFC 1869 4.1.2), also when the line is so long
    # that its start was dropped before its end arrived.
    smtp = session()
    smtp.feed(GREETED)
    out = smtp.feed(b"MAIL FROM:<" + b"a" * 5000 + b"@x.example>\r\nNOOP\r\n")
    assert out == ["500 5.5.6 Error: line too long (limit 1512 octets)", "250 2.0.0 Ok"]


# -- too many recipients is no error, up to an overshoot ----------------------------------

TOO_MANY = "452 4.5.3 Error: too many recipients"


def rcpts(count: int, start: int = 0) -> bytes:
    return b"".join(b"RCPT TO:<user%d@example.com>\r\n" % i for i in range(start, start + count))


def test_recipients_past_the_limit_do_not_end_the_session(session: Session) -> None:
    # 125 pipelined RCPTs: the hundred accepted ones must still make a message.
    smtp = session()
    smtp.feed(GREETED + b"MAIL FROM:<alice@example.org>\r\n")
    out = smtp.feed(rcpts(125) + b"DATA\r\nhi\r\n.\r\n")
    assert out == ["250 2.1.5 Ok"] * 100 + [TOO_MANY] * 25 + [
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Ok: queued as Q1",
    ]
    assert smtp.conn.errors == 0
    assert len(smtp.messages) == 1


def test_recipient_overshoot_is_bounded(session: Session) -> None:
    # Past the overshoot each 452 counts, so a client cannot loop on RCPT for ever.
    smtp = session(Limits(max_recipients=2, recipient_overshoot=5, max_errors=3))
    smtp.feed(GREETED + b"MAIL FROM:<alice@example.org>\r\n")
    out = smtp.feed(rcpts(2 + 5 + 3))
    assert out == ["250 2.1.5 Ok"] * 2 + [TOO_MANY] * 8 + [
        f"421 4.7.0 {HOST} Error: too many errors"
    ]
    assert smtp.conn.closed


def test_an_accepted_message_forgives_the_overshoot(session: Session) -> None:
    smtp = session(Limits(max_recipients=1, recipient_overshoot=2, max_errors=2))
    smtp.feed(GREETED)
    for _ in range(3):
        out = smtp.feed(b"MAIL FROM:<a@example.org>\r\n" + rcpts(3) + b"DATA\r\nhi\r\n.\r\n")
        assert out[-1].startswith("250 2.0.0 Ok: queued as")
    assert smtp.conn.errors == 0
    # Without a message in between, the same client meets the limit.
    out = smtp.feed(b"MAIL FROM:<a@example.org>\r\n" + rcpts(3))
    out += smtp.feed(b"RSET\r\nMAIL FROM:<a@example.org>\r\n" + rcpts(3))
    assert out[-1] == f"421 4.7.0 {HOST} Error: too many errors"


# -- junk commands (Postfix's smtpd_junk_command_limit) ------------------------------------


@pytest.mark.parametrize("junk", [b"NOOP", b"RSET", b"VRFY root"])
def test_junk_commands_past_the_limit_count_as_errors(session: Session, junk: bytes) -> None:
    smtp = session(Limits(junk_command_limit=5, max_errors=3))
    smtp.feed(GREETED)
    out = smtp.feed((junk + b"\r\n") * 20)
    # Five are free; the next three are answered and counted, the third ends the session.
    assert len(out) == 5 + 3 + 1
    assert all(line.startswith("25") for line in out[:-1])
    assert out[-1] == f"421 4.7.0 {HOST} Error: too many errors"
    assert smtp.conn.closed


def test_default_junk_limit_ends_a_noop_flood() -> None:
    smtp = AcceptAll()
    out = smtp.feed(GREETED + b"NOOP\r\n" * 500_000)
    assert out[-1] == f"421 4.7.0 {HOST} Error: too many errors"
    assert out.count("250 2.0.0 Ok") == 100 + 20  # the twentieth error is still answered
    assert smtp.conn.closed


def test_an_accepted_message_forgives_junk(session: Session) -> None:
    smtp = session(Limits(junk_command_limit=2, max_errors=1))
    smtp.feed(GREETED)
    message = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\n"
    for _ in range(3):
        assert smtp.feed(b"NOOP\r\nNOOP\r\n" + message)[-1].startswith("250 2.0.0 Ok: queued")
    assert smtp.feed(b"NOOP\r\nNOOP\r\nNOOP\r\n")[-1] == f"421 4.7.0 {HOST} Error: too many errors"


# -- a long line costs the same per read, however long it has grown -----------------------


def test_work_per_read_does_not_grow_with_the_line() -> None:
    smtp = AcceptAll()
    smtp.feed(GREETED + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    piece = b"x" * 65536
    for _ in range(64):  # one line of 4 MiB so far
        smtp.conn.receive_data(piece)
        smtp.pump()
    tracemalloc.start()
    try:
        smtp.conn.receive_data(piece)
        smtp.pump()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A few copies of the piece at most; never anything the size of the line so far.
    assert peak < 8 * len(piece)
    assert smtp.feed(b"\r\n.\r\n") == ["550 5.6.0 Error: message has a line over 998 octets"]
