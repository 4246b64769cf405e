"""Why mail to a destination waits, as a real ``hato serve`` classifies it: replies from real
servers (a private Postfix refusing every client, a scripted next hop throttling and
greylisting, a Hato peer whose certificate does not verify), a closed port and NXDOMAIN,
each seen in ``hato queue destinations --json`` and ``hato queue list``."""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from postfix_server import Postfix, find_postfix
from scripted_smtp import ScriptedSmtp

from dns_server import DnsServer

if TYPE_CHECKING:
    from conftest import HatoProcess

SCRIPTED_HOST = "127.0.0.8"
# What real receivers say, each to one recipient of the scripted next hop.
THROTTLED = (
    "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of unsolicited mail"
    " originating from your IP address. To protect our users from spam, mail sent from your"
    " IP address has been temporarily rate limited. - gsmtp"
)
GREYLISTED = (
    "451 4.7.1 <u@grey.test>: Recipient address rejected: Greylisted, see"
    " http://postgrey.schweikert.ch/help/grey.test.html"
)
LISTED = (
    "421 4.7.0 [127.0.0.1] Your IP address is listed, see"
    " https://check.spamhaus.org/listed/?searchterm=127.0.0.1"
)
OVER_QUOTA = "452 4.2.2 The email account that you tried to reach is over quota."
BLOCKED = (
    "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org;"
    " https://www.spamhaus.org/query/ip/127.0.0.1"
)
SCRIPT = {
    "u@throttle.test": [THROTTLED],
    "u@grey.test": [GREYLISTED],
    "u@listed.test": [LISTED],
    "u@full.test": [OVER_QUOTA],
    "u@bounce.test": [BLOCKED],
}


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedSmtp]:
    with ScriptedSmtp(SCRIPTED_HOST, _free_port(SCRIPTED_HOST), replies=SCRIPT) as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:  # knows no names: everything is NXDOMAIN
        yield server


@pytest.fixture(scope="module")
def sender(
    module_hato_factory: Callable[..., HatoProcess], scripted: ScriptedSmtp, dns: DnsServer
) -> HatoProcess:
    """A Hato relaying for loopback clients, with a next hop per class under test."""
    tls_peer = module_hato_factory("tlspeer")  # STARTTLS with a self-signed certificate
    hop = f"{scripted.host}:{scripted.port}"
    transports = [
        "relay.test.example 127.0.0.1:9",  # closed port (the catch-all's target)
        *(f"{d} {hop}" for d in ("throttle.test", "grey.test", "listed.test", "full.test")),
        f"bounce.test {hop}",
        f"tls.test 127.0.0.1:{tls_peer.port}",
        "nxhop.test mx.nowhere.test:25",  # a next hop whose name is NXDOMAIN
    ]
    return module_hato_factory(
        "sender",
        'relay.trusted_networks=["127.0.0.0/8"]',
        f"relay.transports={json.dumps(transports)}",
        'relay.tls_policy=["tls.test verify"]',
        f'dns.nameservers=["{dns.address}"]',
    )


def send(server: HatoProcess, *recipients: str) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        for recipient in recipients:
            client.sendmail("a@example.org", [recipient], b"Subject: c\r\n\r\nc\r\n")


def wait_deferred(server: HatoProcess, recipient: str) -> dict[str, Any]:
    found = server.poll(lambda: server.events("deferred", recipient=recipient), what=recipient)
    return dict(found[-1])


def destinations(server: HatoProcess, run: Callable[..., Any]) -> dict[str, dict[str, Any]]:
    shown = run("queue", "destinations", "--json", "--data-dir", server.data_dir)
    assert shown.returncode == 0, shown.stderr
    return {d["domain"]: d for d in json.loads(shown.stdout)}


@pytest.fixture(scope="module")
def deferred_all(sender: HatoProcess) -> HatoProcess:
    send(
        sender,
        "u@throttle.test",
        "u@grey.test",
        "u@listed.test",
        "u@full.test",
        "u@tls.test",
        "u@nxhop.test",
        "x@localhost",  # an alias of the catch-all, to relay.test.example: a closed port
        "u@bounce.test",
        "u@nxdomain.test",
    )
    for recipient in (
        "u@throttle.test",
        "u@grey.test",
        "u@listed.test",
        "u@full.test",
        "u@tls.test",
        "u@nxhop.test",
        "hold@relay.test.example",
    ):
        wait_deferred(sender, recipient)
    for recipient in ("u@bounce.test", "u@nxdomain.test"):
        sender.poll(lambda r=recipient: sender.events("failed", recipient=r), what=recipient)
    return sender


@pytest.mark.parametrize(
    ("domain", "reason", "status"),
    [
        ("throttle.test", "rate-limited", "4.4.1"),
        ("grey.test", "greylisted", "4.7.1"),
        ("listed.test", "blocklisted", "4.4.1"),
        ("full.test", "mailbox-full", "4.2.2"),
        ("tls.test", "tls-failure", "4.4.1"),
        ("nxhop.test", "dns-failure", "4.4.3"),
        ("relay.test.example", "connection", "4.4.1"),
    ],
)
def test_each_destination_is_shown_with_its_class(
    deferred_all: HatoProcess,
    hato_cli: Callable[..., Any],
    domain: str,
    reason: str,
    status: str,
) -> None:
    found = destinations(deferred_all, hato_cli)
    shown = found[domain]
    assert shown["reason"] == reason, shown
    assert (shown["recipients"], shown["messages"], shown["last_status"]) == (1, 1, status)
    assert shown["summary"] and shown["next_step"] and shown["last_reply"]
    # The event says the same as the queue state.
    recipient = "hold@relay.test.example" if domain == "relay.test.example" else f"u@{domain}"
    assert wait_deferred(deferred_all, recipient)["reason_class"] == reason


def test_replies_are_kept_as_the_next_hop_said_them(
    deferred_all: HatoProcess, hato_cli: Callable[..., Any]
) -> None:
    found = destinations(deferred_all, hato_cli)
    assert "spamhaus.org" in found["listed.test"]["last_reply"]
    assert "certificate verify failed" in found["tls.test"]["last_reply"]
    assert "mx.nowhere.test" in found["nxhop.test"]["last_reply"]
    # Failed mail has left the queue: it is no destination with deferred mail.
    assert "bounce.test" not in found and "nxdomain.test" not in found


def test_permanent_failures_carry_their_class_too(deferred_all: HatoProcess) -> None:
    (bounced,) = deferred_all.events("failed", recipient="u@bounce.test")
    assert (bounced["status"], bounced["reason_class"]) == ("5.7.1", "blocklisted")
    (nowhere,) = deferred_all.events("failed", recipient="u@nxdomain.test")
    assert (nowhere["status"], nowhere["reason_class"]) == ("5.1.2", "dns-failure")


def test_queue_list_shows_the_class_per_deferred_recipient(
    deferred_all: HatoProcess, hato_cli: Callable[..., Any]
) -> None:
    listing = hato_cli("queue", "list", "--data-dir", deferred_all.data_dir)
    assert listing.returncode == 0, listing.stderr
    assert "[greylisted: greylisted: the receiver defers a first attempt" in listing.stdout
    assert "[blocklisted: your address is listed on a blocklist]" in listing.stdout
    as_json = hato_cli("queue", "list", "--json", "--data-dir", deferred_all.data_dir)
    recipients = [r for e in json.loads(as_json.stdout) for r in e["recipients"]]
    by_address = {r["address"]: r for r in recipients}
    assert by_address["u@throttle.test"]["reason"] == "rate-limited"
    assert by_address["u@throttle.test"]["reason_text"].startswith("the receiver is throttling")
    assert by_address["x@localhost"]["destination"] == "relay.test.example"


def test_destinations_in_words(deferred_all: HatoProcess, hato_cli: Callable[..., Any]) -> None:
    text = hato_cli("queue", "destinations", "--data-dir", deferred_all.data_dir).stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("listed.test: "))
    assert line.startswith("listed.test: 1 deferred since ")
    assert line.endswith(", 4.4.1: your address is listed on a blocklist")
    assert "  next: Look the IP up on the list" in text


class _RefusingPostfix(Postfix):
    """A Postfix that refuses every client at RCPT, softened to 4xx (soft_bounce) so the
    refusal keeps the mail queued: Postfix's own wording of a policy refusal."""

    def _write_config(self) -> None:
        super()._write_config()
        with (self.config_dir / "main.cf").open("a") as main:
            main.write("smtpd_client_restrictions = reject\nsoft_bounce = yes\n")


@pytest.fixture(scope="module")
def refusing_postfix() -> Iterator[Postfix]:
    if os.geteuid() != 0 or shutil.which("postconf") is None:
        pytest.skip("a private Postfix needs root and Postfix installed")
    server = _RefusingPostfix(*find_postfix())
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_a_postfix_refusing_the_client_is_a_policy_refusal(
    module_hato_factory: Callable[..., HatoProcess],
    refusing_postfix: Postfix,
    hato_cli: Callable[..., Any],
) -> None:
    hop = f"{refusing_postfix.host}:{refusing_postfix.port}"
    server = module_hato_factory(
        "topostfix",
        'relay.trusted_networks=["127.0.0.0/8"]',
        f'relay.transports=["pf.test {hop}", "relay.test.example 127.0.0.1:9"]',
    )
    send(server, "bob@pf.test")
    event = wait_deferred(server, "bob@pf.test")
    assert event["reason_class"] == "policy", event
    shown = destinations(server, hato_cli)["pf.test"]
    assert shown["reason"] == "policy" and shown["last_status"] == "4.7.1"
    assert "Client host rejected: Access denied" in shown["last_reply"]
