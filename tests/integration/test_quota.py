"""Mailbox quotas at RCPT time: cheap for a large mailbox, and right as mail comes and goes.

The usage comes from the mailbox's Maildir++ ``maildirsize`` file (the one Dovecot and Courier
keep), recalculated in a thread when it is missing or stale, never by listing the mailbox on
the event loop.
"""

from __future__ import annotations

import os
import smtplib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hato.delivery import MaildirAgent

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

MESSAGES = 30_000
MESSAGE_SIZE = 100  # what each file's name says (,S=): the files themselves stay empty
USER = "big@localhost"


def maildir(hato: HatoProcess, address: str = USER) -> Path:
    local, _, domain = address.rpartition("@")
    return MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname).mailbox_dir(
        domain, local
    )


def fill(directory: Path, count: int, size: int = MESSAGE_SIZE) -> list[Path]:
    """``count`` message files in ``directory``/cur, named as Dovecot names them."""
    for sub in ("tmp", "new", "cur"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    made = []
    for number in range(count):
        path = directory / "cur" / f"1700000000.M{number}P1.other.host,S={size}:2,S"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        made.append(path)
    return made


def rcpt_replies(client: SmtpLineClient, count: int, address: str = USER) -> list[str]:
    client.send(b"".join(f"RCPT TO:<{address}>\r\n".encode() for _ in range(count)))
    return [client.read_reply()[-1] for _ in range(count)]


def greet(client: SmtpLineClient) -> None:
    assert client.read_reply()[-1].startswith("220")
    assert client.reply("EHLO client.example").startswith("250")
    assert client.reply("MAIL FROM:<a@example.org>").startswith("250")


def test_pipelined_rcpts_to_a_large_mailbox_stall_no_one(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    hato = hato_factory(accept_all=False)
    hato.start()
    added = hato.cli("user", "add", USER, "--quota", "1G")
    assert added.returncode == 0, added.stderr
    fill(maildir(hato), MESSAGES)

    client = smtp_connect(hato.port, timeout=30)
    greet(client)
    # The first RCPT starts the count; wait until it is known (a maildirsize file appears).
    assert rcpt_replies(client, 1) == ["250 2.1.5 Ok"]
    hato.poll(lambda: (maildir(hato) / "maildirsize").exists(), what="maildirsize")

    other = smtp_connect(hato.port, timeout=30)
    greet(other)
    delays: list[float] = []
    done = threading.Event()

    def noop_meanwhile() -> None:
        while not done.is_set():
            started = time.monotonic()
            assert other.reply("NOOP").startswith("250")
            delays.append(time.monotonic() - started)
            time.sleep(0.01)

    watcher = threading.Thread(target=noop_meanwhile)
    watcher.start()
    try:
        started = time.monotonic()
        replies = rcpt_replies(client, 99)
        elapsed = time.monotonic() - started
    finally:
        done.set()
        watcher.join()
    print(f"99 pipelined RCPTs: {elapsed * 1000:.0f} ms; slowest NOOP {max(delays) * 1000:.0f} ms")
    assert replies == ["250 2.1.5 Ok"] * 99
    assert elapsed < 2.0, f"99 RCPTs took {elapsed:.2f} s"
    assert max(delays) < 1.0, f"a NOOP waited {max(delays):.2f} s"


def over_quota(hato: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]) -> bool:
    client = smtp_connect(hato.port)
    greet(client)
    [answer] = rcpt_replies(client, 1)
    client.reply("QUIT")
    assert answer in ("250 2.1.5 Ok", f"452 4.2.2 <{USER}>: Mailbox full, try later"), answer
    return answer.startswith("452")


def test_usage_follows_deliveries_and_changes_made_by_others(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    hato = hato_factory(accept_all=False)
    hato.start()
    files = fill(maildir(hato), 100)  # 10,000 bytes
    added = hato.cli("user", "add", USER, "--quota", "12000")
    assert added.returncode == 0, added.stderr
    assert not over_quota(hato, smtp_connect)
    size_file = maildir(hato) / "maildirsize"
    hato.poll(size_file.exists, what="maildirsize")
    # Maildir++: the quota definition, then "bytes count" lines that add up.
    assert size_file.read_text().splitlines() == ["12000S", "10000 100"]

    # Deliveries count: 2 messages of 1,200 to 1,600 bytes make more than 12,000.
    deliver(hato, 2)
    lines = size_file.read_text().splitlines()
    assert sum(int(line.split()[1]) for line in lines[1:]) == 102, lines
    assert over_quota(hato, smtp_connect)

    # An IMAP server expunges 40 messages and appends its own line, as Dovecot does.
    for path in files[:40]:
        path.unlink()
    with size_file.open("a") as appended:
        appended.write(f"{-40 * MESSAGE_SIZE} -40\n")
    assert not over_quota(hato, smtp_connect)

    # Over quota again; then messages removed behind everyone's back, with no line: the
    # figure is doubted (the folder changed after the file) and counted again.
    delivered = 2
    while not over_quota(hato, smtp_connect):
        deliver(hato, 1, already=delivered)
        delivered += 1
    assert delivered <= 6
    for path in files[40:80]:
        path.unlink()
    hato.poll(lambda: not over_quota(hato, smtp_connect), timeout=10, what="a new count")
    lines = size_file.read_text().splitlines()
    assert lines[0] == "12000S"
    assert sum(int(line.split()[1]) for line in lines[1:]) == 20 + delivered, lines


def deliver(hato: HatoProcess, count: int, *, already: int = 0) -> None:
    # 1,019 bytes, and with the Received, Return-Path and Delivered-To fields 1,200 to 1,600.
    body = b"Subject: filler\r\n\r\n" + (b"x" * 98 + b"\r\n") * 10
    for _ in range(count):
        with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as sender:
            assert sender.sendmail("a@example.org", [USER], body) == {}
    new = maildir(hato) / "new"
    hato.poll(lambda: len(list(new.iterdir())) == already + count, what="the deliveries")
