"""DKIM signing in a running server: mail from a trusted client in a local domain leaves
signed with the key ``hato domain add`` made, the signature verifies against the record
``hato dkim dns`` prints (dkimpy, through the test DNS server), and a key whose published
record contradicts it is no longer signed with, with a warning event."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from typing import TYPE_CHECKING

import dkim
import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.delivery import MaildirAgent
from hato.mailauth import MailDns, verify_dkim

if TYPE_CHECKING:
    from conftest import HatoProcess

DOMAIN = "signer.test"
MESSAGE = (
    f"From: Alice <alice@{DOMAIN}>\r\n"
    "To: postmaster@localhost\r\n"
    "Subject: signed on the way in\r\n"
    "\r\n"
    "Hello.\r\n"
).encode()


def publish(hato: HatoProcess, dns_server: DnsServer, domain: str) -> None:
    """The zone-file lines ``hato dkim dns`` prints, into the DNS server."""
    done = hato.cli("dkim", "dns", domain)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        if line.startswith("zone:"):
            owner, _, rest = line.removeprefix("zone:").strip().partition(" IN TXT ")
            dns_server.add(owner.removesuffix("."), "TXT", rest.strip()[1:-1].strip())


def stored(hato: HatoProcess, count: int) -> list[bytes]:
    agent = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname)

    def found() -> list[bytes]:
        messages = [m.path.read_bytes() for m in agent.messages(hato.hostname, "postmaster")]
        return messages if len(messages) >= count else []

    return hato.poll(found, what=f"{count} message(s)")  # type: ignore[no-any-return]


def send(hato: HatoProcess) -> None:
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        assert client.sendmail(f"alice@{DOMAIN}", ["postmaster@localhost"], MESSAGE) == {}


@pytest.fixture
def signer(hato_factory: Callable[..., HatoProcess], dns_server: DnsServer) -> HatoProcess:
    hato = hato_factory(
        accept_all=False,
        extra_args=(
            "-o",
            'relay.trusted_networks=["127.0.0.0/8"]',
            "-o",
            f'dns.nameservers=["{dns_server.address}"]',
            "-o",
            "dns.timeout=2",
        ),
    )
    done = hato.cli("domain", "add", DOMAIN)
    assert done.returncode == 0, done.stderr
    return hato


def test_mail_from_a_trusted_client_is_signed_and_verifies(
    signer: HatoProcess, dns_server: DnsServer
) -> None:
    publish(signer, dns_server, DOMAIN)
    signer.start()
    send(signer)
    (message,) = stored(signer, 1)
    # What the mailbox holds is what was signed, plus the delivery fields above it.
    signed = message.split(b"DKIM-Signature:", 1)
    assert len(signed) == 2, message
    body = b"DKIM-Signature:" + signed[1]
    assert b" d=signer.test;" in body and b"c=relaxed/relaxed" in body
    assert dkim.verify(body, dnsfunc=_txt(dns_server)), body
    (result,) = verify_dkim(MailDns([dns_server.nameserver], 2.0), body)
    assert (result.result, result.domain) == ("pass", DOMAIN)


def test_a_key_that_dns_contradicts_is_not_signed_with(
    signer: HatoProcess, dns_server: DnsServer, hato_factory: Callable[..., HatoProcess]
) -> None:
    # Another key's record where this key's should be: the published record contradicts it.
    other = hato_factory(name="other")
    assert other.cli("domain", "add", DOMAIN).returncode == 0
    publish(other, dns_server, DOMAIN)
    signer.start()
    warning = signer.wait_for_event("dkim_key_checked", domain=DOMAIN)
    assert (warning["state"], warning["signing"]) == ("mismatch", False)
    send(signer)
    (message,) = stored(signer, 1)
    assert b"DKIM-Signature:" not in message


def _txt(dns_server: DnsServer) -> Callable[..., bytes | None]:
    resolver = MailDns([dns_server.nameserver], 2.0)

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        found = resolver.txt(name.decode().rstrip("."))
        return found[0] if found else None

    return lookup
