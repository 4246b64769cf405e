"""The walkthrough's last step with a real IMAP server: SMTP into Hato, IMAP out of Dovecot."""

from __future__ import annotations

import smtplib
from pathlib import Path

from dovecot_server import Dovecot, dovecot_fixture  # noqa: F401 - provides `dovecot`

from conftest import HatoProcess
from hato.delivery import MaildirAgent


def test_mail_sent_over_smtp_is_fetched_over_imap(dovecot: Dovecot, tmp_path: Path) -> None:
    hato = HatoProcess(dovecot.data_dir, accept_all=False)
    try:
        hato.start()
        added = hato.cli("user", "add", "bob@localhost")
        assert added.returncode == 0, added.stderr
        body = (
            b"From: Alice <alice@example.org>\r\nTo: bob@localhost\r\n"
            b"Subject: over the wire\r\nMessage-ID: <e2e@example.org>\r\n\r\n"
            b"Hello Bob,\r\n..a line that started with a dot\r\n"
        )
        with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
            assert client.sendmail("alice@example.org", ["bob@localhost"], body) == {}
        agent = MaildirAgent(dovecot.mailboxes, hostname=hato.hostname)
        (delivered,) = hato.poll(
            lambda: agent.messages("localhost", "bob"), what="bob's message in his Maildir"
        )
        on_disk = delivered.path.read_bytes()
    finally:
        hato.close()
    dovecot.adopt()
    imap = dovecot.imap("bob@localhost")
    status, data = imap.select("INBOX")
    assert status == "OK" and data[0] == b"1", (status, data, dovecot.log())
    status, fetched = imap.fetch("1", "(RFC822)")
    assert status == "OK"
    served = fetched[0][1]
    assert isinstance(served, bytes)
    assert served == on_disk
    assert served.startswith(b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@localhost\r\n")
    # The body arrives as sent: smtplib dot-stuffed "..a line" and Hato un-stuffed it.
    assert served.endswith(body)
