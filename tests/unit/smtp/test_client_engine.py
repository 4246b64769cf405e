"""``ClientConnection`` wired to a real ``ServerConnection`` over an in-memory pipe:
negotiation, parameters, pipelining, per-recipient replies, STARTTLS, AUTH, order rules.

``Wire`` is the pipe; the other ``test_client_*`` modules import it from here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable

import pytest
from smtp_harness import HOST, AcceptAll

from hato.smtp import (
    AuthResponse,
    AuthStart,
    ClientConnection,
    ClientState,
    Command,
    DataCommand,
    Hello,
    LocalProtocolError,
    MailFrom,
    MailParams,
    RcptParams,
    RcptTo,
    Reply,
    Response,
    StartTls,
    reply,
)

Session = Callable[..., AcceptAll]

SENDER = "alice@example.org"
QUEUED = reply(250, "2.0.0", "Ok: queued as Q1")


class Wire:
    """Moves bytes both ways between a ``ClientConnection`` and an ``AcceptAll`` server."""

    def __init__(self, server: AcceptAll | None = None) -> None:
        self.server = server if server is not None else AcceptAll()
        self.server.conn.send_greeting(reply(220, None, f"{HOST} ESMTP Hato"))
        self.client = ClientConnection()
        self.sent = bytearray()  # every octet the client wrote
        self.client.receive_data(self.server.conn.data_to_send())

    def send(self, *pieces: bytes) -> list[Response]:
        """Write ``pieces`` as one write, let the server answer, return the whole replies."""
        data = b"".join(pieces)
        self.sent += data
        self.client.receive_data(self.server.feed_bytes(data))
        return self.replies()

    def replies(self) -> list[Response]:
        found = []
        while (response := self.client.next_reply()) is not None:
            found.append(response)
        return found

    def greet(self, name: str = "client.example") -> list[Response]:
        """Banner and EHLO; returns both responses."""
        banner = self.replies()
        return banner + self.send(self.client.ehlo(name))

    def transaction(
        self, recipients: Iterable[str], chunks: Iterable[bytes] = (b"Subject: x\r\n\r\nhi\r\n",)
    ) -> list[Response]:
        """MAIL, RCPTs and DATA pipelined in one write, then the message."""
        client = self.client
        group = [client.mail(SENDER), *(client.rcpt(r) for r in recipients), client.data()]
        responses = self.send(*group)
        if client.state is ClientState.DATA:
            message = [client.message_chunk(chunk) for chunk in chunks]
            responses += self.send(*message, client.end_of_data())
        return responses


def ehlo_answer(*keywords: str) -> Callable[[object], Reply]:
    """An EHLO answer advertising exactly ``keywords`` (HELO gets a plain 250)."""

    def answer(event: object) -> Reply:
        assert isinstance(event, Hello)
        if event.extended:
            return Reply(250, None, (HOST, *keywords))
        return reply(250, None, HOST)

    return answer


def test_banner_then_ehlo_reads_the_extensions() -> None:
    wire = Wire()
    banner, ehlo = wire.greet()
    assert banner == Response(Command.GREETING, "", reply(220, None, f"{HOST} ESMTP Hato"))
    assert ehlo.command is Command.EHLO
    client = wire.client
    assert client.state is ClientState.GREETED
    assert client.extensions == {
        "PIPELINING": "",
        "SIZE": str(64 * 1024 * 1024),
        "8BITMIME": "",
        "SMTPUTF8": "",
        "ENHANCEDSTATUSCODES": "",
        "DSN": "",
        "CHUNKING": "",
        "HELP": "",
    }
    assert client.pipelining and client.eight_bit_mime and client.smtputf8 and client.dsn
    assert client.enhanced_status_codes
    assert client.size_limit == 64 * 1024 * 1024
    assert not client.starttls_offered
    assert client.auth_mechanisms == ()
    assert wire.server.of_type(Hello) == [Hello(name="client.example", extended=True)]


@pytest.mark.parametrize(
    ("lines", "size_limit", "auth"),
    [
        (("SIZE",), None, ()),
        (("SIZE 0",), None, ()),
        (("size 1000", "auth plain login"), 1000, ("PLAIN", "LOGIN")),
        (("SIZE x1",), None, ()),
        (("AUTH=LOGIN PLAIN",), None, ("LOGIN", "PLAIN")),
        (("AUTH CRAM-MD5", "AUTH=LOGIN"), None, ("CRAM-MD5",)),
    ],
)
def test_extension_lines(
    lines: tuple[str, ...], size_limit: int | None, auth: tuple[str, ...]
) -> None:
    wire = Wire(AcceptAll(answers={Hello: ehlo_answer(*lines)}))
    wire.greet()
    assert wire.client.size_limit == size_limit
    assert wire.client.auth_mechanisms == auth


@pytest.mark.parametrize("refusal", [reply(500, "5.5.2", "What?"), reply(502, None, "No EHLO")])
def test_helo_when_ehlo_is_refused(refusal: Reply) -> None:
    def answer(event: object) -> Reply:
        assert isinstance(event, Hello)
        return refusal if event.extended else reply(250, None, HOST)

    wire = Wire(AcceptAll(answers={Hello: answer}))
    _banner, ehlo = wire.greet()
    assert ehlo.reply == refusal
    assert wire.client.state is ClientState.CONNECTED
    [helo] = wire.send(wire.client.helo("client.example"))
    assert (helo.command, helo.reply.code) == (Command.HELO, 250)
    assert wire.client.state is ClientState.GREETED
    assert wire.client.extensions == {}
    # Without PIPELINING every command waits for its reply.
    wire.client.mail(SENDER)
    with pytest.raises(LocalProtocolError, match="without PIPELINING"):
        wire.client.rcpt("bob@example.com")


def test_every_parameter_when_everything_is_advertised() -> None:
    wire = Wire()
    wire.greet()
    line = wire.client.mail(
        SENDER, size=1234, body="8bitmime", smtputf8=True, ret="hdrs", envid="id+1=2 x"
    )
    assert line == (
        b"MAIL FROM:<alice@example.org> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS"
        b" ENVID=id+2B1+3D2+20x\r\n"
    )
    rcpt = wire.client.rcpt("bob@example.com", notify=("success", "FAILURE"), orcpt="bob@b.example")
    assert (
        rcpt == b"RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@b.example\r\n"
    )
    assert [r.reply.code for r in wire.send(line, rcpt)] == [250, 250]
    [mail] = wire.server.of_type(MailFrom)
    assert mail.params == MailParams(
        size=1234, body="8BITMIME", smtputf8=True, ret="HDRS", envid="id+1=2 x"
    )
    [rcpt_event] = wire.server.of_type(RcptTo)
    assert rcpt_event.params == RcptParams(
        notify=("SUCCESS", "FAILURE"), orcpt="rfc822;bob@b.example"
    )


@pytest.mark.parametrize(
    ("keywords", "mail_line", "rcpt_line"),
    [
        ((), "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.com>"),
        (("SIZE 1000",), "MAIL FROM:<alice@example.org> SIZE=999", "RCPT TO:<bob@example.com>"),
        (("8BITMIME",), "MAIL FROM:<alice@example.org> BODY=8BITMIME", "RCPT TO:<bob@example.com>"),
        (
            ("DSN",),
            "MAIL FROM:<alice@example.org> RET=FULL ENVID=e1",
            "RCPT TO:<bob@example.com> NOTIFY=NEVER ORCPT=rfc822;o@example.com",
        ),
    ],
)
def test_parameters_only_for_advertised_extensions(
    keywords: tuple[str, ...], mail_line: str, rcpt_line: str
) -> None:
    wire = Wire(AcceptAll(answers={Hello: ehlo_answer(*keywords)}))
    wire.greet()
    client = wire.client
    mail = client.mail(SENDER, size=999, body="8BITMIME", ret="FULL", envid="e1")
    assert mail == mail_line.encode() + b"\r\n"
    assert wire.send(mail)[0].reply.code == 250
    rcpt = client.rcpt("bob@example.com", notify=("NEVER",), orcpt="rfc822;o@example.com")
    assert rcpt == rcpt_line.encode() + b"\r\n"
    assert wire.send(rcpt)[0].reply.code == 250


@pytest.mark.parametrize(
    ("envid", "orcpt", "server_orcpt"),
    [
        ("plain", "rfc822;bob@example.com", "rfc822;bob@example.com"),
        ("a+b=c", "rfc822;bob+tag@example.com", "rfc822;bob+tag@example.com"),
        ("with space\ttab", "bob=x@example.com", "rfc822;bob=x@example.com"),
        ("~!#$%&'*", 'RFC822;"a b"@example.com', 'rfc822;"a b"@example.com'),
        ("x", "jörg@exämple.org", "utf-8;j\\x{F6}rg@ex\\x{E4}mple.org"),
        ("x", "utf-8;j\\x{F6}rg@example.org", "utf-8;j\\x{F6}rg@example.org"),
    ],
)
def test_envid_and_orcpt_round_trip_through_the_server(
    envid: str, orcpt: str, server_orcpt: str
) -> None:
    wire = Wire()
    wire.greet()
    client = wire.client
    responses = wire.send(client.mail(SENDER, envid=envid), client.rcpt("b@x.example", orcpt=orcpt))
    assert [r.reply.code for r in responses] == [250, 250]
    assert wire.server.of_type(MailFrom)[0].params.envid == envid
    assert wire.server.of_type(RcptTo)[0].params.orcpt == server_orcpt


def test_pipelined_group_is_answered_in_order() -> None:
    wire = Wire()
    wire.greet()
    responses = wire.transaction(["bob@example.com", "carol@example.com"])
    assert [(r.command, r.argument, r.reply.code) for r in responses] == [
        (Command.MAIL, SENDER, 250),
        (Command.RCPT, "bob@example.com", 250),
        (Command.RCPT, "carol@example.com", 250),
        (Command.DATA, "", 354),
        (Command.END_OF_DATA, "", 250),
    ]
    assert responses[-1].reply == QUEUED
    # The group went out in one write, and the server answered it in one write.
    assert wire.server.writes[-2].count(b"\r\n") == 4
    assert wire.server.messages == [b"Subject: x\r\n\r\nhi\r\n"]
    assert wire.client.state is ClientState.GREETED
    assert not wire.client.in_transaction


def test_some_recipients_refused() -> None:
    refusals = {
        "temp@example.com": reply(451, "4.3.0", "Try later"),
        "gone@example.com": reply(550, "5.1.1", "No such user"),
    }

    def answer(event: object) -> Reply:
        assert isinstance(event, RcptTo)
        return refusals.get(event.forward_path, reply(250, "2.1.5", "Ok"))

    wire = Wire(AcceptAll(answers={RcptTo: answer}))
    wire.greet()
    responses = wire.transaction(["temp@example.com", "ok@example.com", "gone@example.com"])
    by_address = {r.argument: r.reply for r in responses if r.command is Command.RCPT}
    assert by_address == {**refusals, "ok@example.com": reply(250, "2.1.5", "Ok")}
    assert responses[-1] == Response(Command.END_OF_DATA, "", QUEUED)
    assert len(wire.server.messages) == 1


def test_no_recipient_accepted_then_rset_and_another_transaction() -> None:
    wire = Wire(AcceptAll(answers={RcptTo: lambda _e: reply(550, "5.1.1", "No")}))
    wire.greet()
    responses = wire.transaction(["a@example.com", "b@example.com"])
    assert [r.reply.code for r in responses] == [250, 550, 550, 554]
    assert wire.server.of_type(DataCommand) == []
    assert wire.client.in_transaction
    with pytest.raises(LocalProtocolError):
        wire.client.mail(SENDER)  # the server still holds the transaction
    [rset] = wire.send(wire.client.rset())
    assert (rset.command, rset.reply.code) == (Command.RSET, 250)
    assert wire.client.state is ClientState.GREETED
    assert wire.send(wire.client.mail(SENDER))[0].reply.code == 250


def test_dot_alone_when_data_is_accepted_without_recipients() -> None:
    # RFC 2920 3.1: a server may accept DATA although no RCPT was; the client sends a lone dot.
    client = ClientConnection()
    client.receive_data(b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n")
    client.next_reply()
    client.ehlo("c")
    client.next_reply()
    client.mail(SENDER)
    client.rcpt("a@example.com")
    client.data()
    client.receive_data(b"250 ok\r\n550 no\r\n354 go ahead\r\n")
    codes = [client.next_reply(), client.next_reply(), client.next_reply()]
    assert [r.reply.code for r in codes if r is not None] == [250, 550, 354]
    assert client.state is ClientState.DATA
    assert client.end_of_data() == b".\r\n"
    assert client.awaiting == (Command.END_OF_DATA,)


def test_refused_mail_ends_the_transaction_at_once() -> None:
    wire = Wire(AcceptAll(answers={MailFrom: lambda _e: reply(553, "5.7.1", "Sender refused")}))
    wire.greet()
    [mail] = wire.send(wire.client.mail(SENDER))
    assert mail.reply.code == 553
    assert wire.client.state is ClientState.GREETED
    with pytest.raises(LocalProtocolError):
        wire.client.rcpt("bob@example.com")


def test_pipelined_group_after_a_refused_mail() -> None:
    wire = Wire(AcceptAll(answers={MailFrom: lambda _e: reply(451, "4.3.0", "Later")}))
    wire.greet()
    responses = wire.transaction(["bob@example.com"])
    assert [(r.command, r.reply.code) for r in responses] == [
        (Command.MAIL, 451),
        (Command.RCPT, 503),
        (Command.DATA, 503),
    ]
    assert wire.client.state is ClientState.GREETED  # nothing to RSET


def test_commands_out_of_order_are_our_bug() -> None:
    client = ClientConnection()
    with pytest.raises(LocalProtocolError, match="before the reply to greeting"):
        client.ehlo("c")
    client.receive_data(b"220 mx ready\r\n")
    client.next_reply()
    for premature in (lambda: client.mail(SENDER), client.starttls, client.data, client.rset):
        with pytest.raises(LocalProtocolError, match="not allowed in state connected"):
            premature()
    client.helo("c")
    with pytest.raises(LocalProtocolError, match="before the reply to HELO"):
        client.noop()
    client.receive_data(b"250 mx\r\n")
    client.next_reply()
    with pytest.raises(LocalProtocolError):
        client.rcpt("bob@example.com")
    with pytest.raises(LocalProtocolError):
        client.message_chunk(b"x")
    with pytest.raises(LocalProtocolError):
        client.end_of_data()
    client.mail(SENDER)
    client.receive_data(b"250 ok\r\n")
    client.next_reply()
    with pytest.raises(LocalProtocolError, match="DATA before any RCPT"):
        client.data()
    with pytest.raises(LocalProtocolError):
        client.tls_established()
    with pytest.raises(LocalProtocolError):
        client.auth_continue()


def test_data_ends_a_pipelined_group() -> None:
    wire = Wire()
    wire.greet()
    client = wire.client
    client.mail(SENDER)
    client.rcpt("bob@example.com")
    client.data()
    with pytest.raises(LocalProtocolError, match="before the reply to DATA"):
        client.rset()


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.mail("a@b.example\r\nRCPT TO:<x@y>"),
        lambda c: c.ehlo("name\nx"),
        lambda c: c.mail("jörg@example.org"),
        lambda c: c.mail(SENDER, body="BINARYMIME"),
        lambda c: c.mail(SENDER, ret="ALL"),
    ],
)
def test_arguments_that_cannot_be_sent(call: Callable[[ClientConnection], bytes]) -> None:
    wire = Wire()
    wire.greet()
    with pytest.raises(ValueError):
        call(wire.client)
    assert wire.client.awaiting == ()


def test_rcpt_checks_notify_and_ascii() -> None:
    wire = Wire()
    wire.greet()
    wire.send(wire.client.mail(SENDER))
    with pytest.raises(ValueError, match="NOTIFY"):
        wire.client.rcpt("bob@example.com", notify=("NEVER", "SUCCESS"))
    with pytest.raises(ValueError, match="SMTPUTF8"):
        wire.client.rcpt("jörg@example.org")


def test_utf8_addresses_with_smtputf8() -> None:
    wire = Wire()
    wire.greet()
    client = wire.client
    responses = wire.send(client.mail("jörg@exämple.org", smtputf8=True), client.rcpt("δ@例え.jp"))
    assert [r.reply.code for r in responses] == [250, 250]
    assert wire.server.of_type(MailFrom)[0].reverse_path == "jörg@exämple.org"
    assert wire.server.of_type(RcptTo)[0].forward_path == "δ@例え.jp"


@pytest.mark.parametrize(
    ("keywords", "size", "utf8", "eight_bit", "expected"),
    [
        (("SIZE 1000",), 1001, False, False, "552 5.3.4"),
        (("SIZE 1000",), 1000, False, False, None),
        (("SIZE",), 10**9, False, False, None),
        ((), 10**9, False, False, None),
        (("SIZE 1000", "8BITMIME"), None, False, True, None),
        (("SMTPUTF8", "8BITMIME"), 10, True, True, None),
        (("8BITMIME",), 10, True, False, "554 5.6.7"),
        (("SMTPUTF8",), 10, False, True, "554 5.6.3"),
    ],
)
def test_local_refusals(
    keywords: tuple[str, ...], size: int | None, utf8: bool, eight_bit: bool, expected: str | None
) -> None:
    wire = Wire(AcceptAll(answers={Hello: ehlo_answer(*keywords)}))
    wire.greet()
    refusal = wire.client.check_transaction(size, needs_smtputf8=utf8, eight_bit=eight_bit)
    if expected is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert f"{refusal.code} {refusal.enhanced}" == expected
        assert refusal.is_permanent
    assert wire.client.awaiting == ()  # nothing was sent


def test_starttls_drops_what_followed_the_220() -> None:
    wire = Wire(AcceptAll(tls_available=True))
    wire.greet()
    assert wire.client.starttls_offered
    client = wire.client
    client.starttls()
    # A man in the middle appends a reply to the plaintext 220: it must never be read.
    client.receive_data(b"220 2.0.0 Ready\r\n250 injected\r\n")
    [ready] = wire.replies()
    assert (ready.command, ready.reply.code) == (Command.STARTTLS, 220)
    assert client.state is ClientState.TLS
    client.receive_data(b"250 also injected\r\n")
    client.tls_established()
    assert client.tls_active
    assert client.state is ClientState.CONNECTED
    assert client.extensions == {}
    assert client.next_reply() is None
    client.receive_data(b"250-mx\r\n250 AUTH PLAIN\r\n")
    assert client.next_reply() is None  # nothing is expected: the bytes wait for a command
    client.ehlo("c")
    response = client.next_reply()
    assert response is not None
    assert response.reply.lines == ("mx", "AUTH PLAIN")
    assert client.auth_mechanisms == ("PLAIN",)
    assert all("injected" not in line.text for line in client.transcript)


def test_starttls_through_the_server_engine() -> None:
    wire = Wire(AcceptAll(tls_available=True))
    wire.greet()
    [ready] = wire.send(wire.client.starttls())
    assert ready.reply == reply(220, "2.0.0", "Ready to start TLS")
    assert wire.server.of_type(StartTls) == [StartTls()]
    wire.server.conn.tls_established()
    wire.client.tls_established()
    [ehlo] = wire.send(wire.client.ehlo("again.example"))
    assert ehlo.reply.code == 250
    assert not wire.client.starttls_offered  # not advertised once TLS is active


def test_auth_plain() -> None:
    wire = Wire(AcceptAll(auth_mechanisms=("PLAIN", "LOGIN")))
    wire.greet()
    [auth] = wire.send(wire.client.auth_plain("user@example.org", "sécret"))
    assert auth.reply == reply(235, "2.7.0", "Authentication successful")
    assert wire.client.authenticated
    [start] = wire.server.of_type(AuthStart)
    assert start.mechanism == "PLAIN"
    assert start.initial_response is not None
    assert base64.b64decode(start.initial_response) == "\0user@example.org\0sécret".encode()
    shown = [line.text for line in wire.client.transcript]
    assert "AUTH PLAIN ****" in shown
    assert not any(start.initial_response in text for text in shown)


def test_auth_login_answers_two_challenges() -> None:
    challenges = iter([reply(334, None, "VXNlcm5hbWU6"), reply(334, None, "UGFzc3dvcmQ6")])

    def answer(event: object) -> Reply:
        return next(challenges, reply(235, "2.7.0", "Authentication successful"))

    wire = Wire(
        AcceptAll(auth_mechanisms=("LOGIN",), answers={AuthStart: answer, AuthResponse: answer})
    )
    wire.greet()
    client = wire.client
    [first] = wire.send(client.auth_login("user", "pw"))
    assert first.reply.code == 334
    assert client.state is ClientState.AUTH
    [second] = wire.send(client.auth_continue())
    assert second.reply.code == 334
    [done] = wire.send(client.auth_continue())
    assert done.reply.code == 235
    assert client.authenticated
    assert client.state is ClientState.GREETED
    assert [e.data for e in wire.server.of_type(AuthResponse)] == [
        base64.b64encode(b"user").decode(),
        base64.b64encode(b"pw").decode(),
    ]
    assert [line.text for line in client.transcript[-6:]] == [
        "AUTH LOGIN",
        "334 VXNlcm5hbWU6",
        "****",
        "334 UGFzc3dvcmQ6",
        "****",
        "235 2.7.0 Authentication successful",
    ]


def test_auth_cancelled_when_the_server_wants_more() -> None:
    wire = Wire(
        AcceptAll(auth_mechanisms=("PLAIN",), answers={AuthStart: lambda _e: reply(334, None, "")})
    )
    wire.greet()
    [challenge] = wire.send(wire.client.auth_plain("u", "p"))
    assert challenge.reply.code == 334
    cancel = wire.client.auth_continue()
    assert cancel == b"*\r\n"
    [aborted] = wire.send(cancel)
    assert aborted.reply == reply(501, "5.7.0", "Authentication aborted")
    assert not wire.client.authenticated
    assert wire.client.state is ClientState.GREETED


def test_noop_rset_and_quit() -> None:
    wire = Wire()
    wire.greet()
    client = wire.client
    assert [r.command for r in wire.send(client.rset(), client.noop())] == [
        Command.RSET,
        Command.NOOP,
    ]
    [bye] = wire.send(client.quit())
    assert bye.reply == reply(221, "2.0.0", f"{HOST} closing connection")
    assert client.state is ClientState.CLOSED
    client.receive_data(b"250 late\r\n")
    assert client.next_reply() is None


def test_421_closes_and_drops_what_was_expected() -> None:
    wire = Wire()
    wire.greet()
    client = wire.client
    client.mail(SENDER)
    client.rcpt("bob@example.com")
    client.receive_data(b"421 4.3.2 Shutting down\r\n")
    [closing] = wire.replies()
    assert (closing.command, closing.reply) == (
        Command.MAIL,
        reply(421, "4.3.2", "Shutting down"),
    )
    assert client.state is ClientState.CLOSED
    assert client.awaiting == ()


def test_refused_banner_allows_only_quit() -> None:
    client = ClientConnection()
    client.receive_data(b"554 5.7.1 No SMTP service here\r\n")
    response = client.next_reply()
    assert response == Response(Command.GREETING, "", reply(554, "5.7.1", "No SMTP service here"))
    assert client.state is ClientState.GREETING
    with pytest.raises(LocalProtocolError):
        client.ehlo("c")
    assert client.quit() == b"QUIT\r\n"
