"""Local mail delivered while the client waits (queue.deliver_in_data): the 250 comes once
the mailbox copy is durable, the message never enters the queue, and whatever stands in
the way (a report owed, a remote recipient, a mailbox that cannot take it) sends the
message through the queue as before."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hato.delivery import MaildirAgent

if TYPE_CHECKING:
    from conftest import HatoProcess


def mailbox(hato: HatoProcess, address: str) -> list[bytes]:
    local, _, domain = address.rpartition("@")
    agent = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname)
    return [m.path.read_bytes() for m in agent.messages(domain, local)]


def spool_files(hato: HatoProcess) -> list[Path]:
    return [p for p in (hato.data_dir / "spool" / "msg").rglob("*") if p.is_file()]


def queue_id_of(reply: bytes) -> str:
    return reply.decode().rsplit(" ", 1)[1]


def started(hato_factory: Callable[..., HatoProcess], *options: str) -> HatoProcess:
    hato = hato_factory(accept_all=False, extra_args=tuple(a for o in options for a in ("-o", o)))
    hato.start()
    hato.add_user("gina@localhost")
    return hato


def test_the_copy_is_in_the_mailbox_when_250_arrives(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = started(hato_factory)
    hato.add_user("hal@localhost")
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        client.mail("a@example.org")
        client.rcpt("gina@localhost")
        client.rcpt("hal@localhost")
        code, reply = client.data(b"Subject: at once\r\n\r\nno queue\r\n")
        assert code == 250
        # Checked before QUIT: the copies are there already, nothing is queued.
        (gina,) = mailbox(hato, "gina@localhost")
        (hal,) = mailbox(hato, "hal@localhost")
        assert spool_files(hato) == []
    queue_id = queue_id_of(reply)
    for copy, address in ((gina, "gina@localhost"), (hal, "hal@localhost")):
        assert copy.startswith(
            f"Return-Path: <a@example.org>\r\nDelivered-To: {address}\r\n".encode()
        )
        assert f"id {queue_id}".encode() in copy
        assert copy.endswith(b"\r\nno queue\r\n")
    assert hato.cli("queue", "list").stdout.strip() == "Mail queue is empty"
    hato.wait_for_event("removed", queue_id=queue_id)
    story = [e["event"] for e in hato.events() if e.get("queue_id") == queue_id]
    assert story == ["queued", "delivered", "delivered", "removed"]


def test_a_message_past_the_memory_limit_is_delivered_at_once_too(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = started(hato_factory)
    body = b"".join(b"line %06d of a large message\r\n" % n for n in range(20000))  # ~600 KB
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=30) as client:
        assert client.sendmail("a@example.org", ["gina@localhost"], body) == {}
        (copy,) = mailbox(hato, "gina@localhost")
    assert copy.endswith(body)
    assert spool_files(hato) == []


def test_a_success_report_owed_goes_through_the_queue(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = started(hato_factory)
    hato.add_user("ivan@localhost")
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        client.mail("ivan@localhost")
        client.rcpt("gina@localhost", options=["NOTIFY=SUCCESS"])
        code, reply = client.data(b"Subject: tell me\r\n\r\nreport please\r\n")
    assert code == 250
    queue_id = queue_id_of(reply)
    report = hato.wait_for_event("report", queue_id=queue_id)
    assert report["action"] == "delivered"
    hato.poll(lambda: len(mailbox(hato, "ivan@localhost")) == 1, what="the report")
    assert len(mailbox(hato, "gina@localhost")) == 1


def test_a_remote_recipient_sends_the_message_through_the_queue(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    # relay.test.example goes to a closed port (conftest): that recipient is deferred.
    hato = started(hato_factory, 'relay.trusted_networks=["127.0.0.0/8"]')
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        refused = client.sendmail(
            "a@example.org", ["gina@localhost", "far@relay.test.example"], b"Subject: x\r\n\r\n."
        )
    assert refused == {}
    deferred = hato.wait_for_event("deferred", recipient="far@relay.test.example")
    hato.poll(lambda: len(mailbox(hato, "gina@localhost")) == 1, what="the local copy")
    listing = hato.cli("queue", "list").stdout
    assert deferred["queue_id"] in listing and "far@relay.test.example" in listing


def test_a_mailbox_that_cannot_take_it_now_is_retried_from_the_queue(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = started(hato_factory, "queue.retry_initial=0.5")
    # A file where the mailbox directory belongs: the copy cannot be made.
    agent = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname)
    blocker = agent.mailbox_dir("localhost", "gina")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way")
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        assert (
            client.sendmail("a@example.org", ["gina@localhost"], b"Subject: y\r\n\r\nlater\r\n")
            == {}
        )
    deferred = hato.wait_for_event("deferred", recipient="gina@localhost")
    blocker.unlink()
    hato.poll(lambda: len(mailbox(hato, "gina@localhost")) == 1, what="the retried copy")
    hato.wait_for_event("removed", queue_id=deferred["queue_id"])
    assert len(mailbox(hato, "gina@localhost")) == 1


def test_switched_off_every_message_is_queued_first(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = started(hato_factory, "queue.deliver_in_data=false")
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        client.mail("a@example.org")
        client.rcpt("gina@localhost")
        code, reply = client.data(b"Subject: queued\r\n\r\nvia the queue\r\n")
    assert code == 250
    queue_id = queue_id_of(reply)
    hato.wait_for_event("removed", queue_id=queue_id)
    assert len(mailbox(hato, "gina@localhost")) == 1
    story = [e["event"] for e in hato.events() if e.get("queue_id") == queue_id]
    assert story == ["queued", "delivered", "removed"]


def test_a_loop_found_at_delivery_goes_through_the_queue_and_fails(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    # The mailbox copy is refused (Delivered-To names the mailbox already): the message
    # is queued, and the queue's attempt fails it with 5.4.6 as for any queued loop.
    hato = started(hato_factory)
    looping = b"Delivered-To: gina@localhost\r\nSubject: round and round\r\n\r\nagain\r\n"
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        client.mail("")
        client.rcpt("gina@localhost")
        code, reply = client.data(looping)
    assert code == 250
    queue_id = queue_id_of(reply)
    failed = hato.wait_for_event("failed", queue_id=queue_id)
    assert failed["status"] == "5.4.6"
    assert mailbox(hato, "gina@localhost") == []
    story = [e["event"] for e in hato.events() if e.get("queue_id") == queue_id]
    assert story[0] == "queued" and "delivered" not in story
