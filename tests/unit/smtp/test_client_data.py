"""Message data: dot-stuffing (RFC 5321 4.5.2) chunk by chunk, checked against the
octets the server engine's DataChunk events give back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_harness import AcceptAll, Chunking, bytewise, sevens, split_at, whole
from test_client_engine import Wire

from hato.smtp import ClientConnection, ClientState, Command

Session = Callable[..., AcceptAll]


def send_message(wire: Wire, chunks: list[bytes]) -> bytes:
    """A pipelined transaction carrying ``chunks``; returns what the client wrote for them."""
    client = wire.client
    wire.send(client.mail("a@example.org"), client.rcpt("b@example.com"), client.data())
    assert client.state is ClientState.DATA
    written = b"".join(client.message_chunk(chunk) for chunk in chunks) + client.end_of_data()
    [end] = wire.send(written)
    assert (end.command, end.reply.code) == (Command.END_OF_DATA, 250)
    return written


def stored(message: bytes) -> bytes:
    """What a server must store: the message, with a CRLF added if its last line had none."""
    return message if message.endswith(b"\r\n") or not message else message + b"\r\n"


MESSAGES = [
    b"",
    b"\r\n",
    b".\r\n",
    b"..\r\n",
    b"...\r\n",
    b".",
    b"..",
    b".x\r\n",
    b"a\r\n.\r\nb\r\n",
    b"a\r\n..\r\n.b\r\n",
    b"\r\n.\r\n.\r\n",
    b"no final line end",
    b"ends in a dot line\r\n.",
    b"a.b\r\n .c\r\nd.\r\n",
    b"8bit \xc3\xa9 and \x00 NUL\r\n",
    b"Subject: x\r\n\r\n.\r\n..\r\n...\r\n",
]


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize("cut", [whole, bytewise, sevens], ids=["whole", "bytewise", "sevens"])
def test_messages_arrive_byte_identical(session: Session, message: bytes, cut: Chunking) -> None:
    wire = Wire(session())
    wire.greet()
    send_message(wire, list(cut(message)) if message else [])
    assert wire.server.messages == [stored(message)]


@pytest.mark.parametrize(
    ("chunks", "wire_bytes"),
    [
        ([b"."], b"..\r\n.\r\n"),
        ([b"a\r\n", b".b"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r", b"\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r\n", b"", b".", b"\r\n"], b"a\r\n..\r\n.\r\n"),
        ([b"a", b".\r\n"], b"a.\r\n.\r\n"),
        # A bare CR or LF goes out as CRLF, so the dot after it is stuffed.
        ([b"a\r", b".\r\n"], b"a\r\n..\r\n.\r\n"),
        ([b"a\n", b".\r\n"], b"a\r\n..\r\n.\r\n"),
        ([b"hi\n.\nMAIL FROM:<x@y.example>\n"], b"hi\r\n..\r\nMAIL FROM:<x@y.example>\r\n.\r\n"),
        ([b"\r.\r"], b"\r\n..\r\n.\r\n"),
        ([b"a\r", b"\r\n"], b"a\r\n\r\n.\r\n"),
        ([b"a\r", b"", b"\nb"], b"a\r\nb\r\n.\r\n"),  # one CRLF cut in two
        ([b"ends in CR\r"], b"ends in CR\r\n.\r\n"),
        ([b"x\r\n"], b"x\r\n.\r\n"),
        ([b""], b".\r\n"),
    ],
)
def test_stuffing_across_chunk_boundaries(chunks: list[bytes], wire_bytes: bytes) -> None:
    client = ClientConnection()
    client.receive_data(b"220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    client.next_reply()
    for send in (lambda: client.ehlo("c"), lambda: client.mail("a@b.example")):
        send()
        client.next_reply()
    client.rcpt("c@d.example")
    client.next_reply()
    client.data()
    client.next_reply()
    assert client.state is ClientState.DATA
    written = b"".join(client.message_chunk(chunk) for chunk in chunks) + client.end_of_data()
    assert written == wire_bytes


def test_two_messages_on_one_connection_start_at_a_line_start() -> None:
    wire = Wire()
    wire.greet()
    first = send_message(wire, [b"ends mid-line"])
    second = send_message(wire, [b".leading dot\r\n"])
    assert first == b"ends mid-line\r\n.\r\n"
    assert second == b"..leading dot\r\n.\r\n"
    assert wire.server.messages == [b"ends mid-line\r\n", b".leading dot\r\n"]


def test_message_size_in_the_transcript_counts_unstuffed_octets() -> None:
    wire = Wire()
    wire.greet()
    send_message(wire, [b".\r\n", b"..\r\n"])
    assert "<message data, 7 octets>" in [line.text for line in wire.client.transcript]


LINE = st.lists(
    st.sampled_from([b".", b"..", b"x", b" ", b"\xff", b"\x00", b"\t", b"abc", b"\xc3\xa9"]),
    max_size=12,
).map(b"".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(LINE, max_size=12),
    last_line_ends=st.booleans(),
    cuts=st.lists(st.integers(0, 200), max_size=10),
    server_cuts=st.lists(st.integers(0, 250), max_size=10),
)
def test_any_body_cut_anywhere_arrives_identical(
    lines: list[bytes], last_line_ends: bool, cuts: list[int], server_cuts: list[int]
) -> None:
    message = b"\r\n".join(lines) + (b"\r\n" if lines and last_line_ends else b"")

    def cut_for_server(data: bytes) -> list[bytes]:
        return split_at(data, server_cuts)

    wire = Wire(AcceptAll(chunking=cut_for_server))
    wire.greet()
    send_message(wire, split_at(message, cuts))
    assert wire.server.messages == [stored(message)]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"x", b"MAIL"]), max_size=30).map(
        b"".join
    ),
    cuts=st.lists(st.integers(0, 120), max_size=10),
)
def test_no_bare_cr_or_lf_ever_goes_out(body: bytes, cuts: list[int]) -> None:
    """Whatever was stored: a strict server (bare line ends refused) takes the message,
    and a lenient one that ends lines at LF finds the end of the data only at the end."""
    wire = Wire()
    wire.greet()
    written = send_message(wire, split_at(body, cuts))
    assert written.count(b"\n") == written.count(b"\r\n") == written.count(b"\r")
    lenient = b"\n" + written.replace(b"\r\n", b"\n")  # after the DATA line's own end
    assert lenient.find(b"\n.\n") == len(lenient) - 3
    normalized = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    assert wire.server.messages == [stored(normalized)]
