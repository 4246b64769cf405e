"""End to end: SMTP in, Maildir out, with live accounts, the queue commands and restarts."""

from __future__ import annotations

import os
import smtplib
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hato.delivery import MaildirAgent

if TYPE_CHECKING:
    from conftest import HatoProcess


def mailbox(hato: HatoProcess, address: str) -> list[bytes]:
    """The bytes of every message in a mailbox (new/ and cur/), oldest first."""
    local, _, domain = address.rpartition("@")
    agent = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname)
    return [m.path.read_bytes() for m in agent.messages(domain, local)]


def wait_mail(hato: HatoProcess, address: str, count: int = 1) -> list[bytes]:
    return hato.poll(  # type: ignore[no-any-return]
        lambda: (found := mailbox(hato, address)) and len(found) >= count and found,
        what=f"{count} message(s) for {address}",
    )


def send(
    hato: HatoProcess, recipients: list[str], body: bytes, sender: str = "a@example.org"
) -> None:
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        refused = client.sendmail(sender, recipients, body)
    assert refused == {}


def cli(hato: HatoProcess, *args: str) -> subprocess.CompletedProcess[str]:
    result = hato.cli(*args)
    assert result.returncode == 0, result.stderr
    return result


def test_message_lands_in_the_maildir_with_trace_headers(hato_plain: HatoProcess) -> None:
    hato = hato_plain
    body = b"Subject: walkthrough\r\nMessage-ID: <w1@example.org>\r\n\r\nThis is a test.\r\n"
    send(hato, ["postmaster@localhost"], body, sender="admin@example.org")
    # postmaster@ of every local domain goes to the configured postmaster mailbox.
    (stored,) = wait_mail(hato, f"postmaster@{hato.hostname}")
    head, _, rest = stored.partition(b"Received: ")
    assert head == (
        b"Return-Path: <admin@example.org>\r\nDelivered-To: postmaster@"
        + hato.hostname.encode()
        + b"\r\n"
    )
    assert rest.endswith(body)
    shown = cli(hato, "mailbox", "show", f"postmaster@{hato.hostname}", "1")
    assert "Subject: walkthrough" in shown.stdout and "This is a test." in shown.stdout
    assert hato.poll(lambda: hato.events("removed"), what="removal")[0]["delivered"] == 1
    assert cli(hato, "queue", "list").stdout.strip() == "Mail queue is empty"


def test_accounts_change_live_and_unknown_users_get_550(hato_plain: HatoProcess) -> None:
    hato = hato_plain
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        code, text = client.rcpt("alice@localhost")
    assert (code, text[:5]) == (550, b"5.1.1")
    assert b"User unknown in local recipient table" in text
    assert hato.wait_for_event("reject", command="RCPT")["reason"] == "unknown user"

    cli(hato, "user", "add", "alice@localhost")  # while the server runs: no restart
    cli(hato, "alias", "add", "team@localhost", "alice@localhost", "bob@localhost")
    cli(hato, "user", "add", "bob@localhost")
    cli(hato, "alias", "add", "@localhost", "alice@localhost")  # the catch-all
    send(hato, ["Alice+lists@LOCALHOST"], b"Subject: one\r\n\r\nplus tag and case\r\n")
    send(hato, ["team@localhost"], b"Subject: two\r\n\r\nalias to two\r\n")
    send(hato, ["anyone@localhost"], b"Subject: three\r\n\r\ncatch-all\r\n")
    alice = wait_mail(hato, "alice@localhost", 3)
    bob = wait_mail(hato, "bob@localhost", 1)
    assert sorted(m.split(b"Subject: ")[1][:5] for m in alice) == [b"one\r\n", b"three", b"two\r\n"]
    assert b"Delivered-To: bob@localhost\r\n" in bob[0]
    assert all(b"Delivered-To: alice@localhost\r\n" in m for m in alice)


def park_mailbox(hato: HatoProcess, address: str) -> Path:
    """Make a mailbox undeliverable (a file where its directory belongs): root can't chmod."""
    local, _, domain = address.rpartition("@")
    path = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname).mailbox_dir(
        domain, local
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a directory")
    return path


def test_temporary_failure_is_retried_and_queue_commands_work(hato_plain: HatoProcess) -> None:
    hato = hato_plain
    cli(hato, "user", "add", "carol@localhost")
    blocker = park_mailbox(hato, "carol@localhost")
    send(hato, ["carol@localhost"], b"Subject: later\r\n\r\nretry me\r\n")
    deferred = hato.wait_for_event("deferred", recipient="carol@localhost")
    queue_id = deferred["queue_id"]
    assert deferred["status"].startswith("4.")
    listing = cli(hato, "queue", "list").stdout
    assert queue_id in listing and "carol@localhost" in listing and "retry" in listing

    cli(hato, "queue", "hold", queue_id)
    assert f"{queue_id}!" in cli(hato, "queue", "list").stdout
    blocker.unlink()
    cli(hato, "queue", "flush", queue_id)  # held: flushing must not deliver it
    cli(hato, "queue", "release", queue_id)
    # Released, it is due (the first flush made it so) and may be delivered already, when
    # flush says it is not in the queue (and exits 1, as for any message not there).
    flushed = hato.cli("queue", "flush", queue_id)
    assert flushed.returncode == 0 or "not in the queue" in flushed.stderr, flushed.stderr
    (stored,) = wait_mail(hato, "carol@localhost")
    assert stored.endswith(b"retry me\r\n")
    hato.wait_for_event("removed", queue_id=queue_id)
    attempts = [e["queue_id"] for e in hato.events("deferred") if e["queue_id"] == queue_id]
    assert len(attempts) == 1  # the hold kept it from a second failed attempt


def test_delete_removes_a_queued_message(hato_plain: HatoProcess) -> None:
    hato = hato_plain
    cli(hato, "user", "add", "dave@localhost")
    park_mailbox(hato, "dave@localhost")
    send(hato, ["dave@localhost"], b"Subject: doomed\r\n\r\nx\r\n")
    queue_id = hato.wait_for_event("deferred", recipient="dave@localhost")["queue_id"]
    cli(hato, "queue", "delete", queue_id)
    assert cli(hato, "queue", "list").stdout.strip() == "Mail queue is empty"
    bad = hato.cli("queue", "show", queue_id)
    assert bad.returncode == 1 and "no such message" in bad.stderr


def test_queued_mail_survives_a_restart_and_is_delivered_once(hato_plain: HatoProcess) -> None:
    hato = hato_plain
    cli(hato, "user", "add", "erin@localhost")
    blocker = park_mailbox(hato, "erin@localhost")
    for n in range(5):
        send(hato, ["erin@localhost"], f"Subject: {n}\r\n\r\nmessage {n}\r\n".encode())
    hato.poll(lambda: len(hato.events("deferred")) >= 5, what="5 deferrals")
    assert hato.stop() == 0
    assert len(hato.queue()) == 5
    blocker.unlink()
    cli(hato, "queue", "flush")  # with the server stopped: it finds them due at start
    hato.start()
    delivered = wait_mail(hato, "erin@localhost", 5)
    hato.poll(lambda: not hato.queue(), what="an empty queue")
    assert sorted(m.rsplit(b"message ", 1)[1] for m in delivered) == [
        f"{n}\r\n".encode() for n in range(5)
    ]


def test_kill_during_delivery_loses_nothing_and_doubles_nothing(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = hato_factory(accept_all=False)
    hato.start()
    cli(hato, "user", "add", "frank@localhost")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        n = 0
        while not stop.is_set():
            token = f"token-{worker}-{n}"
            try:
                with smtplib.SMTP("127.0.0.1", hato.port, timeout=5) as client:
                    client.sendmail("a@example.org", ["frank@localhost"], f"\r\n{token}\r\n")
            except (OSError, smtplib.SMTPException):
                return  # the server died under us
            with lock:
                acknowledged.append(token)
            n += 1

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    hato.poll(lambda: len(acknowledged) >= 150, what="150 acknowledged messages", timeout=60)
    hato.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    hato.start()
    expected = sorted(acknowledged)
    hato.poll(
        lambda: len(mailbox(hato, "frank@localhost")) >= len(expected) and not hato.queue(),
        what="every acknowledged message delivered",
        timeout=60,
    )
    found = sorted(m.rsplit(b"\r\n", 2)[-2].decode() for m in mailbox(hato, "frank@localhost"))
    # Each acknowledged message exactly once; a message whose 250 the kill swallowed may
    # also be there (the client would have retried it), but never twice.
    assert len(found) == len(set(found)), "a message was delivered twice"
    assert set(expected) <= set(found)
    assert os.path.isdir(hato.data_dir / "mailboxes")
