"""Reading replies: multi-line replies, enhanced codes with and without
ENHANCEDSTATUSCODES, replies cut anywhere, malformed replies, and the transcript."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from smtp_harness import HOST, AcceptAll, bytewise
from test_client_engine import SENDER, Wire

from hato.smtp import (
    ClientConnection,
    ClientState,
    Command,
    ProtocolError,
    Reply,
    TranscriptLine,
    reply,
)
from hato.smtp._client import MAX_REPLY_LINE, MAX_REPLY_LINES


def greeted(*keywords: str) -> ClientConnection:
    """A client past the banner and EHLO, the server having advertised ``keywords``."""
    client = ClientConnection()
    lines = ["mx.example", *keywords]
    ehlo = Reply(250, None, tuple(lines)).to_bytes()
    client.receive_data(b"220 mx.example ESMTP\r\n")
    assert client.next_reply() is not None
    client.ehlo("client.example")
    client.receive_data(ehlo)
    assert client.next_reply() is not None
    assert client.state is ClientState.GREETED
    return client


def answer(client: ClientConnection, wire: bytes) -> Reply:
    """The reply ``wire`` parses to, as the answer to a NOOP."""
    client.noop()
    client.receive_data(wire)
    response = client.next_reply()
    assert response is not None
    assert response.command is Command.NOOP
    return response.reply


@pytest.mark.parametrize(
    ("wire", "advertised", "parsed"),
    [
        (b"250 Ok\r\n", False, reply(250, None, "Ok")),
        (b"250 2.0.0 Ok\r\n", False, reply(250, "2.0.0", "Ok")),
        (b"250 2.0.0 Ok\r\n", True, reply(250, "2.0.0", "Ok")),
        (b"250 2.0.0\r\n", False, reply(250, None, "2.0.0")),
        (b"250 2.0.0\r\n", True, reply(250, "2.0.0", "")),
        (b"250\r\n", False, reply(250, None, "")),
        (b"250 \r\n", False, reply(250, None, "")),
        (b"550 2.0.0 class differs\r\n", True, reply(550, None, "2.0.0 class differs")),
        (b"250 1.2.3 no such class\r\n", True, reply(250, None, "1.2.3 no such class")),
        (b"451 4.3.0 Try\r\n", False, reply(451, "4.3.0", "Try")),
        (b"552 5.3.4 too big\n", False, reply(552, "5.3.4", "too big")),  # bare LF taken
        (b"250 caf\xe9\r\n", False, reply(250, None, "caf\ufffd")),
        (
            b"250-2.1.0 first\r\n250-2.1.0 second\r\n250 2.1.0 third\r\n",
            True,
            reply(250, "2.1.0", "first", "second", "third"),
        ),
        (
            b"550-5.7.1 one\r\n550-5.7.2 other code kept\r\n550 5.7.1\r\n",
            True,
            reply(550, "5.7.1", "one", "5.7.2 other code kept", ""),
        ),
        (b"250-a\r\n250-\r\n250 b\r\n", False, reply(250, None, "a", "", "b")),
    ],
)
def test_reply_parsing(wire: bytes, advertised: bool, parsed: Reply) -> None:
    client = greeted("ENHANCEDSTATUSCODES") if advertised else greeted()
    assert client.enhanced_status_codes is advertised
    assert answer(client, wire) == parsed


def test_a_reply_cut_anywhere_is_taken_only_when_whole() -> None:
    client = greeted("ENHANCEDSTATUSCODES", "PIPELINING")
    wire = b"250-2.0.0 one\r\n250 2.0.0 two\r\n550 5.1.1 No\r\n"
    client.noop()
    seen = []
    for piece in bytewise(wire):
        client.receive_data(piece)
        response = client.next_reply()
        if response is not None:
            seen.append(response.reply)
            if len(seen) == 1:
                client.noop()
    assert seen == [reply(250, "2.0.0", "one", "two"), reply(550, "5.1.1", "No")]


@pytest.mark.parametrize(
    ("wire", "detail"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n", "not an SMTP reply line"),
        (b"25 short\r\n", "not an SMTP reply line"),
        (b"2500 long code\r\n", "not an SMTP reply line"),
        (b"150 preliminary\r\n", "not an SMTP reply line"),
        (b"650 out of range\r\n", "not an SMTP reply line"),
        (b"250_ odd separator\r\n", "not an SMTP reply line"),
        (b"\r\n", "not an SMTP reply line"),
        (b"250-first\r\n251 second\r\n", "reply line with code 250 expected"),
        (b"250-first\r\n garbage\r\n", "not an SMTP reply line"),
        (b"250 a\rb\r\n", "CR inside a reply line"),
        (b"250 " + b"x" * MAX_REPLY_LINE, "reply line too long"),
        (b"250 " + b"x" * MAX_REPLY_LINE + b"\r\n", "reply line too long"),
        (b"250-x\r\n" * MAX_REPLY_LINES + b"250 x\r\n", "reply too long"),
    ],
)
def test_malformed_replies_are_the_servers_fault(wire: bytes, detail: str) -> None:
    client = greeted()
    client.noop()
    client.receive_data(wire)
    with pytest.raises(ProtocolError) as caught:
        client.next_reply()
    assert caught.value.detail == detail
    assert caught.value.received in wire
    assert client.state is ClientState.CLOSED
    assert client.awaiting == ()
    assert client.transcript[-1].direction == "S"
    assert client.next_reply() is None


def test_malformed_banner() -> None:
    client = ClientConnection()
    client.receive_data(b"SSH-2.0-OpenSSH_9.6\r\n")
    with pytest.raises(ProtocolError, match=r"SSH-2\.0"):
        client.next_reply()
    assert client.transcript == [TranscriptLine("S", "SSH-2.0-OpenSSH_9.6")]


def test_unsolicited_bytes_answer_the_next_command() -> None:
    client = greeted()
    client.receive_data(b"421 4.4.2 Timeout, closing\r\n")
    assert client.next_reply() is None
    assert client.state is ClientState.GREETED
    client.mail(SENDER)
    response = client.next_reply()
    assert response is not None
    assert (response.command, response.reply.code) == (Command.MAIL, 421)
    assert client.state is ClientState.CLOSED


TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=60
).filter(lambda text: not text[:1].isdigit())


@given(
    code=st.integers(200, 599),
    enhanced=st.tuples(st.integers(0, 999), st.integers(0, 999)) | st.none(),
    lines=st.lists(TEXT, min_size=1, max_size=5),
    advertised=st.booleans(),
)
def test_every_reply_the_server_can_send_reads_back_the_same(
    code: int, enhanced: tuple[int, int] | None, lines: list[str], advertised: bool
) -> None:
    # RFC 3463 section 3.1: an enhanced code is of class 2, 4 or 5, never 3.
    assume(enhanced is None or code // 100 != 3)
    code_text = None if enhanced is None else f"{code // 100}.{enhanced[0]}.{enhanced[1]}"
    sent = Reply(code, code_text, tuple(lines))
    client = greeted("ENHANCEDSTATUSCODES") if advertised else greeted()
    parsed = answer(client, sent.to_bytes())
    assert parsed == sent


def test_transcript_of_a_whole_session() -> None:
    wire = Wire()
    wire.greet()
    wire.transaction(["bob@example.com"], chunks=[b"Subject: x\r\n\r\n", b".hidden\r\n"])
    wire.send(wire.client.quit())
    lines = [(line.direction, line.text) for line in wire.client.transcript]
    ehlo_lines = [("S", text) for text in _ehlo_lines(wire.server)]
    assert lines == [
        ("S", f"220 {HOST} ESMTP Hato"),
        ("C", "EHLO client.example"),
        *ehlo_lines,
        ("C", f"MAIL FROM:<{SENDER}>"),
        ("C", "RCPT TO:<bob@example.com>"),
        ("C", "DATA"),
        ("S", "250 2.1.0 Ok"),
        ("S", "250 2.1.5 Ok"),
        ("S", "354 End data with <CR><LF>.<CR><LF>"),
        ("C", "<message data, 23 octets>"),
        ("C", "."),
        ("S", "250 2.0.0 Ok: queued as Q1"),
        ("C", "QUIT"),
        ("S", f"221 2.0.0 {HOST} closing connection"),
    ]


def _ehlo_lines(server: AcceptAll) -> list[str]:
    keywords = server.conn.ehlo_keywords()
    return [f"250-{HOST}"] + [
        f"250{' ' if i == len(keywords) - 1 else '-'}{k}" for i, k in enumerate(keywords)
    ]
