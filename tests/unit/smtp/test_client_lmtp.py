"""``ClientConnection(lmtp=True)``: LHLO, and one reply per accepted recipient after the
data (RFC 2033 4.1-4.2), fed as an LMTP server's bytes would arrive."""

from __future__ import annotations

import pytest

from hato.smtp import ClientConnection, ClientState, Command, LocalProtocolError, Response

LHLO_REPLY = b"250-lmtp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"


def replies(conn: ClientConnection, data: bytes) -> list[Response]:
    conn.receive_data(data)
    found = []
    while (response := conn.next_reply()) is not None:
        found.append(response)
    return found


def greeted() -> ClientConnection:
    conn = ClientConnection(lmtp=True)
    assert [r.reply.code for r in replies(conn, b"220 lmtp.test LMTP ready\r\n")] == [220]
    assert conn.lhlo("mx.test") == b"LHLO mx.test\r\n"
    [answer] = replies(conn, LHLO_REPLY)
    assert answer.command is Command.LHLO
    assert conn.state is ClientState.GREETED and conn.pipelining
    return conn


def test_ehlo_and_helo_are_refused_on_lmtp_and_lhlo_on_smtp() -> None:
    conn = ClientConnection(lmtp=True)
    replies(conn, b"220 ready\r\n")
    with pytest.raises(LocalProtocolError, match="LHLO"):
        conn.ehlo("mx.test")
    with pytest.raises(LocalProtocolError, match="LHLO"):
        conn.helo("mx.test")
    smtp = ClientConnection()
    replies(smtp, b"220 ready\r\n")
    with pytest.raises(LocalProtocolError, match="SMTP connection"):
        smtp.lhlo("mx.test")


def test_one_reply_per_accepted_recipient_in_rcpt_order() -> None:
    conn = greeted()
    group = conn.mail("a@example.org") + conn.rcpt("b@example.com")
    group += conn.rcpt("nobody@example.com") + conn.rcpt("c@example.com") + conn.data()
    assert group.count(b"\r\n") == 5
    answers = replies(
        conn,
        b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 <nobody@example.com> User doesn't exist\r\n"
        b"250 2.1.5 OK\r\n354 OK\r\n",
    )
    assert [a.reply.code for a in answers] == [250, 250, 550, 250, 354]
    conn.message_chunk(b"Subject: x\r\n\r\nhi\r\n")
    assert conn.end_of_data() == b".\r\n"
    assert conn.awaiting == (Command.END_OF_DATA, Command.END_OF_DATA)
    final = replies(
        conn,
        b"250 2.0.0 <b@example.com> Saved\r\n452 4.2.2 <c@example.com> Quota exceeded\r\n",
    )
    assert [(f.command, f.argument, f.reply.code) for f in final] == [
        (Command.END_OF_DATA, "b@example.com", 250),
        (Command.END_OF_DATA, "c@example.com", 452),
    ]
    assert final[1].reply.enhanced == "4.2.2"
    assert conn.state is ClientState.GREETED and not conn.awaiting
    # The transcript names the dot once, and each reply as the server said it.
    texts = [line.text for line in conn.transcript]
    assert texts.count(".") == 1
    assert "452 4.2.2 <c@example.com> Quota exceeded" in texts


def test_replies_split_anywhere_are_matched_alike() -> None:
    conn = greeted()
    conn.mail("a@example.org")
    conn.rcpt("b@example.com")
    conn.rcpt("c@example.com")
    conn.data()
    replies(conn, b"250 OK\r\n250 OK\r\n250 OK\r\n354 go\r\n")
    conn.end_of_data()
    wire = b"250 2.0.0 <b@example.com> Saved\r\n250 2.0.0 <c@example.com> Saved\r\n"
    found = []
    for octet in range(len(wire)):
        found += replies(conn, wire[octet : octet + 1])
    assert [f.argument for f in found] == ["b@example.com", "c@example.com"]


def test_a_second_transaction_counts_only_its_own_recipients() -> None:
    conn = greeted()
    for recipients in (["b@example.com", "c@example.com"], ["d@example.com"]):
        conn.mail("a@example.org")
        for address in recipients:
            conn.rcpt(address)
        conn.data()
        replies(conn, b"250 OK\r\n" * (len(recipients) + 1) + b"354 go\r\n")
        conn.end_of_data()
        assert len(conn.awaiting) == len(recipients)
        final = replies(conn, b"250 2.0.0 Saved\r\n" * len(recipients))
        assert [f.argument for f in final] == recipients


def test_data_taken_without_an_accepted_recipient_still_gets_one_reply() -> None:
    conn = greeted()
    conn.mail("a@example.org")
    conn.rcpt("nobody@example.com")
    conn.data()
    replies(conn, b"250 OK\r\n550 5.1.1 unknown\r\n354 go\r\n")
    conn.end_of_data()
    assert conn.awaiting == (Command.END_OF_DATA,)
    [final] = replies(conn, b"250 OK\r\n")
    assert final.argument == ""
