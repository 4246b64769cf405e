"""Dovecot reads what MaildirAgent writes, byte for byte, and a recheck never doubles it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dovecot_server import Dovecot, dovecot_fixture  # noqa: F401 - provides `dovecot`

from hato.delivery import MaildirAgent, MaildirJob, Status
from hato.spool import MessageSource

HOST = "mx.test.example"
MESSAGE = (
    b"Received: from client.example.org ([192.0.2.1])\r\n\tby mx.test.example; now\r\n"
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.com>\r\n"
    b"Subject: interop\r\n"
    b"Message-ID: <interop@example.org>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b".leading dot and trailing spaces   \r\n"
    b"\r\n"
    b"bye\r\n"
)


def spool(tmp_path: Path, data: bytes = MESSAGE, name: str = "msg") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def job(message: Path, local: str, domain: str, index: int = 0) -> MaildirJob:
    return MaildirJob(
        queue_id="0ABCDEFGHIJ123",
        recipient_index=index,
        domain=domain,
        local_part=local,
        delivered_to=f"{local}@{domain}",
        reverse_path="alice@example.org",
        source=MessageSource(path=message),
        arrival=1_700_000_000,
    )


def copies(agent: MaildirAgent, local: str, domain: str) -> list[Path]:
    maildir = agent.mailbox_dir(domain, local)
    return sorted(p for folder in ("new", "cur") for p in (maildir / folder).iterdir())


def fetch_all(dovecot: Dovecot, address: str) -> list[bytes]:
    """Every INBOX message of ``address`` as Dovecot serves it (FETCH RFC822)."""
    imap = dovecot.imap(address)
    status, data = imap.select("INBOX")
    assert status == "OK", data
    count = int(data[0] or b"0")
    messages = []
    for number in range(1, count + 1):
        status, fetched = imap.fetch(str(number), "(RFC822)")
        assert status == "OK", fetched
        part = fetched[0]
        assert isinstance(part, tuple), fetched
        messages.append(part[1])
    imap.logout()
    return messages


def test_imap_serves_exactly_the_delivered_bytes(dovecot: Dovecot, tmp_path: Path) -> None:
    agent = MaildirAgent(dovecot.mailboxes, hostname=HOST)
    [result] = agent.deliver([job(spool(tmp_path), "bob", "example.com")])
    assert result.status is Status.DELIVERED, result
    [copy] = copies(agent, "bob", "example.com")
    stored = copy.read_bytes()
    assert stored.startswith(
        b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.com\r\n"
    )
    dovecot.adopt()
    assert fetch_all(dovecot, "bob@example.com") == [stored]


def test_each_login_sees_only_its_own_mailbox(dovecot: Dovecot, tmp_path: Path) -> None:
    agent = MaildirAgent(dovecot.mailboxes, hostname=HOST, sync="fsync")
    message = spool(tmp_path)
    targets = [("first.last", "example.org"), ("x_y-z", "example.com"), ("bob", "example.com")]
    results = agent.deliver(
        [job(message, local, domain, i) for i, (local, domain) in enumerate(targets)]
    )
    assert all(r.status is Status.DELIVERED for r in results), results
    dovecot.adopt()
    for local, domain in targets:
        [stored] = [p.read_bytes() for p in copies(agent, local, domain)]
        assert fetch_all(dovecot, f"{local}@{domain}") == [stored]
    assert fetch_all(dovecot, "nobody@example.com") == []


def test_recheck_after_dovecot_moved_the_message_stores_no_second_copy(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    agent = MaildirAgent(dovecot.mailboxes, hostname=HOST)
    first = job(spool(tmp_path), "bob", "example.com")
    agent.deliver([first])
    dovecot.adopt()
    [stored] = fetch_all(dovecot, "bob@example.com")  # SELECT and FETCH: seen, moved to cur/
    [moved] = copies(agent, "bob", "example.com")
    assert moved.parent.name == "cur" and moved.name.endswith(":2,S"), moved

    [again] = agent.deliver([dataclasses.replace(first, recheck=True)])
    assert again.status is Status.DELIVERED and "cur/" in again.detail, again
    assert copies(agent, "bob", "example.com") == [moved]
    assert fetch_all(dovecot, "bob@example.com") == [stored]


def test_a_large_message_with_a_null_sender(dovecot: Dovecot, tmp_path: Path) -> None:
    body = b"".join(b"line %06d " % n + b"x" * 60 + b"\r\n" for n in range(40_000))  # ~3 MB
    agent = MaildirAgent(dovecot.mailboxes, hostname=HOST)
    message = spool(tmp_path, MESSAGE + body, "large")
    [result] = agent.deliver(
        [dataclasses.replace(job(message, "bob", "example.com"), reverse_path="")]
    )
    assert result.status is Status.DELIVERED, result
    [stored] = [p.read_bytes() for p in copies(agent, "bob", "example.com")]
    dovecot.adopt()
    [served] = fetch_all(dovecot, "bob@example.com")
    assert served.startswith(b"Return-Path: <>\r\n")
    assert served == stored
