"""Whole conversations with the engine: the telnet walkthrough, the small commands,
sequence errors, PIPELINING and the editing a person at a terminal does."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from smtp_harness import HOST, AcceptAll, dialog

from hato.smtp import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    CommandRejected,
    Hello,
    LocalProtocolError,
    MailFrom,
    RcptTo,
    Reset,
    State,
    reply,
)

Session = Callable[..., AcceptAll]

EHLO_LINES = [
    f"S: 250-{HOST}",
    "S: 250-PIPELINING",
    "S: 250-SIZE 67108864",
    "S: 250-8BITMIME",
    "S: 250-SMTPUTF8",
    "S: 250-ENHANCEDSTATUSCODES",
    "S: 250-DSN",
    "S: 250-CHUNKING",
    "S: 250 HELP",
]

WALKTHROUGH = "\n".join(
    [
        f"S: 220 {HOST} ESMTP Hato",
        "C: EHLO client.example",
        *EHLO_LINES,
        "C: MAIL FROM:<alice@example.org>",
        "S: 250 2.1.0 Ok",
        "C: RCPT TO:<bob@example.com>",
        "S: 250 2.1.5 Ok",
        "C: DATA",
        "S: 354 End data with <CR><LF>.<CR><LF>",
        "C: Subject: hello",
        "C: ",
        "C: Hi Bob, this came through telnet.",
        "C: .",
        "S: 250 2.0.0 Ok: queued as Q1",
        "C: QUIT",
        f"S: 221 2.0.0 {HOST} closing connection",
    ]
)

HELO_WALKTHROUGH = f"""
S: 220 {HOST} ESMTP Hato
C: HELO client.example
S: 250 {HOST}
C: MAIL FROM:<alice@example.org>
S: 250 2.1.0 Ok
C: RCPT TO:<bob@example.com>
S: 250 2.1.5 Ok
C: DATA
S: 354 End data with <CR><LF>.<CR><LF>
C: Subject: plain SMTP
C:
C: Body.
C: .
S: 250 2.0.0 Ok: queued as Q1
C: QUIT
S: 221 2.0.0 {HOST} closing connection
"""

GREETED = b"EHLO client.example\r\n"
ENVELOPE = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\n"


def greeted(session: Session, **kwargs: object) -> AcceptAll:
    smtp = session(**kwargs)
    assert smtp.feed(GREETED)[-1] == "250 HELP"
    return smtp


@pytest.mark.parametrize(
    ("transcript", "extended"),
    [(WALKTHROUGH, True), (HELO_WALKTHROUGH, False)],
    ids=["ehlo", "helo"],
)
def test_walkthrough_step_by_step(session: Session, transcript: str, extended: bool) -> None:
    smtp = session(greet=True)
    for client, expected in dialog(transcript):
        assert smtp.feed(client) == expected
    assert smtp.conn.state is State.CLOSED
    assert smtp.last is CLOSED
    assert smtp.of_type(Hello) == [Hello(name="client.example", extended=extended)]
    body = b"Hi Bob, this came through telnet.\r\n" if extended else b"Body.\r\n"
    subject = b"Subject: hello\r\n" if extended else b"Subject: plain SMTP\r\n"
    assert smtp.messages == [subject + b"\r\n" + body]


@pytest.mark.parametrize("transcript", [WALKTHROUGH, HELO_WALKTHROUGH], ids=["ehlo", "helo"])
def test_walkthrough_in_one_piece(session: Session, transcript: str) -> None:
    steps = dialog(transcript)
    smtp = session(greet=True)
    everything = b"".join(client for client, _ in steps)
    assert smtp.feed(everything) == [line for _, lines in steps for line in lines]
    assert len(smtp.messages) == 1


def test_helo_does_not_advertise_and_ehlo_after_helo_resets(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"HELO a.example\r\nMAIL FROM:<a@b.example>\r\nEHLO c.example\r\n") == [
        f"250 {HOST}",
        "250 2.1.0 Ok",
        *[line[3:] for line in EHLO_LINES],
    ]
    assert smtp.conn.transaction is None
    assert smtp.conn.helo == "c.example"
    assert smtp.conn.extended is True
    assert smtp.feed(b"RCPT TO:<x@y.example>\r\n") == ["503 5.5.1 Error: need MAIL command"]


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
@pytest.mark.parametrize("argument", [b"", b" ", b" two words"])
def test_hello_needs_one_hostname(session: Session, verb: bytes, argument: bytes) -> None:
    smtp = session()
    name = verb.decode()
    assert smtp.feed(verb + argument + b"\r\n") == [f"501 5.5.4 Syntax: {name} hostname"]
    assert smtp.conn.state is State.CONNECTED


def test_unknown_command(session: Session) -> None:
    smtp = greeted(session)
    assert smtp.feed(b"FOO bar\r\n") == [
        '500 5.5.2 Command unrecognized: "FOO" (type HELP for the list)'
    ]
    assert smtp.of_type(CommandRejected)[-1].command == "FOO"
    assert smtp.conn.errors == 1


def test_unknown_command_shows_only_printable_text(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"F\x01O\x1bO\r\n") == [
        '500 5.5.2 Command unrecognized: "F?O?O" (type HELP for the list)'
    ]


def test_empty_line(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"\r\n   \r\n") == ["500 5.5.2 Error: empty command"] * 2


def test_command_that_is_not_utf8(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"EHLO \xc3\x28\r\n") == [
        "501 5.5.2 Error: EHLO line has octets that are not UTF-8"
    ]
    assert smtp.feed(b"\xc3\x28\r\n") == [
        "500 5.5.2 Error: command line has octets that are not UTF-8"
    ]
    assert smtp.of_type(Hello) == []


def test_help_lists_every_command(session: Session) -> None:
    smtp = session()
    lines = smtp.feed(b"HELP\r\n")
    assert lines[0] == "214-2.0.0 Commands:"
    assert lines[-1] == "214 2.0.0 End of HELP info"
    assert all(line.startswith("214-2.0.0 ") for line in lines[:-1])
    verbs = {line.split()[1] for line in lines[1:-1]}
    assert verbs >= {"EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "QUIT", "STARTTLS"}


@pytest.mark.parametrize("topic", [b"MAIL", b"mail", b"  Mail  "])
def test_help_on_one_command(session: Session, topic: bytes) -> None:
    smtp = session()
    (line,) = smtp.feed(b"HELP " + topic + b"\r\n")
    assert line.startswith("214 2.0.0 MAIL FROM:<sender@domain> [SIZE=n]")


def test_help_unknown_topic(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"HELP FROBNICATE\r\n") == ['504 5.5.1 HELP topic unknown: "FROBNICATE"']
    assert smtp.conn.errors == 1


def test_vrfy_never_confirms(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"VRFY root\r\nVRFY\r\n") == [
        "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
        "501 5.5.4 Syntax: VRFY address",
    ]


def test_expn_is_disabled(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"EXPN staff\r\n") == [
        "502 5.5.1 Error: EXPN is disabled; lists are not disclosed"
    ]


def test_noop_in_any_command_state(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"NOOP\r\nNOOP with words\r\n" + GREETED + b"NOOP\r\n")[-1] == "250 2.0.0 Ok"
    assert smtp.feed(b"NOOP\r\n") == ["250 2.0.0 Ok"]
    assert smtp.conn.errors == 0


def test_rset_forgets_the_transaction(session: Session) -> None:
    smtp = greeted(session)
    assert smtp.feed(ENVELOPE + b"RSET\r\nRCPT TO:<carol@example.com>\r\n") == [
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "250 2.0.0 Ok",
        "503 5.5.1 Error: need MAIL command",
    ]
    assert smtp.of_type(Reset) == [Reset()]
    assert smtp.conn.transaction is None
    assert smtp.conn.state is State.GREETED
    # The greeting survives RSET: a new transaction needs no new EHLO.
    assert smtp.feed(b"MAIL FROM:<a@b.example>\r\n") == ["250 2.1.0 Ok"]


def test_rset_before_hello_keeps_connected(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"RSET\r\nRSET now\r\n") == [
        "250 2.0.0 Ok",
        "501 5.5.4 Syntax: RSET (no parameters)",
    ]
    assert smtp.conn.state is State.CONNECTED


@pytest.mark.parametrize(
    ("before", "command", "expected"),
    [
        (b"", b"MAIL FROM:<a@b.example>", "503 5.5.1 Error: send HELO/EHLO first"),
        (b"", b"RCPT TO:<a@b.example>", "503 5.5.1 Error: send HELO/EHLO first"),
        (b"", b"DATA", "503 5.5.1 Error: send HELO/EHLO first"),
        (GREETED, b"RCPT TO:<a@b.example>", "503 5.5.1 Error: need MAIL command"),
        (GREETED, b"DATA", "503 5.5.1 Error: need MAIL command"),
        (GREETED + b"MAIL FROM:<>\r\n", b"DATA", "554 5.5.1 Error: no valid recipients"),
        (GREETED + ENVELOPE, b"MAIL FROM:<x@y.example>", "503 5.5.1 Error: nested MAIL command"),
        (GREETED + b"MAIL FROM:<>\r\n", b"MAIL FROM:<>", "503 5.5.1 Error: nested MAIL command"),
        (GREETED + ENVELOPE, b"DATA now", "501 5.5.4 Syntax: DATA (no parameters)"),
        (GREETED, b"MAIL TO:<a@b.example>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        (
            GREETED + b"MAIL FROM:<>\r\n",
            b"RCPT FROM:<a@b.c>",
            "501 5.5.4 Syntax: RCPT TO:<address>",
        ),
    ],
)
def test_sequence_and_syntax_errors(
    session: Session, before: bytes, command: bytes, expected: str
) -> None:
    smtp = session()
    smtp.feed(before)
    state = smtp.conn.state
    assert smtp.feed(command + b"\r\n") == [expected]
    assert smtp.conn.state is state


def test_data_after_only_refused_recipients(session: Session) -> None:
    refuse = {RcptTo: lambda _event: reply(550, "5.1.1", "No such user")}
    smtp = session(answers=refuse)
    out = smtp.feed(GREETED + ENVELOPE + b"DATA\r\n")
    assert out[-3:] == [
        "250 2.1.0 Ok",
        "550 5.1.1 No such user",
        "554 5.5.1 Error: no valid recipients",
    ]
    assert smtp.conn.state is State.MAIL
    assert smtp.conn.transaction is not None
    assert smtp.conn.transaction.recipients == []


def test_bare_cr_does_not_split_a_command_line(session: Session) -> None:
    smtp = greeted(session)
    assert smtp.feed(b"MAIL FROM:<a@b.example>\rRCPT TO:<c@d.example>\r\nNOOP\rQUIT\r\n") == [
        "555 5.5.4 Unsupported option: RCPT",
        '500 5.5.2 Command unrecognized: "NOOP?QUIT" (type HELP for the list)',
    ]
    assert smtp.of_type(MailFrom) == []
    assert not smtp.conn.closed


def test_pipelined_commands_are_answered_in_order_in_one_write() -> None:
    smtp = AcceptAll()
    burst = (
        GREETED
        + b"MAIL FROM:<alice@example.org>\r\n"
        + b"RCPT TO:<bob@example.com>\r\n"
        + b"RCPT TO:<bad address>\r\n"
        + b"RCPT TO:<carol@example.com>\r\n"
        + b"DATA\r\n"
    )
    codes = [line[:4] for line in smtp.feed(burst)]
    assert codes[-5:] == ["250 ", "250 ", "501 ", "250 ", "354 "]
    assert len(smtp.writes) == 1
    assert [e.forward_path for e in smtp.of_type(RcptTo)] == [
        "bob@example.com",
        "carol@example.com",
    ]
    assert smtp.conn.state is State.DATA


def test_engine_parses_nothing_while_a_reply_is_owed() -> None:
    smtp = AcceptAll()
    conn = smtp.conn
    conn.receive_data(GREETED + b"MAIL FROM:<a@b.example>\r\nNOOP\r\n")
    assert conn.next_event() == Hello(name="client.example", extended=True)
    assert conn.next_event() is PAUSED
    assert conn.data_to_send() == b""
    conn.send_reply(reply(250, None, HOST))
    event = conn.next_event()
    assert isinstance(event, MailFrom)
    assert conn.awaiting_reply is event
    assert conn.data_to_send() == b"250 " + HOST.encode() + b"\r\n"
    conn.send_reply(reply(250, "2.1.0", "Ok"))
    assert conn.next_event() is NEED_DATA  # NOOP is answered by the engine itself
    assert conn.data_to_send() == b"250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n"


def test_send_reply_without_an_event_is_our_bug() -> None:
    conn = AcceptAll().conn
    with pytest.raises(LocalProtocolError):
        conn.send_reply(reply(250, "2.0.0", "Ok"))


def test_refused_hello_keeps_the_state(session: Session) -> None:
    smtp = session(answers={Hello: lambda _event: reply(550, "5.7.1", "Go away")})
    assert smtp.feed(GREETED + b"MAIL FROM:<a@b.example>\r\n") == [
        "550 5.7.1 Go away",
        "503 5.5.1 Error: send HELO/EHLO first",
    ]
    assert smtp.conn.helo is None


# -- a person at a terminal --------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "name", "extended"),
    [
        (b"HELX\x08O x\r\n", "x", False),
        (b"HELX\x7fO x\r\n", "x", False),
        (b"EHLO abc\x08\x08\x08xyz\r\n", "xyz", True),
        (b"EHLO \xc3\xa9\x08x\r\n", "x", True),  # backspace erases a whole UTF-8 character
        (b"\xff\xfb\x01\xff\xfd\x03EHLO x\r\n", "x", True),
        (b"\xff\xfe\x22EHLO x\r\n", "x", True),
        (b"\xff\xfa\x18\x00xterm\xff\xf0HELO x\r\n", "x", False),  # IAC SB ... IAC SE
        (b"helo x\n", "x", False),  # bare LF ends a command line
        (b"eHlO x\r\n", "x", True),
    ],
)
def test_terminal_editing(session: Session, typed: bytes, name: str, extended: bool) -> None:
    smtp = session()
    lines = smtp.feed(typed)
    assert lines[-1] in (f"250 {HOST}", "250 HELP")
    assert smtp.of_type(Hello) == [Hello(name=name, extended=extended)]


def test_lowercase_transaction_with_bare_lf_commands(session: Session) -> None:
    smtp = session()
    out = smtp.feed(
        b"helo x\nmail from:<a@b.example>\nrcpt to:<c@d.example>\ndata\n"
        b"Subject: s\r\n\r\nbody\r\n.\r\nquit\n"
    )
    assert [line[:3] for line in out] == ["250", "250", "250", "354", "250", "221"]
    assert smtp.messages == [b"Subject: s\r\n\r\nbody\r\n"]


def test_quit_closes_and_later_bytes_are_ignored(session: Session) -> None:
    smtp = greeted(session)
    assert smtp.feed(b"QUIT\r\nMAIL FROM:<a@b.example>\r\n") == [
        f"221 2.0.0 {HOST} closing connection"
    ]
    assert smtp.feed(b"NOOP\r\nMAIL FROM:<c@d.example>\r\n") == []
    assert smtp.of_type(MailFrom) == []
    assert smtp.conn.closed
    assert smtp.conn.next_event() is CLOSED


def test_quit_mid_transaction_drops_it(session: Session) -> None:
    smtp = greeted(session)
    smtp.feed(ENVELOPE + b"QUIT\r\n")
    assert smtp.conn.state is State.CLOSED
    assert smtp.conn.transaction is None


def test_http_request_is_shown_the_door(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"GET / HTTP/1.1\r\nHost: mx\r\n\r\n") == [
        "221 2.7.0 Error: this is an SMTP server, not a web server"
    ]
    assert smtp.conn.closed
    assert [e.command for e in smtp.of_type(CommandRejected)] == ["GET"]


def test_close_with_sends_a_last_reply_once() -> None:
    conn = AcceptAll().conn
    conn.close_with(reply(421, "4.4.2", f"{HOST} Error: timeout exceeded"))
    conn.close_with(reply(421, "4.3.2", "again"))
    assert conn.data_to_send() == f"421 4.4.2 {HOST} Error: timeout exceeded\r\n".encode()
    assert conn.next_event() is CLOSED


def test_refused_greeting_serves_only_quit(session: Session) -> None:
    # RFC 5321 3.1: after a 554 greeting the server waits for QUIT, answering 503 meanwhile.
    smtp = session()
    smtp.conn.send_greeting(reply(554, "5.7.1", "Client host [192.0.2.1] rejected"))
    assert smtp.conn.state is State.REFUSED
    transcript = "\n".join(
        [
            "S: 554 5.7.1 Client host [192.0.2.1] rejected",
            "C: EHLO client.example",
            "S: 503 5.5.1 Error: this server refused the connection; send QUIT",
            "C: MAIL FROM:<a@example.org>",
            "S: 503 5.5.1 Error: this server refused the connection; send QUIT",
            "C: NOOP",
            "S: 503 5.5.1 Error: this server refused the connection; send QUIT",
            "C: QUIT",
            f"S: 221 2.0.0 {HOST} closing connection",
        ]
    )
    for client, expected in dialog(transcript):
        assert smtp.feed(client) == expected
    assert smtp.conn.state is State.CLOSED
    assert smtp.of_type(Hello) == []
    assert smtp.of_type(MailFrom) == []
    assert [event.command for event in smtp.of_type(CommandRejected)] == ["EHLO", "MAIL", "NOOP"]
