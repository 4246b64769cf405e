"""Hato asking a private Dovecot 2.3's auth service: RCPT against its user database
(``accounts.userdb``) and SMTP AUTH against its passwords (``auth.backend``), with the
clients alone and through ``hato serve``; Dovecot gone is a temporary failure."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot_server import PASSWORD, Dovecot, start_dovecot

from conftest import HatoProcess
from hato.config import DovecotSocket
from hato.dovecot import DovecotPasswords, DovecotUnavailable, DovecotUserdb

USERS = ("ann@localhost", "ben@localhost")


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    with start_dovecot(tmp_path_factory.mktemp("dovecot"), lmtp=True, users=USERS) as server:
        yield server


@pytest.fixture(scope="module")
def hato(dovecot: Dovecot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HatoProcess]:
    top = tmp_path_factory.mktemp("hato")
    config = top / "hato.toml"
    config.write_text(
        "[accounts]\n"
        f'delivery = "lmtp:unix:{dovecot.lmtp_socket}"\n'
        f'userdb = "dovecot:{dovecot.auth_userdb}"\n'
        "[auth]\n"
        f'backend = "dovecot:{dovecot.auth_client}"\n'
        "allow_plaintext = true\n"
        "failure_delay = 0\n"
    )
    process = HatoProcess(top / "data", config=config, accept_all=False)
    try:
        process.start()
        yield process
    finally:
        process.close()


def test_userdb_lookups_with_the_client_alone(dovecot: Dovecot) -> None:
    userdb = DovecotUserdb(DovecotSocket(path=str(dovecot.auth_userdb)), timeout=5)

    async def ask() -> list[bool]:
        return [await userdb.exists(user) for user in ("ann@localhost", "nobody@localhost")]

    assert asyncio.run(ask()) == [True, False], dovecot.log()
    gone = DovecotUserdb(DovecotSocket(path=str(dovecot.top / "no-such-socket")), timeout=5)
    with pytest.raises(DovecotUnavailable, match="no-such-socket"):
        asyncio.run(gone.exists("ann@localhost"))


def test_passwords_and_mechanisms_with_the_client_alone(dovecot: Dovecot) -> None:
    passwords = DovecotPasswords(DovecotSocket(path=str(dovecot.auth_client)), timeout=20)
    assert passwords.mechanisms() == ("PLAIN", "LOGIN")
    assert passwords.verify_password("ann@localhost", PASSWORD)
    # Each from an IP of its own: Dovecot delays a client that failed before.
    assert not passwords.verify_password("ann@localhost", "wrong", client_ip="127.0.0.8")
    assert not passwords.verify_password("nobody@localhost", PASSWORD, client_ip="127.0.0.9")


def test_rcpt_asks_dovecots_user_database(hato: HatoProcess, dovecot: Dovecot) -> None:
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.mail("sender@example.org")[0] == 250
        assert client.rcpt("ann@localhost")[0] == 250
        code, text = client.rcpt("nobody@localhost")
        assert (code, text[:5]) == (550, b"5.1.1"), (text, dovecot.log()[-500:])
        assert client.rcpt("ben@localhost")[0] == 250
        message = b"Subject: to Dovecot's users\r\n\r\nhello\r\n"
        assert client.data(message)[0] == 250
    delivered = hato.poll(
        lambda: (found := hato.events("delivered")) and len(found) >= 2 and found,
        what="both delivered by LMTP",
    )
    assert {e["recipient"] for e in delivered} >= {"ann@localhost", "ben@localhost"}
    imap = dovecot.imap("ann@localhost")
    status, data = imap.select("INBOX")
    assert status == "OK" and data[0] == b"1", data
    imap.logout()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_through_dovecot(hato: HatoProcess, mechanism: str) -> None:
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        client.user, client.password = "ben@localhost", PASSWORD
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, _ = client.auth(mechanism, auth)
        assert code == 235
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        client.user, client.password = "ben@localhost", "wrong"
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth(mechanism, auth)
        assert refused.value.smtp_code == 535


def test_dovecot_down_is_a_temporary_failure(dovecot: Dovecot, tmp_path: Path) -> None:
    config = tmp_path / "hato.toml"
    missing = tmp_path / "gone"
    config.write_text(
        "[accounts]\n"
        f'delivery = "lmtp:unix:{missing}/lmtp"\n'
        f'userdb = "dovecot:{missing}/auth-userdb"\n'
        "userdb_timeout = 2\n"
        "[auth]\n"
        f'backend = "dovecot:{missing}/auth-client"\n'
        "allow_plaintext = true\n"
    )
    hato = HatoProcess(tmp_path / "data", config=config, accept_all=False)
    try:
        hato.start()
        with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
            client.ehlo("client.example")
            assert client.mail("sender@example.org")[0] == 250
            code, text = client.rcpt("ann@localhost")
            assert (code, text[:5]) == (451, b"4.3.0"), text
            client.rset()
            client.user, client.password = "ann@localhost", PASSWORD
            with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                client.auth("PLAIN", client.auth_plain)
            assert refused.value.smtp_code == 454
    finally:
        hato.close()
