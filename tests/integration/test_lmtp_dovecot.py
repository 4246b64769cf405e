"""LMTP into a private Dovecot 2.3 (dovecot-lmtpd), read back over IMAP: over its unix socket
and over TCP, a mailbox over quota deferred alone, and ``hato serve`` with
``accounts.delivery`` handing every local mailbox to Dovecot."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot_server import Dovecot, start_dovecot

from conftest import HatoProcess
from hato.config import HostPort, LmtpTarget
from hato.delivery import LmtpAgent, Reason, RemoteJob, RemoteResult, RemoteTarget, Status
from hato.spool import Envelope, MessageSource, Recipient

MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: undisclosed-recipients:;\r\n"
    b"Subject: by LMTP\r\nMessage-ID: <lmtp@example.org>\r\n\r\n"
    b"Hello,\r\n.a line that starts with a dot\r\nbye\r\n"
)


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    with start_dovecot(tmp_path_factory.mktemp("dovecot"), lmtp=True) as server:
        yield server


def deliver(target: LmtpTarget, *addresses: str) -> list[RemoteResult]:
    envelope = Envelope(
        reverse_path="alice@example.org",
        recipients=tuple(Recipient(address=a) for a in addresses),
        arrival=1_700_000_000,
    )
    job = RemoteJob(
        queue_id="Q1LMTPDOVE",
        domain="example.com",
        envelope=envelope,
        targets=tuple(RemoteTarget(position=i, address=a) for i, a in enumerate(addresses)),
        source=MessageSource(data=MESSAGE),
        size=len(MESSAGE),
    )
    agent = LmtpAgent(local_hostname="mx.test.example", default=target)
    return asyncio.run(asyncio.wait_for(agent.deliver(job), 30))


def inbox(dovecot: Dovecot, address: str) -> list[bytes]:
    imap = dovecot.imap(address)
    status, data = imap.select("INBOX")
    assert status == "OK", data
    messages = []
    for number in range(1, int(data[0] or b"0") + 1):
        status, fetched = imap.fetch(str(number), "(RFC822)")
        assert status == "OK", fetched
        part = fetched[0]
        assert isinstance(part, tuple), fetched
        messages.append(part[1])
    imap.logout()
    return messages


def test_delivered_over_the_unix_socket_and_fetched_over_imap(dovecot: Dovecot) -> None:
    results = deliver(
        LmtpTarget(path=str(dovecot.lmtp_socket)), "bob@example.com", "carol@example.com"
    )
    assert [r.result.status for r in results] == [Status.DELIVERED] * 2, dovecot.log()
    assert results[0].result.detail.startswith(f"lmtp:unix:{dovecot.lmtp_socket} said: 250")
    for address in ("bob@example.com", "carol@example.com"):
        [served] = inbox(dovecot, address)
        assert served.endswith(MESSAGE), served
        assert b"Return-Path: <alice@example.org>" in served
        assert b"Received: from mx.test.example" in served  # Dovecot's, naming our LHLO
        assert b"with LMTP" in served


def test_delivered_over_tcp(dovecot: Dovecot) -> None:
    target = LmtpTarget(address=HostPort("127.0.0.1", dovecot.lmtp_port))
    [result] = deliver(target, "tcp@example.com")
    assert result.result.status is Status.DELIVERED, (result, dovecot.log())
    assert result.remote_mta == f"lmtp:127.0.0.1:{dovecot.lmtp_port}"
    [served] = inbox(dovecot, "tcp@example.com")
    assert served.endswith(MESSAGE)


def fill(dovecot: Dovecot, domain: str, local: str) -> None:
    """Put a message bigger than the quota into a mailbox, as if delivered earlier."""
    maildir = dovecot.mailboxes / domain / local
    for folder in ("cur", "new", "tmp"):
        (maildir / folder).mkdir(parents=True, exist_ok=True)
    size = 2 * 1024 * 1024
    body = b"Subject: big\r\n\r\n" + b"x" * (size - 16)
    (maildir / "cur" / f"1700000000.M1P1.test,S={len(body)}:2,S").write_bytes(body)
    dovecot.adopt(dovecot.mailboxes)


def test_a_mailbox_over_quota_is_deferred_alone(dovecot: Dovecot) -> None:
    fill(dovecot, "example.com", "full")
    addresses = ("first@example.com", "full@example.com", "last@example.com")
    results = deliver(LmtpTarget(path=str(dovecot.lmtp_socket)), *addresses)
    outcomes = [(r.target.address, r.result.status) for r in results]
    assert outcomes == [
        ("first@example.com", Status.DELIVERED),
        ("full@example.com", Status.DEFERRED),
        ("last@example.com", Status.DELIVERED),
    ], ([r.diagnostic for r in results], dovecot.log()[-300:])
    full = results[1].result
    assert full.enhanced == "4.2.2" and full.reason is Reason.MAILBOX_FULL, full
    assert results[1].diagnostic is not None and results[1].diagnostic.startswith("452")
    assert len(inbox(dovecot, "first@example.com")) == 1
    assert len(inbox(dovecot, "last@example.com")) == 1
    assert len(inbox(dovecot, "full@example.com")) == 1  # only the one that filled it


def test_hato_serve_hands_local_mailboxes_to_dovecot(dovecot: Dovecot, tmp_path: Path) -> None:
    config = tmp_path / "hato.toml"
    config.write_text(f'[accounts]\ndelivery = "lmtp:unix:{dovecot.lmtp_socket}"\n')
    hato = HatoProcess(tmp_path / "data", config=config, accept_all=False)
    try:
        hato.start()
        for user in ("dora@localhost", "eve@localhost"):
            added = hato.cli("user", "add", user)
            assert added.returncode == 0, added.stderr
        with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
            refused = client.sendmail(
                "alice@example.org", ["dora@localhost", "eve@localhost"], MESSAGE
            )
            assert refused == {}
        delivered = hato.poll(
            lambda: (found := hato.events("delivered")) and len(found) == 2 and found,
            what="two deliveries by LMTP",
        )
    finally:
        hato.close()
    assert {event["recipient"] for event in delivered} == {"dora@localhost", "eve@localhost"}
    assert all(str(event["detail"]).startswith("lmtp:unix:") for event in delivered), delivered
    assert not (tmp_path / "data" / "mailboxes" / "localhost").exists()  # no Maildir of Hato's
    for address in ("dora@localhost", "eve@localhost"):
        [served] = inbox(dovecot, address)
        assert served.endswith(MESSAGE)
        assert b"Received: from" in served  # Hato's trace field, then Dovecot's
