"""``hato test --receive``: a test address whose mail is analysed, never delivered.

A second Hato relays to the first through ``relay.transports`` with STARTTLS required
(``relay.tls_policy`` "encrypt"); the first's analysis must report that TLS session, the
sender's HELO, its confirmed reverse DNS, SPF/DMARC and both Received hops, and keep the
message nowhere. An expired or unknown ``probe-`` address is refused at RCPT.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dns_server import DnsServer, dns_server_fixture  # noqa: F401
from hato.diag import PROBES_DIR, ProbeStore

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

RECEIVER = "mx.test.example"
SENDER = "sender.test.example"


def _receiver(factory: Callable[..., HatoProcess], dns: DnsServer) -> HatoProcess:
    receiver = factory(name="receiver", extra_args=("-o", f'dns.nameservers=["{dns.address}"]'))
    receiver.start()
    return receiver


def _sender(factory: Callable[..., HatoProcess], receiver: HatoProcess) -> HatoProcess:
    sender = factory(
        name="sender",
        accept_all=False,
        extra_args=(
            "--hostname",
            SENDER,
            "-o",
            'relay.trusted_networks=["127.0.0.0/8"]',
            "-o",
            f'relay.transports=["{RECEIVER} 127.0.0.1:{receiver.port}"]',
            "-o",
            f'relay.tls_policy=["{RECEIVER} encrypt"]',
        ),
    )
    sender.start()
    return sender


def _publish(dns: DnsServer) -> None:
    dns.add("1.0.0.127.in-addr.arpa", "PTR", f"{SENDER}.")
    dns.add(SENDER, "A", "127.0.0.1")
    dns.add(SENDER, "TXT", '"v=spf1 ip4:127.0.0.1 -all"')
    dns.add(f"_dmarc.{SENDER}", "TXT", '"v=DMARC1; p=none"')


def _send(sender: HatoProcess, to: str) -> None:
    # No Message-ID: a header problem the analysis must name.
    message = (
        f"From: Alice <alice@{SENDER}>\r\nTo: <{to}>\r\nSubject: probe test\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n\r\nhello\r\n"
    )
    with smtplib.SMTP("127.0.0.1", sender.port, local_hostname="client.test.example") as smtp:
        smtp.sendmail(f"alice@{SENDER}", [to], message.encode())


def _mailbox_files(hato: HatoProcess) -> list[str]:
    root = hato.data_dir / "mailboxes"
    return [str(p) for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_relayed_message_is_analysed_with_tls_helo_and_hops_and_kept_nowhere(
    hato_factory: Callable[..., HatoProcess], dns_server: DnsServer
) -> None:
    _publish(dns_server)
    receiver = _receiver(hato_factory, dns_server)
    sender = _sender(hato_factory, receiver)
    waiting = subprocess.Popen(
        [
            str(receiver_cli_hato()),
            "test",
            "--receive",
            "--wait",
            "--timeout",
            "60",
            "--json",
            "--data-dir",
            str(receiver.data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr is not None
        first = waiting.stderr.readline()
        assert first.startswith("Test address: probe-"), first
        address = first.split()[-1]
        assert address.endswith(f"@{RECEIVER}")
        _send(sender, address)
        out, err = waiting.communicate(timeout=90)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err
    record = json.loads(out)
    assert record["address"] == address
    (analysis,) = record["analyses"]
    session = analysis["session"]
    assert session["helo"] == SENDER
    assert session["client_ip"] == "127.0.0.1"
    assert session["tls_version"] in ("TLSv1.2", "TLSv1.3") and session["tls_cipher"]
    assert session["protocol"] == "ESMTPS"
    # The flight recorder's lines: the client's commands, STARTTLS among them, timed.
    commands = [t["command"].split()[0].upper() for t in analysis.get("timings", [])]
    assert "STARTTLS" in commands and "DATA" in commands, analysis.get("timings")
    hops = analysis["hops"]
    assert [hop["by"] for hop in hops] == [SENDER, RECEIVER]
    assert hops[0]["from"] == "client.test.example"
    assert hops[1]["delay"] is not None and 0 <= hops[1]["delay"] < 60
    checks = {check["name"]: check for check in analysis["checks"]}
    assert checks["session"]["status"] == "ok"
    assert checks["reverse-dns"]["facts"]["confirmed"] == SENDER
    assert checks["reverse-dns"]["status"] == "ok"
    assert checks["spf"]["facts"]["result"] == "pass"
    assert checks["dmarc"]["facts"]["result"] == "pass"
    assert checks["dkim"]["findings"][0]["code"] == "probe-dkim-none"
    header_codes = [f["code"] for f in checks["header"]["findings"]]
    assert header_codes == ["probe-no-message-id"]
    # Discarded: nowhere in the receiver's spool or mailboxes, and the sender was told 250.
    sender.wait_for_event("delivered", timeout=30)
    assert receiver.queue() == [] and _mailbox_files(receiver) == []
    assert receiver.events("filter_verdict", action="discard")
    # --show prints it again, in words.
    shown = receiver.cli("test", "--receive", "--show", address)
    assert shown.returncode == 0, shown.stderr
    assert f"HELO        {SENDER}" in shown.stdout and "TLSv1." in shown.stdout
    assert "no Message-ID" in shown.stdout


def receiver_cli_hato() -> Path:
    """The console script beside the interpreter running the tests (as conftest's)."""
    return Path(sys.executable).with_name("hato")


def test_expired_and_unknown_test_addresses_are_refused(
    hato_factory: Callable[..., HatoProcess],
    dns_server: DnsServer,
    smtp_connect: Callable[[int], SmtpLineClient],
) -> None:
    receiver = _receiver(hato_factory, dns_server)
    store = ProbeStore(receiver.data_dir / PROBES_DIR)
    expired = store.create(RECEIVER, lifetime=-1.0)
    live = store.create(RECEIVER)
    client = smtp_connect(receiver.port)
    client.read_reply()
    client.reply("EHLO client.test.example")
    assert client.reply("MAIL FROM:<a@example.org>").startswith("250")
    # The catch-all the test server has would take these; test addresses never fall to it.
    assert client.reply(f"RCPT TO:<{expired.address}>").startswith("550 5.1.1")
    assert client.reply(f"RCPT TO:<probe-nosuch12@{RECEIVER}>").startswith("550 5.1.1")
    assert client.reply(f"RCPT TO:<{live.address}>").startswith("250")
    # A test address's message is its own: another recipient waits for its own transaction.
    assert client.reply(f"RCPT TO:<someone@{RECEIVER}>").startswith("452 4.5.3")
    assert client.reply("RSET").startswith("250")
    assert client.reply("MAIL FROM:<a@example.org>").startswith("250")
    assert client.reply(f"RCPT TO:<someone@{RECEIVER}>").startswith("250")
    assert client.reply(f"RCPT TO:<{live.address}>").startswith("452 4.5.3")
