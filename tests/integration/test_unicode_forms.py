"""One local part, two Unicode spellings: NFC "\u00fc" and NFD "u" + U+0308 look identical, so
they name one user, one alias and one mailbox, from ``hato user add`` to SMTP delivery."""

from __future__ import annotations

import smtplib
import sqlite3
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hato.accounts import ACCOUNTS_FILE, AccountStore
from hato.delivery import MaildirAgent

if TYPE_CHECKING:
    from conftest import HatoProcess

NFC = unicodedata.normalize("NFC", "jürgen")
NFD = unicodedata.normalize("NFD", "jürgen")
assert NFC != NFD


def test_user_add_refuses_the_other_spelling_of_an_existing_user(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = hato_factory(accept_all=False)
    hato.add_user(f"{NFD}@localhost")
    again = hato.cli("user", "add", f"{NFC}@localhost")
    assert again.returncode == 1, again.stdout
    assert "already exists" in again.stderr
    listed = hato.cli("user", "list").stdout
    assert listed.count("@localhost") == 1
    assert f"{NFC}@localhost" in listed  # stored in NFC, whatever was typed
    # Aliases too: the two spellings are one source.
    assert hato.cli("alias", "add", f"sales-{NFD}@localhost", "a@example.org").returncode == 0
    assert hato.cli("alias", "add", f"sales-{NFC}@localhost", "b@example.org").returncode == 0
    aliases = hato.cli("alias", "list").stdout
    assert aliases.count("sales-") == 1, aliases


def test_mail_to_either_spelling_reaches_one_mailbox(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = hato_factory(accept_all=False)
    hato.add_user(f"{NFC}@localhost")
    assert hato.cli("alias", "add", "team@localhost", f"{NFD}@localhost").returncode == 0
    hato.start()
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        for recipient in (f"{NFD}@localhost", f"{NFC}@localhost", "team@localhost"):
            body = f"Subject: to {recipient.encode('unicode_escape').decode()}\r\n\r\nhi\r\n"
            refused = client.sendmail(
                "a@example.org", [recipient], body.encode(), mail_options=["SMTPUTF8"]
            )
            assert refused == {}
    agent = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname)
    hato.poll(lambda: len(agent.messages("localhost", NFC)) == 3, what="3 messages")
    assert [p.name for p in (hato.data_dir / "mailboxes" / "localhost").iterdir()] == [NFC]


def test_a_store_written_before_nfc_is_found_by_either_spelling(tmp_path: Path) -> None:
    path = tmp_path / ACCOUNTS_FILE
    with AccountStore(path, config_domains=["localhost"]) as store:
        store.add_user("other@localhost")
    # What an older Hato stored for an NFD "hato user add": keys as typed, version 1.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO users VALUES ('localhost', ?, ?, ?, NULL, NULL, 0)",
            (NFD, NFD.casefold(), NFD),
        )
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    with AccountStore(path, config_domains=["localhost"]) as store:
        for spelling in (NFC, NFD, NFC.upper()):
            found = store.get_user(f"{spelling}@localhost")
            assert found is not None and found.local_part == NFC, spelling
