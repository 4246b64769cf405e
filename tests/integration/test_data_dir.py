"""The data directory belongs to one Hato and to Hato's user alone.

Real ``hato`` processes: whatever the umask they are started with, every directory they
make is 0700 and every file 0600 (logs, trace, accounts, spool, Maildir, TLS key and
SQLite's -wal/-shm files); a second ``hato serve`` on a directory in use says which
process holds it and exits before touching anything there.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

HATO = Path(sys.executable).with_name("hato")
EX_TEMPFAIL = 75


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The umask every process started meanwhile inherits."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and everything under it, by path relative to ``root``."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def send(client: SmtpLineClient, recipient: str) -> str:
    assert client.reply("MAIL FROM:<a@example.com>").startswith("250 ")
    assert client.reply(f"RCPT TO:<{recipient}>").startswith("250 ")
    assert client.reply("DATA").startswith("354 ")
    client.send(b"Subject: private\r\n\r\nhello\r\n.\r\n")
    reply = client.read_reply()[-1]
    assert reply.startswith("250 "), reply
    return reply.rsplit(" ", 1)[1]


@pytest.mark.parametrize("mask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_everything_in_the_data_directory_is_private(
    mask: int,
    hato_factory: Callable[..., HatoProcess],
    smtp_connect: Callable[[int], SmtpLineClient],
) -> None:
    hato = hato_factory()
    with umask(mask):
        hato.start()  # seeds aliases first (hato alias add), then serves
        hato.add_user("bob@localhost", "secret-password")
        client = smtp_connect(hato.port)
        assert client.read_reply()[0].startswith("220 ")
        assert client.reply("EHLO client.example").startswith("250 ")
        send(client, "bob@localhost")  # into bob's Maildir
        queued = send(client, f"x@{hato.hostname}")  # to the hold target: stays spooled
        client.command("QUIT")
        client.read_reply()
        hato.wait_for_event("deferred", queue_id=queued)
        hato.wait_for_event("disconnect")
        found = modes(hato.data_dir)
        hato.stop()
    for name in ("log/events.jsonl", "trace.sqlite3", "accounts.sqlite3", "tls/key.pem"):
        assert name in found, sorted(found)
    assert any(name.startswith("mailboxes/") and "/new/" in name for name in found)
    assert any(name.startswith("spool/msg/") for name in found)
    assert any(name.endswith("-wal") for name in found)
    # Others may pass through the data directory to the maildrop (sendmail), and write
    # there without listing it; nothing else is theirs.
    assert found.pop(".") == 0o711
    assert found.pop("maildrop") == 0o3733
    loose = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (hato.data_dir / name).is_dir() else 0o600)
    }
    assert not loose, loose


def test_a_data_directory_made_by_hand_is_made_private(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = hato_factory(accept_all=False)
    hato.data_dir.mkdir(mode=0o755)
    hato.data_dir.chmod(0o755)
    hato.start()
    assert stat.S_IMODE(hato.data_dir.stat().st_mode) == 0o711  # searchable, never listable
    hato.stop()


def test_a_second_server_on_a_data_directory_in_use_touches_nothing(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    first = hato_factory()
    first.start()
    tls = first.data_dir / "tls"
    before = {p.name: p.read_bytes() for p in tls.iterdir()}
    events_before = first.events_path.read_bytes()
    # Another hostname, so a server that went ahead would make a new certificate.
    command = [str(HATO), "serve", "--data-dir", str(first.data_dir), "--listen", "127.0.0.1:0"]
    command += ["--hostname", "other.example", "-o", 'server.implicit_tls_listen=["127.0.0.1:0"]']
    second = subprocess.run(
        [*command, "-o", 'server.submission_listen=["127.0.0.1:0"]'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == EX_TEMPFAIL, second.stderr
    assert "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines() == [
        f"hato: another Hato (pid {first.pid}) is using {first.data_dir}"
    ], second.stderr
    assert {p.name: p.read_bytes() for p in tls.iterdir()} == before
    assert first.events_path.read_bytes() == events_before
    # The first one serves on, unharmed.
    client = smtp_connect(first.port)
    assert client.read_reply()[0].startswith("220 ")
    assert client.reply("EHLO client.example").startswith("250 ")
    assert first.stop() == 0
