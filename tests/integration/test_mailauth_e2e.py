"""Mail authentication end to end between real ``hato serve`` processes.

Three servers, one per domain, each on its own loopback address and all on one port
(``relay.port``), find each other through MX records in a test DNS server that also
publishes the domains' SPF, DKIM and DMARC records. They are started once for the module.

    a.test  MX mx.a.test  127.0.0.2  Hato A: the sender's side; loopback clients trusted,
                                    so what alice submits leaves signed with a.test's key
    b.test  MX mx.b.test  127.0.0.3  Hato B: the receiver; every client is from outside;
                                    fwd@b.test and fwd-gone@b.test forward to c.test
    c.test  MX mx.c.test  127.0.0.4  Hato C: the forwarder's next hop, also all outside
    q.test                           DMARC p=quarantine, no server
    e.test  MX 0 .                   takes no mail (C's alias there fails at once)

Clients are plain ``smtplib`` or a line-by-line socket; what B and C stored is read from
their Maildirs; their stderr must never show a traceback.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import re
import smtplib
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dns_server import DnsServer
from hato import mailauth
from hato.accounts import ACCOUNTS_FILE, AccountStore
from hato.delivery import MaildirAgent

if TYPE_CHECKING:
    from conftest import HatoProcess

A_HOST, B_HOST, C_HOST = "127.0.0.2", "127.0.0.3", "127.0.0.4"
PORT_TRIES = 20
# Short, so the lookup that is never answered costs the test a second, not five.
DNS_TIMEOUT = 1
SPF_A = "v=spf1 ip4:127.0.0.0/8 -all"


@dataclass(frozen=True, slots=True)
class Net:
    dns: DnsServer
    port: int
    a: HatoProcess
    b: HatoProcess
    c: HatoProcess


def _shared_port(hosts: Sequence[str]) -> int:
    """A port free on every one of ``hosts`` (the kernel picks it on the first)."""
    for _ in range(PORT_TRIES):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind((hosts[0], 0))
            port: int = first.getsockname()[1]
            try:
                for host in hosts[1:]:
                    stack.enter_context(socket.socket()).bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def ok(hato: HatoProcess, *args: str) -> str:
    done = hato.cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def publish_dkim(hato: HatoProcess, dns: DnsServer, domain: str) -> None:
    """The zone-file lines ``hato dkim dns`` prints, into the DNS server."""
    for line in ok(hato, "dkim", "dns", domain).splitlines():
        if line.startswith("zone:"):
            owner, _, rest = line.removeprefix("zone:").strip().partition(" IN TXT ")
            dns.add(owner.removesuffix("."), "TXT", rest.strip()[1:-1].strip())


@pytest.fixture(scope="module")
def net(module_hato_factory: Callable[..., HatoProcess]) -> Iterator[Net]:
    with DnsServer() as dns:
        port = _shared_port([A_HOST, B_HOST, C_HOST])
        for name, host in (("a", A_HOST), ("b", B_HOST), ("c", C_HOST)):
            dns.add(f"{name}.test", "MX", f"10 mx.{name}.test")
            dns.add(f"mx.{name}.test", "A", host)
        dns.add("e.test", "MX", "0 .")
        dns.add("a.test", "TXT", f'"{SPF_A}"')
        dns.add("_dmarc.a.test", "TXT", '"v=DMARC1; p=reject"')
        dns.add("b.test", "TXT", f'"{SPF_A.replace("a.test", "b.test")}"')
        dns.add("q.test", "TXT", '"v=spf1 -all"')
        dns.add("_dmarc.q.test", "TXT", '"v=DMARC1; p=quarantine"')
        common = (
            f'dns.nameservers=["{dns.address}"]',
            f"dns.timeout={DNS_TIMEOUT}",
            f"relay.port={port}",
            "queue.retry_initial=1",
            "queue.retry_max=2",
            "mailauth.check=true",
        )

        def server(name: str, host: str, *options: str) -> HatoProcess:
            return module_hato_factory(
                name,
                *common,
                *options,
                listen=f"{host}:{port}",
                hostname=f"mx.{name}.test",
                accept_all=False,
                start=False,
            )

        a = server("a", A_HOST, 'relay.trusted_networks=["127.0.0.0/8"]')
        b = server("b", B_HOST, "relay.trusted_networks=[]", 'mailauth.srs_domain="b.test"')
        c = server("c", C_HOST, "relay.trusted_networks=[]")
        # Each `hato` command costs a second or two: the ones the scenarios are about run
        # through the CLI, the rest straight into the account store, the servers side by side.
        mailboxes = {a: ["alice@a.test"], b: ["bob@b.test"], c: ["carol@c.test"]}
        aliases = {
            b: [("fwd-unknown@b.test", "nobody@c.test"), ("fwd-gone@b.test", "gone@c.test")],
            c: [("gone@c.test", "x@e.test")],
        }

        def prepare(hato: HatoProcess) -> None:
            domain = hato.hostname.removeprefix("mx.")
            ok(hato, "domain", "add", domain, *(("--no-dkim",) if hato is c else ()))
            if hato is b:
                ok(hato, "alias", "add", "fwd@b.test", "carol@c.test")
            with AccountStore(hato.data_dir / ACCOUNTS_FILE) as accounts:
                for address in mailboxes[hato]:
                    accounts.add_user(address)
                for source, target in aliases.get(hato, []):
                    accounts.add_alias(source, target)
            if hato is not c:
                publish_dkim(hato, dns, domain)
            hato.start()

        with ThreadPoolExecutor(3) as pool:
            list(pool.map(prepare, (a, b, c)))
        yield Net(dns, port, a, b, c)
        assert not dns.errors, "the test DNS server failed:\n" + "\n".join(dns.errors)


@pytest.fixture(autouse=True)
def no_tracebacks(net: Net) -> Iterator[None]:
    """Bad input gets a result, never a traceback, in any server's output."""
    yield
    for hato in (net.a, net.b, net.c):
        assert "Traceback" not in hato.stderr(), hato.stderr()


# -- helpers --------------------------------------------------------------------------


def message(
    subject: str, *, sender: str = "Alice <alice@a.test>", to: str = "bob@b.test", extra: str = ""
) -> tuple[str, bytes]:
    """A small message with its own Message-ID (returned first) to find it by."""
    slug = re.sub(r"\W+", "-", subject)
    message_id = f"<{slug}.{time.monotonic_ns()}@test>"
    text = (
        f"{extra}From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Wed, 02 Dec 2026 04:00:00 +0000\r\nMessage-ID: {message_id}\r\n"
        f"\r\nHello from {subject}.\r\n"
    )
    return message_id, text.encode()


def send(hato: HatoProcess, sender: str, recipients: list[str], data: bytes) -> tuple[int, bytes]:
    """One transaction; the reply to the data."""
    with smtplib.SMTP(hato.host, hato.port, timeout=15) as client:
        client.ehlo("client.outside.test")
        assert client.mail(sender)[0] == 250
        for address in recipients:
            assert client.rcpt(address)[0] == 250, address
        return client.data(data)


def maildir(hato: HatoProcess, address: str) -> Path:
    local, _, domain = address.rpartition("@")
    return MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname).mailbox_dir(
        domain, local
    )


def find(hato: HatoProcess, address: str, marker: str, folder: str = "") -> EmailMessage:
    """The message in ``address``'s mailbox (or its Maildir++ ``folder``) holding
    ``marker``, waiting for it."""
    root = maildir(hato, address) / folder

    def found() -> bytes | None:
        for path in sorted(root.glob("new/*")) + sorted(root.glob("cur/*")):
            data = path.read_bytes()
            if marker.encode() in data:
                return data
        return None

    raw: bytes = hato.poll(found, what=f"{marker} in {address}'s {folder or 'inbox'}")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def stored_anywhere(hato: HatoProcess, address: str, marker: str) -> bool:
    """Whether any folder of ``address``'s mailbox holds a message with ``marker``."""
    return any(
        marker.encode() in path.read_bytes()
        for path in maildir(hato, address).glob("**/*")
        if path.is_file() and path.parent.name in ("new", "cur")
    )


def results(stored: EmailMessage, authserv_id: str) -> str:
    """The one Authentication-Results field of ``authserv_id``, unfolded."""
    ours = [
        " ".join(str(field).split())
        for field in stored.get_all("Authentication-Results", [])
        if str(field).split(";")[0].strip() == authserv_id
    ]
    assert len(ours) == 1, stored.get_all("Authentication-Results")
    return ours[0]


# -- 1: A signs, B verifies --------------------------------------------------------------


def test_mail_from_a_passes_dkim_and_dmarc_at_b(net: Net) -> None:
    message_id, data = message("signed at A")
    started = time.monotonic()
    assert send(net.a, "alice@a.test", ["bob@b.test"], data)[0] == 250
    stored = find(net.b, "bob@b.test", message_id)
    elapsed = time.monotonic() - started

    assert stored["DKIM-Signature"] is not None
    found = results(stored, "mx.b.test")
    assert "dkim=pass" in found and "header.d=a.test" in found, found
    assert "dmarc=pass" in found and "header.from=a.test" in found, found
    # SPF at MAIL FROM: v=spf1 ip4:127.0.0.0/8 -all covers A's address.
    assert "spf=pass" in found and "smtp.mailfrom=a.test" in found, found
    # B's field is above B's Received (only Return-Path and Delivered-To above it).
    assert stored.keys()[:4] == [
        "Return-Path",
        "Delivered-To",
        "Authentication-Results",
        "Received",
    ]
    assert elapsed < 10, elapsed


# -- 2: the same From, unsigned, straight to B ----------------------------------------


def test_unsigned_mail_from_a_straight_to_b_is_refused_naming_dmarc(net: Net) -> None:
    message_id, data = message("forged a.test")
    with smtplib.SMTP(net.b.host, net.b.port, timeout=15) as client:
        # Its own envelope sender: a.test's SPF covers every loopback address, so with
        # alice@a.test it would pass SPF, aligned, and so DMARC.
        client.ehlo("forger.outside.test")
        assert client.mail("forger@outside.test")[0] == 250
        assert client.rcpt("bob@b.test")[0] == 250
        code, text = client.data(data)
    assert code == 550, text
    assert text.startswith(b"5.7.1 ") and b"DMARC" in text, text

    rejected = net.b.wait_for_event("reject", sender="forger@outside.test")
    session = rejected["session"]
    time.sleep(0.5)  # anything logged twice would be there by now
    # The session's one refusal event, and the filter's verdict it came from.
    assert len(net.b.events("reject", session=session)) == 1
    (verdict,) = net.b.events("filter_verdict", session=session)
    assert rejected["command"] == "DATA", rejected
    assert rejected["reply"].startswith("550 5.7.1"), rejected
    assert "dmarc=fail (p=reject) header.from=a.test" in rejected["reason"], rejected
    assert verdict["filter"] == "mailauth" and verdict["action"] == "reject", verdict

    def traced() -> Any:
        done = net.b.cli("trace", "--sender", "forger@outside.test", "--since", "1h", "--json")
        if done.returncode != 0 or "dmarc=fail" not in done.stdout:
            return None
        return json.loads(done.stdout)

    # The flight recorder has the refusal once, with the reply and the reason.
    story = net.b.poll(traced, what="the refusal in hato trace")
    (refused,) = [r for r in story if "dmarc=fail" in r.get("reason", "")]
    assert refused["kind"] == "refusal" and refused["stage"] == "DATA", refused
    assert refused["session"] == rejected["session"], refused
    assert refused["reply"].startswith("550 5.7.1"), refused
    assert refused["reason"].startswith("dmarc=fail (p=reject) header.from=a.test"), refused
    assert not net.b.events("queued", message_id=message_id)
    assert not stored_anywhere(net.b, "bob@b.test", message_id)


# -- 3: p=quarantine ----------------------------------------------------------------------


def test_quarantine_policy_delivers_into_junk(net: Net) -> None:
    message_id, data = message("quarantined", sender="<news@q.test>")
    assert send(net.b, "news@q.test", ["bob@b.test"], data)[0] == 250
    stored = find(net.b, "bob@b.test", message_id, folder=".Junk")
    found = results(stored, "mx.b.test")
    assert "dmarc=fail" in found and "header.from=q.test" in found, found
    inbox = maildir(net.b, "bob@b.test")
    assert not [p for p in inbox.glob("[nc][eu]*/*") if message_id.encode() in p.read_bytes()]
    verdict = net.b.wait_for_event("filter_verdict", action="quarantine")
    assert "p=quarantine" in verdict["reason"], verdict


# -- 4: forwarding through an alias: ARC and SRS --------------------------------------


def test_forwarded_mail_arrives_at_c_sealed_and_srs_rewritten(net: Net) -> None:
    message_id, data = message("forwarded", to="fwd@b.test")
    assert send(net.a, "alice@a.test", ["fwd@b.test"], data)[0] == 250
    stored = find(net.c, "carol@c.test", message_id)

    at_c = results(stored, "mx.c.test")
    assert "arc=pass" in at_c, at_c
    # A's signature survived the forwarding untouched, so DMARC passes on its own.
    assert "dkim=pass" in at_c and "header.d=a.test" in at_c, at_c
    assert "dmarc=pass" in at_c, at_c
    # SRS: the envelope sender is B's now, and B's SPF covers it.
    assert "spf=pass" in at_c and "smtp.mailfrom=b.test" in at_c, at_c
    seal = " ".join(str(stored["ARC-Seal"]).split())
    assert "i=1" in seal and "d=b.test" in seal and "cv=none" in seal, seal
    # B's own results travelled in the ARC set, B's field itself too.
    arc_results = " ".join(str(stored["ARC-Authentication-Results"]).split())
    assert arc_results.startswith("i=1; mx.b.test;") and "dkim=pass" in arc_results
    assert "dkim=pass" in results(stored, "mx.b.test")
    return_path = str(stored["Return-Path"])
    match = re.fullmatch(r"<(SRS0=[^@]+@b\.test)>", return_path)
    assert match is not None, return_path
    assert "a.test" in match.group(1) and "alice" in match.group(1)


def test_a_refusal_at_c_reports_to_the_original_sender_at_a(net: Net) -> None:
    # C refuses at RCPT (no such user): B, the client, owes the report, and sends it to
    # the sender it stored (alice@a.test), not to its own SRS address.
    message_id, data = message("to nobody", to="fwd-unknown@b.test")
    assert send(net.a, "alice@a.test", ["fwd-unknown@b.test"], data)[0] == 250
    failed = net.b.wait_for_event("failed", original="fwd-unknown@b.test")
    assert failed["recipient"] == "nobody@c.test" and failed["status"] == "5.1.1", failed
    assert failed["reverse_path"] == "alice@a.test", failed
    report = find(net.a, "alice@a.test", message_id)
    assert report.get_content_type() == "multipart/report"
    assert str(report["Return-Path"]) == "<>"
    assert "nobody@c.test" in report.as_string()


def test_a_later_bounce_from_c_goes_to_b_srs_address_and_on_to_a(net: Net) -> None:
    # C accepts (gone@c.test is an alias), then cannot deliver (e.test takes no mail):
    # C's report goes to the envelope sender it saw, B's SRS address; B sends it on.
    message_id, data = message("gone away", to="fwd-gone@b.test")
    started = time.monotonic()
    assert send(net.a, "alice@a.test", ["fwd-gone@b.test"], data)[0] == 250
    failed = net.c.wait_for_event("failed", original="gone@c.test")
    assert failed["recipient"] == "x@e.test" and failed["status"] == "5.1.10", failed
    assert re.fullmatch(r"SRS0=[^@]+@b\.test", failed["reverse_path"]), failed
    report = find(net.a, "alice@a.test", message_id)
    elapsed = time.monotonic() - started
    assert report.get_content_type() == "multipart/report"
    assert "Reporting-MTA: dns; mx.c.test" in report.as_string()
    delivered = net.b.wait_for_event("delivered", recipient=failed["reverse_path"])
    assert delivered["detail"].startswith("mx.a.test said: 250 "), delivered
    assert elapsed < 15, elapsed


def test_srs_addresses_at_b_lead_back_or_are_refused(net: Net) -> None:
    srs = mailauth.Srs(b"a secret that is not B's", "b.test")
    forged = srs.forward("alice@a.test")
    with smtplib.SMTP(net.b.host, net.b.port, timeout=15) as client:
        client.ehlo("outside.test")
        assert client.mail("")[0] == 250
        code, text = client.rcpt(forged)
    assert code == 550 and text.startswith(b"5.1.1"), (code, text)

    # A real one, as C saw it on a forwarded message: a report to it reaches alice at A.
    forwarded_id, data = message("forwarded again", to="fwd@b.test")
    assert send(net.a, "alice@a.test", ["fwd@b.test"], data)[0] == 250
    stored = find(net.c, "carol@c.test", forwarded_id)
    address = str(stored["Return-Path"]).strip("<>")
    message_id, data = message("bounce to srs", sender="MAILER-DAEMON@mx.c.test", to=address)
    assert send(net.b, "", [address], data)[0] == 250
    back = find(net.a, "alice@a.test", message_id)
    assert str(back["Return-Path"]) == "<>"


# -- 5: forged Authentication-Results ------------------------------------------------


def test_forged_results_claiming_b_are_removed_others_kept(net: Net) -> None:
    extra = (
        "Authentication-Results: mx.b.test; dkim=pass header.d=a.test\r\n"
        "Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=x.test\r\n"
    )
    message_id, data = message("forged results", sender="<x@outside.test>", extra=extra)
    assert send(net.b, "x@outside.test", ["bob@b.test"], data)[0] == 250
    stored = find(net.b, "bob@b.test", message_id)
    fields = [" ".join(str(f).split()) for f in stored.get_all("Authentication-Results", [])]
    assert "mx.elsewhere.test; spf=pass smtp.mailfrom=x.test" in fields, fields
    ours = results(stored, "mx.b.test")  # exactly one: B's own
    assert "dkim=none" in ours, ours
    assert "mx.b.test; dkim=pass header.d=a.test" not in fields


# -- 6: bad input through B ------------------------------------------------------------


def test_bad_input_gets_250_and_a_result_never_a_traceback(net: Net) -> None:
    net.dns.silence("slow._domainkey.slow.test")
    cases = {
        "no d=": (
            "DKIM-Signature: v=1; a=rsa-sha256; s=sel; c=relaxed/relaxed; h=from;"
            " bh=AAAA; b=AAAA\r\n",
            "<x@nod.test>",
            "dkim=permerror",
        ),
        "bad base64": (
            "DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=sel; c=relaxed/relaxed;"
            " h=from; bh=!!not*base64!!; b=%%%\r\n",
            "<x@badb64.test>",
            "dkim=permerror",
        ),
        "key lookup times out": (
            "DKIM-Signature: v=1; a=rsa-sha256; d=slow.test; s=slow; c=relaxed/relaxed;"
            " h=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"
            " b=dGVzdA==\r\n",
            "<x@slow.test>",
            "dkim=temperror",
        ),
        # Each author's domain is checked (RFC 7489 6.6.1); neither publishes DMARC.
        "two From addresses": ("", "<x@one.test>, <y@two.test>", "dmarc=none"),
    }
    try:
        for subject, (extra, sender, expected) in cases.items():
            message_id, data = message(subject, sender=sender, extra=extra)
            started = time.monotonic()
            code, text = send(net.b, "x@outside.test", ["bob@b.test"], data)
            took = time.monotonic() - started
            assert code == 250, (subject, code, text)
            stored = find(net.b, "bob@b.test", message_id)
            found = results(stored, "mx.b.test")
            assert expected in found, (subject, found)
            assert took < 3 * DNS_TIMEOUT + 3, (subject, took)
    finally:
        net.dns.heal("slow._domainkey.slow.test")


def test_a_timed_out_key_of_a_reject_domain_defers_never_refuses(net: Net) -> None:
    # a.test publishes p=reject; its signature's key cannot be fetched just now. DMARC
    # cannot tell (RFC 7489 6.6.2: temperror), so the client is asked to try again later
    # rather than told the message is forged.
    net.dns.silence("slow._domainkey.a.test")
    signature = (
        "DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=slow; c=relaxed/relaxed;"
        " h=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==\r\n"
    )
    try:
        message_id, data = message("key times out", extra=signature)
        with smtplib.SMTP(net.b.host, net.b.port, timeout=15) as client:
            client.ehlo("client.outside.test")
            assert client.mail("someone@outside.test")[0] == 250
            assert client.rcpt("bob@b.test")[0] == 250
            code, text = client.data(data)
        assert code == 451 and text.startswith(b"4.7."), (code, text)
    finally:
        net.dns.heal("slow._domainkey.a.test")
    assert not stored_anywhere(net.b, "bob@b.test", message_id)
    verdict = net.b.wait_for_event("filter_verdict", action="defer")
    assert verdict["reason"].startswith("dmarc=temperror (p=reject) header.from=a.test"), verdict
