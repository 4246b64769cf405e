"""The server engine's transcript: command and reply lines, never data or AUTH secrets."""

from __future__ import annotations

from hato.smtp import (
    NEED_DATA,
    AuthResponse,
    AuthStart,
    DataCommand,
    Hello,
    MailFrom,
    MessageEnd,
    RcptTo,
    ServerConnection,
    reply,
)


def converse(conn: ServerConnection, data: bytes) -> None:
    """Feed ``data`` and answer every event as an accepting server would."""
    conn.receive_data(data)
    challenges = 0
    while (event := conn.next_event()) is not NEED_DATA:
        match event:
            case Hello() | MailFrom() | RcptTo() | MessageEnd():
                conn.send_reply(reply(250, "2.0.0", "Ok"))
            case DataCommand():
                conn.send_reply(reply(354, None, "Go ahead"))
            case AuthStart(initial_response=None) | AuthResponse() if challenges == 0:
                challenges += 1
                conn.send_reply(reply(334, None, "VXNlcm5hbWU6"))
            case AuthStart() | AuthResponse():
                conn.send_reply(reply(235, "2.7.0", "Authentication successful"))
            case _:
                pass


def test_transcript_is_off_unless_asked_for() -> None:
    conn = ServerConnection("mx.example", auth_mechanisms=("PLAIN", "LOGIN"))
    converse(conn, b"EHLO c\r\n")
    assert conn.transcript is None


def test_commands_and_replies_without_data_or_secrets() -> None:
    conn = ServerConnection("mx.example", auth_mechanisms=("PLAIN", "LOGIN"))
    conn.transcript = []
    conn.send_greeting(reply(220, None, "mx.example ESMTP"))
    converse(conn, b"EHLO c\r\nAUTH LOGIN\r\nc2VjcmV0dXNlcg==\r\n")
    converse(conn, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    converse(conn, b"Subject: x\r\n\r\nconfidential\r\n.\r\n")
    converse(conn, b"BDAT 5 LAST\r\nhello")
    assert conn.transcript[:3] == [
        ("S", "220 mx.example ESMTP"),
        ("C", "EHLO c"),
        ("S", "250 2.0.0 Ok"),
    ]
    said = [f"{d}: {t}" for d, t in conn.transcript]
    assert said[said.index("C: AUTH LOGIN") :][:4] == [
        "C: AUTH LOGIN",
        "S: 334 ****",
        "C: ****",
        "S: 235 2.7.0 Authentication successful",
    ]
    assert "C: DATA" in said and "S: 354 Go ahead" in said and "C: BDAT 5 LAST" in said
    text = "\n".join(said)
    assert "confidential" not in text and "hello" not in text and "c2Vj" not in text


def test_initial_response_is_masked() -> None:
    conn = ServerConnection("mx.example", auth_mechanisms=("PLAIN",))
    conn.transcript = []
    converse(conn, b"EHLO c\r\nAUTH PLAIN AGFAAHNlY3JldA==\r\n")
    assert ("C", "AUTH PLAIN ****") in conn.transcript
    assert not any("AGFA" in text for _, text in conn.transcript)
