"""SMTP AUTH (RFC 4954, PLAIN and LOGIN) and the submission listener (RFC 6409) against a
real ``hato serve``: STARTTLS first, AUTH before MAIL, the sender the user owns, Date: and
Message-ID: added, brute-force limits, and swaks as an outside client."""

from __future__ import annotations

import base64
import shutil
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

HATO = Path(sys.executable).with_name("hato")
USER = "alice@localhost"
PASSWORD = "correct horse battery"
# example.net goes to a closed loopback port: accepted mail for it stays queued, never leaves.
ROUTES = 'relay.transports=["example.net 127.0.0.1:9", "relay.test.example 127.0.0.1:9"]'
MESSAGE = b"Subject: submitted\r\n\r\nhello\r\n"


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def server(hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    process = hato_factory(
        extra_args=("-o", ROUTES, "-o", "auth.failure_delay=0.1", "-o", "auth.max_failures=3")
    )
    process.start()
    process.add_user(USER, PASSWORD)
    process.add_user("bob@localhost", "bobs password")
    return process


def submission(hato: HatoProcess) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", hato.submission_port, timeout=10)
    client.ehlo("client.example")
    client.starttls(context=unverified())
    client.ehlo("client.example")
    return client


def stored(hato: HatoProcess, count: int = 1) -> bytes:
    queued = hato.poll(lambda: len(hato.events("queued")) >= count and hato.events("queued"))
    _, data = hato.message(str(queued[count - 1]["queue_id"]))
    return data


def test_submission_with_plain_relays_and_delivers(server: HatoProcess) -> None:
    with submission(server) as client:
        assert "PLAIN" in client.esmtp_features["auth"].split()
        code, _ = client.login(USER, PASSWORD)
        assert code == 235
        refused = client.sendmail(USER, ["friend@example.net", "bob@localhost"], MESSAGE)
        assert refused == {}
    data = stored(server)
    assert b"with ESMTPSA" in data
    message, _ = server.message(str(server.events("queued")[0]["queue_id"]))
    assert message.envelope.auth == USER
    event = server.wait_for_event("auth", user=USER)
    assert event["mechanism"] == "PLAIN" and event["client_ip"] == "127.0.0.1"


def test_auth_login_works(server: HatoProcess) -> None:
    with submission(server) as client:
        client.user, client.password = USER, PASSWORD
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235
        assert client.sendmail(USER, ["friend@example.net"], MESSAGE) == {}
    server.wait_for_event("auth", user=USER, mechanism="LOGIN")


def test_wrong_password_is_535_and_logged_without_password(server: HatoProcess) -> None:
    with submission(server) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            client.login(USER, "not-the-password")
        assert failure.value.smtp_code == 535
    rejected = server.poll(lambda: server.events("reject", command="AUTH"))
    assert USER in rejected[0]["reason"]
    assert rejected[0]["client_ip"] == "127.0.0.1"
    assert "not-the-password" not in server.events_path.read_text()
    assert "not-the-password" not in server.stderr()


def test_auth_not_offered_before_starttls(server: HatoProcess) -> None:
    for port in (server.port, server.submission_port):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            assert not client.has_extn("auth")
            assert client.has_extn("starttls")
    # Inside TLS on the plain port AUTH is offered too.
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.starttls(context=unverified())
        client.ehlo("client.example")
        assert client.has_extn("auth")


def test_auth_offered_without_tls_when_allowed(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = hato_factory(extra_args=("-o", "auth.allow_plaintext=true"))
    hato.start()
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]


def test_mail_before_auth_on_submission_is_530(server: HatoProcess) -> None:
    with submission(server) as client:
        code, text = client.mail(USER)
        assert code == 530 and text.startswith(b"5.7.0")


def test_sender_not_owned_is_553(server: HatoProcess) -> None:
    with submission(server) as client:
        client.login(USER, PASSWORD)
        code, text = client.mail("bob@localhost")
        assert code == 553
        assert text == (
            b"5.7.1 <bob@localhost>: Sender address rejected: not owned by user alice@localhost"
        )
        code, _ = client.mail("ALICE@localhost")  # case-insensitive
        assert code == 250


def test_an_alias_leading_to_the_user_is_owned(server: HatoProcess) -> None:
    done = subprocess.run(
        [str(HATO), "alias", "add", "sales@localhost", USER, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with submission(server) as client:
        client.login(USER, PASSWORD)
        assert client.mail("sales@localhost")[0] == 250
        client.rset()
        assert client.mail("")[0] == 250  # the null sender is nobody's identity
        client.rset()
        assert client.mail("bob@localhost")[0] == 553


@pytest.mark.parametrize("match", ["domain", "any"])
def test_sender_login_match_modes(hato_factory: Callable[..., HatoProcess], match: str) -> None:
    hato = hato_factory(extra_args=("-o", ROUTES, "-o", f'auth.sender_login_match="{match}"'))
    hato.start()
    hato.add_user(USER, PASSWORD)
    with submission(hato) as client:
        client.login(USER, PASSWORD)
        assert client.mail("bob@localhost")[0] == 250  # same domain: allowed by both
        client.rset()
        foreign = client.mail("alice@example.net")[0]
        assert foreign == (553 if match == "domain" else 250)


def test_date_and_message_id_are_added_when_missing(server: HatoProcess) -> None:
    with submission(server) as client:
        client.login(USER, PASSWORD)
        # Remote recipients: the message stays in the spool (example.net is never reached).
        client.sendmail(USER, ["friend@example.net"], MESSAGE)
        kept = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <mine@x>\r\n" + MESSAGE
        client.sendmail(USER, ["friend@example.net"], kept)
    first = stored(server, 1)
    header = first.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nDate: " in header and b"\r\nMessage-ID: <" in header
    assert header.index(b"Received:") < header.index(b"\r\nDate: ")
    second = stored(server, 2)
    assert second.count(b"Date:") == 1 and second.count(b"Message-ID:") == 1
    assert b"Message-ID: <mine@x>" in second


def test_brute_force_gets_421_and_ip_is_refused(server: HatoProcess) -> None:
    with submission(server) as client:
        for _ in range(3):
            code, _ = client.docmd("AUTH", "PLAIN " + plain(USER, "wrong"))
            assert code == 535
        code, text = client.docmd("AUTH", "PLAIN " + plain(USER, "wrong"))
        assert code == 421 and text.startswith(b"4.7.0")
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP("127.0.0.1", server.port, timeout=10)
    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error.startswith(b"4.7.0")


def plain(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def test_plain_with_other_authzid_fails_and_malformed_is_501(server: HatoProcess) -> None:
    with submission(server) as client:
        code, _ = client.docmd("AUTH", "PLAIN " + plain(USER, PASSWORD, authzid="bob@localhost"))
        assert code == 535
        code, text = client.docmd("AUTH", "PLAIN not*base64")
        assert code == 501 and text.startswith(b"5.5.2")
        code, _ = client.docmd("AUTH", "PLAIN")
        assert code == 334
        code, _ = client.docmd(plain(USER, PASSWORD, authzid=USER))
        assert code == 235


SWAKS = shutil.which("swaks")


def swaks(*args: str, sender: str = USER) -> subprocess.CompletedProcess[str]:
    if SWAKS is None:
        pytest.skip("swaks is not installed: AUTH not tested against it (apt-get install swaks)")
    command = [SWAKS, "--from", sender, "--to", "bob@localhost", "--auth-user", USER, *args]
    command += ["--auth-password", PASSWORD]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth_on_submission(server: HatoProcess, mechanism: str) -> None:
    done = swaks("--server", f"127.0.0.1:{server.submission_port}", "--tls", "--auth", mechanism)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "235 2.7.0 Authentication successful" in done.stdout
    server.wait_for_event("auth", user=USER, mechanism=mechanism)


def test_swaks_implicit_tls_auth_plain(server: HatoProcess) -> None:
    done = swaks("--server", f"127.0.0.1:{server.tls_port}", "--tlsc", "--auth", "PLAIN")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "235 2.7.0 Authentication successful" in done.stdout


# -- the sender check on every listener, and what "owned" means ----------------------------


def logged_in(hato: HatoProcess, listener: str) -> smtplib.SMTP:
    """A client logged in as USER on ``listener``: submission, port 25 or implicit TLS."""
    client: smtplib.SMTP
    if listener == "implicit-tls":
        client = smtplib.SMTP_SSL("127.0.0.1", hato.tls_port, timeout=10, context=unverified())
        client.ehlo("client.example")
    else:
        port = hato.submission_port if listener == "submission" else hato.port
        client = smtplib.SMTP("127.0.0.1", port, timeout=10)
        client.ehlo("client.example")
        client.starttls(context=unverified())
        client.ehlo("client.example")
    assert client.login(USER, PASSWORD)[0] == 235
    return client


LISTENERS = ["submission", "port-25", "implicit-tls"]


@pytest.mark.parametrize("listener", LISTENERS)
def test_an_authenticated_sender_is_checked_on_every_listener(
    server: HatoProcess, listener: str
) -> None:
    with logged_in(server, listener) as client:
        code, text = client.mail("bob@localhost")
        assert (code, text) == (
            553,
            b"5.7.1 <bob@localhost>: Sender address rejected: not owned by user alice@localhost",
        )
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail("bob@localhost", ["friend@example.net"], MESSAGE)
        client.rset()
        assert client.sendmail(USER, ["friend@example.net"], MESSAGE) == {}
    queued = server.poll(lambda: server.events("queued"))
    assert [event["reverse_path"] for event in queued] == [USER]


def test_swaks_on_implicit_tls_cannot_send_as_another_user(server: HatoProcess) -> None:
    address = f"127.0.0.1:{server.tls_port}"
    done = swaks("--server", address, "--tlsc", "--auth", "PLAIN", sender="bob@localhost")
    assert done.returncode != 0
    assert "553 5.7.1 <bob@localhost>: Sender address rejected" in done.stdout
    assert server.events("queued") == []


def test_a_catch_all_does_not_make_its_target_own_the_domain(server: HatoProcess) -> None:
    # The catch-all of localhost (seeded by the harness) now leads to alice as well.
    for source in ("@localhost", "sales@localhost"):
        added = server.cli("alias", "add", source, USER)
        assert added.returncode == 0, added.stdout + added.stderr
    for listener in LISTENERS:
        with logged_in(server, listener) as client:
            code, text = client.mail("nobody-in-particular@localhost")
            assert code == 553, (listener, text)
            client.rset()
            assert client.mail("sales@localhost")[0] == 250  # an alias by its own name
            client.rset()
            assert client.mail("alice+lists@localhost")[0] == 250  # the login, with a tag
            client.rset()
            assert client.mail("ALICE@LOCALHOST")[0] == 250


def test_sender_login_match_delivered_lets_a_catch_all_target_use_the_domain(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = hato_factory(extra_args=("-o", ROUTES, "-o", 'auth.sender_login_match="delivered"'))
    hato.start()
    hato.add_user(USER, PASSWORD)
    hato.add_user("bob@localhost", "bobs password")
    added = hato.cli("alias", "add", "@localhost", USER)
    assert added.returncode == 0, added.stdout + added.stderr
    with logged_in(hato, "port-25") as client:
        assert client.mail("nobody-in-particular@localhost")[0] == 250
        client.rset()
        assert client.mail("bob@localhost")[0] == 553  # bob's own mailbox is not alice's


# -- the ban, long lines, secrets after a refused AUTH, and what comes before TLS ----------


def test_a_ban_reaches_sessions_opened_before_it(server: HatoProcess) -> None:
    # Three sessions wait, logged out, while a fourth uses up the failures (max 3).
    waiting = [submission(server) for _ in range(3)]
    with submission(server) as guesser:
        for _ in range(3):
            assert guesser.docmd("AUTH", "PLAIN " + plain(USER, "wrong"))[0] == 535
        code, _ = guesser.docmd("AUTH", "PLAIN " + plain(USER, "wrong"))
        assert code == 421
    for client in waiting:
        # Not even the right password gets in during the ban, nor another guess.
        code, text = client.docmd("AUTH", "PLAIN " + plain(USER, PASSWORD))
        assert (code, text[:5]) == (421, b"4.7.0"), text
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    server.poll(lambda: len(server.events("reject", command="AUTH")) == 4 + 3, what="refusals")
    assert server.events("auth") == []
    assert len(server.events("reject", command="CONNECT")) == 0


def test_a_login_exchange_started_before_the_ban_ends_with_it(server: HatoProcess) -> None:
    with submission(server) as waiting, submission(server) as guesser:
        assert waiting.docmd("AUTH", "LOGIN")[0] == 334
        assert waiting.docmd(base64.b64encode(USER.encode()).decode())[0] == 334
        for _ in range(4):
            code, _ = guesser.docmd("AUTH", "PLAIN " + plain(USER, "wrong"))
        assert code == 421
        code, _ = waiting.docmd(base64.b64encode(PASSWORD.encode()).decode())
        assert code == 421
    assert server.events("auth") == []


def plaintext_auth(hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    hato = hato_factory(
        extra_args=("-o", "auth.allow_plaintext=true", "-o", "auth.failure_delay=0")
    )
    hato.start()
    hato.add_user(USER, PASSWORD)
    return hato


def test_a_too_long_auth_line_ends_the_exchange(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    hato = plaintext_auth(hato_factory)
    client = smtp_connect(hato.port)
    assert client.read_reply()[0].startswith("220 ")
    assert client.reply("EHLO client.example") == "250 HELP"
    assert client.reply("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert client.reply("QUFB" * 4000) == "500 5.5.6 Error: line too long (limit 12288 octets)"
    # Out of the exchange: a command is a command again, not a SASL answer.
    assert client.reply("NOOP") == "250 2.0.0 Ok"
    assert client.reply("AUTH PLAIN " + plain(USER, PASSWORD)) == (
        "235 2.7.0 Authentication successful"
    )


def leaked(hato: HatoProcess, secrets: list[str]) -> list[str]:
    """The secrets (and their upper-case forms, as a verb is logged) found in any sink."""
    hato.stop()  # the trace and the event log are written out
    sinks = {
        "events": hato.events_path.read_bytes(),
        "stderr": hato.stderr().encode(),
        "trace": b"".join(p.read_bytes() for p in hato.data_dir.glob("trace.sqlite3*")),
    }
    return [
        f"{form[:12]}... in {name}"
        for secret in secrets
        for form in {secret, secret.upper(), secret[:24], secret.upper()[:24]}
        for name, data in sinks.items()
        if form.encode() in data
    ]


@pytest.mark.parametrize("offered", [False, True])
def test_lines_after_a_refused_auth_are_never_logged(
    hato_factory: Callable[..., HatoProcess],
    smtp_connect: Callable[[int], SmtpLineClient],
    offered: bool,
) -> None:
    hato = plaintext_auth(hato_factory) if offered else hato_factory()
    if not offered:
        hato.start()
    user64 = base64.b64encode(b"someone-secret@localhost").decode()
    password64 = base64.b64encode(b"the password 8812, never logged").decode()
    client = smtp_connect(hato.port)
    assert client.read_reply()[0].startswith("220 ")
    assert client.reply("EHLO client.example") == "250 HELP"
    # Refused outright (AUTH not offered) or after the user name (which is not base64).
    first = "AUTH LOGIN" if not offered else "AUTH LOGIN " + user64 + "*"
    client.send(f"{first}\r\n{user64}\r\n{password64}\r\nNOOP\r\n".encode())
    replies = [client.read_reply()[-1] for _ in range(4)]
    assert replies[0][:3] in ("538", "501"), replies
    assert [r[:3] for r in replies[1:]] == ["500", "500", "250"], replies
    assert all(user64 not in r and password64[:20] not in r.upper() for r in replies), replies
    # The next unknown command is shown again.
    assert client.reply("FOO") == '500 5.5.2 Command unrecognized: "FOO" (type HELP for the list)'
    assert client.reply("QUIT").startswith("221 ")
    client.expect_closed()
    assert leaked(hato, [user64, password64]) == []


def test_submission_before_starttls_asks_for_starttls(server: HatoProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.mail(USER) == (530, b"5.7.0 Must issue a STARTTLS command first")


def test_auth_before_tls_on_port_25_says_encryption_is_required(server: HatoProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.docmd("AUTH", "PLAIN " + plain(USER, PASSWORD)) == (
            538,
            b"5.7.11 Encryption required for requested authentication mechanism"
            b" (issue STARTTLS first)",
        )
        # Inside TLS the same command is welcome.
        client.starttls(context=unverified())
        client.ehlo("client.example")
        assert client.login(USER, PASSWORD)[0] == 235
