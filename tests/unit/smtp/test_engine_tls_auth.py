"""STARTTLS (RFC 3207) and the protocol side of AUTH (RFC 4954)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from smtp_harness import HOST, AcceptAll

from hato.smtp import (
    PAUSED,
    AuthResponse,
    AuthStart,
    CommandRejected,
    Event,
    Hello,
    LocalProtocolError,
    MailFrom,
    Reply,
    StartTls,
    State,
    reply,
)

Session = Callable[..., AcceptAll]

GREETED = b"EHLO client.example\r\n"
READY = "220 2.0.0 Ready to start TLS"


def keywords(lines: list[str]) -> list[str]:
    return [line[4:] for line in lines[1:]]


def test_starttls_is_advertised_until_active(session: Session) -> None:
    smtp = session(tls_available=True)
    assert "STARTTLS" in keywords(smtp.feed(GREETED))
    assert smtp.feed(b"STARTTLS\r\n") == [READY]
    smtp.conn.tls_established()
    assert smtp.conn.tls_active
    lines = smtp.feed(GREETED)
    assert lines[0] == f"250-{HOST}"
    assert "STARTTLS" not in keywords(lines)
    assert smtp.feed(b"STARTTLS\r\n") == ["503 5.5.1 Error: TLS already active"]


def test_commands_pipelined_after_starttls_are_discarded(session: Session) -> None:
    smtp = session(tls_available=True)
    smtp.feed(GREETED)
    assert smtp.feed(b"STARTTLS\r\nMAIL FROM:<x@y.example>\r\n") == [READY]
    assert smtp.conn.state is State.TLS
    assert smtp.last is PAUSED
    # Plaintext that arrives before the handshake is done is dropped too.
    assert smtp.feed(b"RCPT TO:<victim@y.example>\r\n") == []
    smtp.conn.tls_established()
    assert smtp.conn.state is State.CONNECTED
    assert smtp.conn.helo is None
    assert smtp.conn.transaction is None
    assert smtp.feed(b"") == []
    assert smtp.feed(b"MAIL FROM:<a@b.example>\r\n") == ["503 5.5.1 Error: send HELO/EHLO first"]
    assert smtp.of_type(MailFrom) == []
    assert smtp.of_type(StartTls) == [StartTls()]


def test_starttls_refused_by_the_caller_goes_on_in_plaintext(session: Session) -> None:
    smtp = session(
        tls_available=True,
        answers={StartTls: lambda _e: reply(454, "4.7.0", "TLS not available")},
    )
    smtp.feed(GREETED)
    assert smtp.feed(b"STARTTLS\r\nNOOP\r\n") == ["454 4.7.0 TLS not available", "250 2.0.0 Ok"]
    assert smtp.conn.state is State.GREETED
    with pytest.raises(LocalProtocolError):
        smtp.conn.tls_established()


@pytest.mark.parametrize(
    ("tls", "before", "command", "expected"),
    [
        (False, GREETED, b"STARTTLS", "502 5.5.1 Error: command not implemented"),
        (True, GREETED, b"STARTTLS now", "501 5.5.4 Syntax: STARTTLS (no parameters)"),
        (True, b"", b"STARTTLS", "503 5.5.1 Error: send HELO/EHLO first"),
        (
            True,
            GREETED + b"MAIL FROM:<a@b.example>\r\n",
            b"STARTTLS",
            "503 5.5.1 Error: MAIL transaction in progress",
        ),
    ],
)
def test_starttls_refused(
    session: Session, tls: bool, before: bytes, command: bytes, expected: str
) -> None:
    smtp = session(tls_available=tls)
    smtp.feed(before)
    assert smtp.feed(command + b"\r\n") == [expected]
    assert smtp.of_type(StartTls) == []


def test_tls_established_without_starttls_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        AcceptAll(tls_available=True).conn.tls_established()


# -- AUTH ----------------------------------------------------------------------------------

MECHANISMS = ("PLAIN", "LOGIN")


def login_answers() -> dict[type, Callable[[Event], Reply]]:
    challenges: Iterator[Reply] = iter(
        [
            reply(334, None, "VXNlcm5hbWU6"),
            reply(334, None, "UGFzc3dvcmQ6"),
            reply(235, "2.7.0", "Authentication successful"),
        ]
    )
    return {AuthStart: lambda _e: next(challenges), AuthResponse: lambda _e: next(challenges)}


def test_auth_is_advertised(session: Session) -> None:
    smtp = session(auth_mechanisms=MECHANISMS)
    assert "AUTH PLAIN LOGIN" in keywords(smtp.feed(GREETED))


def test_auth_plain_with_initial_response(session: Session) -> None:
    smtp = session(auth_mechanisms=MECHANISMS)
    smtp.feed(GREETED)
    assert smtp.feed(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n") == [
        "235 2.7.0 Authentication successful"
    ]
    assert smtp.of_type(AuthStart) == [
        AuthStart(mechanism="PLAIN", initial_response="AGFsaWNlAHNlY3JldA==")
    ]
    assert smtp.conn.authenticated
    assert smtp.conn.state is State.GREETED
    assert not any(k.startswith("AUTH") for k in keywords(smtp.feed(GREETED)))
    assert smtp.feed(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n") == [
        "503 5.5.1 Error: already authenticated"
    ]


def test_auth_plain_empty_challenge(session: Session) -> None:
    smtp = session(auth_mechanisms=MECHANISMS)
    smtp.feed(GREETED)
    assert smtp.feed(b"auth plain\r\n") == ["334 "]
    assert smtp.conn.state is State.AUTH
    assert smtp.feed(b"AGFsaWNlAHNlY3JldA==\r\n") == ["235 2.7.0 Authentication successful"]
    assert smtp.of_type(AuthStart) == [AuthStart(mechanism="PLAIN", initial_response=None)]
    assert smtp.of_type(AuthResponse) == [AuthResponse(data="AGFsaWNlAHNlY3JldA==")]
    assert smtp.conn.authenticated


def test_auth_login_dialogue(session: Session) -> None:
    smtp = session(auth_mechanisms=MECHANISMS, answers=login_answers())
    smtp.feed(GREETED)
    assert smtp.feed(
        b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nMAIL FROM:<alice@example.org>\r\n"
    ) == [
        "334 VXNlcm5hbWU6",
        "334 UGFzc3dvcmQ6",
        "235 2.7.0 Authentication successful",
        "250 2.1.0 Ok",
    ]
    assert [e.data for e in smtp.of_type(AuthResponse)] == ["YWxpY2U=", "c2VjcmV0"]
    assert smtp.conn.authenticated


def test_auth_lines_are_never_commands(session: Session) -> None:
    smtp = session(auth_mechanisms=MECHANISMS, answers=login_answers())
    smtp.feed(GREETED)
    smtp.feed(b"AUTH LOGIN\r\nQUIT\r\n")
    assert not smtp.conn.closed
    assert smtp.of_type(AuthResponse) == [AuthResponse(data="QUIT")]


def test_star_cancels_the_exchange(session: Session) -> None:
    smtp = session(auth_mechanisms=MECHANISMS)
    smtp.feed(GREETED)
    assert smtp.feed(b"AUTH LOGIN\r\n*\r\nNOOP\r\n") == [
        "334 ",
        "501 5.7.0 Authentication aborted",
        "250 2.0.0 Ok",
    ]
    assert smtp.conn.state is State.GREETED
    assert not smtp.conn.authenticated
    assert smtp.of_type(AuthResponse) == []


def test_failed_authentication(session: Session) -> None:
    fail = {AuthStart: lambda _e: reply(535, "5.7.8", "Authentication credentials invalid")}
    smtp = session(auth_mechanisms=MECHANISMS, answers=fail)
    smtp.feed(GREETED)
    assert (
        smtp.feed(b"AUTH PLAIN Zm9v\r\nAUTH PLAIN Zm9v\r\n")
        == ["535 5.7.8 Authentication credentials invalid"] * 2
    )
    assert not smtp.conn.authenticated
    assert smtp.conn.state is State.GREETED


@pytest.mark.parametrize(
    ("mechanisms", "before", "command", "expected"),
    [
        ((), GREETED, b"AUTH PLAIN Zm9v", "502 5.5.1 Error: authentication not enabled"),
        (MECHANISMS, GREETED, b"AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type"),
        (("PLAIN",), GREETED, b"AUTH LOGIN", "504 5.5.4 Unrecognized authentication type"),
        (MECHANISMS, GREETED, b"AUTH", "501 5.5.4 Syntax: AUTH mechanism [initial-response]"),
        (MECHANISMS, GREETED, b"AUTH PLAIN a b", "501 5.5.4 Syntax: AUTH mechanism"),
        (MECHANISMS, b"", b"AUTH PLAIN Zm9v", "503 5.5.1 Error: send HELO/EHLO first"),
        (
            MECHANISMS,
            GREETED + b"MAIL FROM:<a@b.example>\r\n",
            b"AUTH PLAIN Zm9v",
            "503 5.5.1 Error: MAIL transaction in progress",
        ),
    ],
)
def test_auth_refused(
    session: Session, mechanisms: tuple[str, ...], before: bytes, command: bytes, expected: str
) -> None:
    smtp = session(auth_mechanisms=mechanisms)
    smtp.feed(before)
    (line,) = smtp.feed(command + b"\r\n")
    assert line.startswith(expected)
    assert smtp.of_type(AuthStart) == []


def test_starttls_forgets_authentication(session: Session) -> None:
    # RFC 3207 4.2: nothing learnt from the client before TLS survives the handshake.
    smtp = session(tls_available=True, auth_mechanisms=MECHANISMS)
    smtp.feed(GREETED + b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
    assert smtp.conn.authenticated
    assert smtp.feed(b"STARTTLS\r\n") == [READY]
    smtp.conn.tls_established()
    assert not smtp.conn.authenticated
    assert "AUTH PLAIN LOGIN" in keywords(smtp.feed(GREETED))
    assert smtp.of_type(Hello)[-1] == Hello(name="client.example", extended=True)


def test_auth_before_tls_says_encryption_is_required(session: Session) -> None:
    # RFC 4954 6: the mechanisms are there, but only inside TLS (so not advertised yet).
    smtp = session(tls_available=True)
    smtp.conn.auth_needs_tls = True
    smtp.feed(GREETED)
    assert smtp.feed(b"AUTH PLAIN Zm9v\r\n") == [
        "538 5.7.11 Encryption required for requested authentication mechanism"
        " (issue STARTTLS first)"
    ]
    assert smtp.of_type(AuthStart) == []


def test_a_too_long_auth_line_ends_the_exchange(session: Session) -> None:
    smtp = session(auth_mechanisms=MECHANISMS)
    smtp.feed(GREETED)
    assert smtp.feed(b"AUTH LOGIN\r\n") == ["334 "]
    assert smtp.feed(b"QUFB" * 4000 + b"\r\nNOOP\r\n") == [
        "500 5.5.6 Error: line too long (limit 12288 octets)",
        "250 2.0.0 Ok",
    ]
    assert smtp.conn.state is State.GREETED
    assert smtp.of_type(AuthResponse) == []
    (refused,) = smtp.of_type(CommandRejected)
    assert refused.command == "AUTH"


@pytest.mark.parametrize(
    ("mechanisms", "answers"),
    [
        ((), {}),  # AUTH not offered: 502
        (MECHANISMS, {AuthStart: lambda _e: reply(501, "5.5.2", "Cannot decode AUTH response")}),
        (MECHANISMS, {AuthStart: lambda _e: reply(535, "5.7.8", "Authentication failed")}),
    ],
)
def test_lines_after_a_refused_auth_are_neither_echoed_nor_recorded(
    session: Session, mechanisms: tuple[str, ...], answers: dict[type, Callable[[Event], Reply]]
) -> None:
    smtp = session(auth_mechanisms=mechanisms, answers=answers)
    smtp.conn.transcript = []
    smtp.feed(GREETED)
    replies = smtp.feed(b"AUTH LOGIN dXNlcg==\r\nc2VjcmV0LXBhc3N3b3Jk\r\n\r\nNOOP\r\nc2Vj\r\n")
    assert replies[1:] == [
        "500 5.5.2 Error: command unrecognized (not shown: it may be an AUTH answer)",
        "500 5.5.2 Error: empty command",
        "250 2.0.0 Ok",
        # A known command ends the precaution.
        '500 5.5.2 Command unrecognized: "c2Vj" (type HELP for the list)',
    ]
    said = [text for side, text in smtp.conn.transcript if side == "C"]
    assert said[1:] == ["AUTH LOGIN ****", "****", "", "NOOP", "c2Vj"]
    assert all("c2VjcmV0" not in text for _, text in smtp.conn.transcript)
    refused = [r.command for r in smtp.of_type(CommandRejected)]
    assert "C2VJCMV0LXBHC3N3B3JK" not in refused and "****" in refused


def test_a_successful_auth_ends_the_precaution(session: Session) -> None:
    smtp = session(auth_mechanisms=MECHANISMS)
    smtp.feed(GREETED)
    assert smtp.feed(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nFOO\r\n") == [
        "235 2.7.0 Authentication successful",
        '500 5.5.2 Command unrecognized: "FOO" (type HELP for the list)',
    ]


@pytest.mark.parametrize("response", [b"YWxp\x00Y2U=", b"YWxp\xffY2U="])
def test_auth_response_that_is_no_text_ends_the_exchange(response: bytes) -> None:
    smtp = AcceptAll(auth_mechanisms=("PLAIN", "LOGIN"))
    smtp.conn.transcript = []
    smtp.feed(b"EHLO client.example\r\nAUTH LOGIN\r\n")
    assert smtp.conn.state is State.AUTH
    (answer,) = smtp.feed(response + b"\r\n")
    assert answer.startswith("501 5.5.2 Error: AUTH response has ")
    assert smtp.conn.state is State.GREETED
    assert not smtp.conn.authenticated
    # What the client sent in answer to a challenge is a secret, even when refused.
    assert all("Y2U" not in text for _side, text in smtp.conn.transcript)
    assert smtp.feed(b"NOOP\r\n") == ["250 2.0.0 Ok"]
