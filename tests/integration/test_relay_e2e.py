"""Outbound relay end to end: MX routing, retries and delivery reports between real servers.

Every test runs real ``hato serve`` processes, each on its own loopback address and all on
one port P (``relay.port``: the port mail exchangers are contacted on), a real DNS server
(tests/dns_server.py) publishing the zone below, and, where a next hop must misbehave on
cue, a scripted SMTP server (scripted_smtp.py). Clients are plain ``smtplib``.

    a.test  MX 10 mx.a.test    127.0.0.2  Hato A, the sender's side
    b.test  MX 10 mx.b.test    127.0.0.3  Hato B
    c.test  MX 10 dead.c.test  127.0.0.4  nothing listens there
            MX 20 mx.b.test
    d.test  MX 10 mx.d.test    127.0.0.5  the scripted server
    e.test  MX 0 .                        a null MX: the domain takes no mail
    f.test  (not in the zone)             NXDOMAIN
    g.test  MX 10 mx.d.test, MX 20 mx.b.test (added by the one test that uses it)
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
import smtplib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import TYPE_CHECKING, Any, cast

import pytest
from scripted_smtp import ACCEPTED, ScriptedSmtp

from dns_server import DnsServer, Query, dns_server_fixture  # noqa: F401
from hato.delivery import MaildirAgent

if TYPE_CHECKING:
    from conftest import HatoProcess

A_HOST, B_HOST, DEAD_HOST, SCRIPTED_HOST = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
SIDES = {"a": (A_HOST, "a.test"), "b": (B_HOST, "b.test")}
# The scripted next hop's refusal, worded as Postfix words it.
UNKNOWN_USER = "550 5.1.1 <nobody@d.test>: user unknown"
PORT_TRIES = 20


@dataclass(frozen=True, slots=True)
class Net:
    """The test network: its DNS server and the one port every SMTP server listens on."""

    dns: DnsServer
    port: int

    def options(self) -> tuple[str, ...]:
        return (
            "-o",
            f'dns.nameservers=["{self.dns.address}"]',
            "-o",
            f"relay.port={self.port}",
        )


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
                continue  # taken on another address: pick again
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


@pytest.fixture
def net(dns_server: DnsServer) -> Net:
    zone = [
        ("a.test", "MX", "10 mx.a.test"),
        ("mx.a.test", "A", A_HOST),
        ("b.test", "MX", "10 mx.b.test"),
        ("mx.b.test", "A", B_HOST),
        ("c.test", "MX", "10 dead.c.test"),
        ("c.test", "MX", "20 mx.b.test"),
        ("dead.c.test", "A", DEAD_HOST),
        ("d.test", "MX", "10 mx.d.test"),
        ("mx.d.test", "A", SCRIPTED_HOST),
        ("e.test", "MX", "0 ."),
        # A PTR for the address every connection here comes from (the kernel picks
        # 127.0.0.1 towards any 127.x address): never asked for, loopback is localhost.
        ("1.0.0.127.in-addr.arpa", "PTR", "loopback.test"),
    ]
    for name, rtype, value in zone:
        dns_server.add(name, rtype, value)
    return Net(dns_server, _shared_port([A_HOST, B_HOST, DEAD_HOST, SCRIPTED_HOST]))


@pytest.fixture
def next_hop(net: Net) -> Iterator[Callable[..., ScriptedSmtp]]:
    """Start the scripted server at mx.d.test: ``next_hop(replies={...}, dsn=False)``."""
    started: list[ScriptedSmtp] = []

    def start(**kwargs: Any) -> ScriptedSmtp:
        server = ScriptedSmtp(SCRIPTED_HOST, net.port, hostname="mx.d.test", **kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        assert not server.errors, "the scripted server failed:\n" + "\n".join(server.errors)


def cli(hato: HatoProcess, *args: str) -> subprocess.CompletedProcess[str]:
    result = hato.cli(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def start_hato(
    hato_factory: Callable[..., HatoProcess],
    net: Net,
    side: str,
    *users: str,
    trusted: bool = False,
    extra: tuple[str, ...] = (),
) -> HatoProcess:
    """Hato A or B, named mx.<domain>, its domain local and ``users`` its mailboxes."""
    host, domain = SIDES[side]
    args = [*net.options(), "-o", "queue.retry_initial=1", "-o", "queue.retry_max=2"]
    if trusted:  # the clients here relay through it
        args += ["-o", 'relay.trusted_networks=["127.0.0.0/8"]']
    hato = hato_factory(
        listen=f"{host}:{net.port}",
        accept_all=False,
        name=side,
        extra_args=(*args, *extra),
    )
    hato.hostname = f"mx.{domain}"
    hato.start()
    cli(hato, "domain", "add", domain)
    for user in users:
        cli(hato, "user", "add", user)
    return hato


def submit(
    hato: HatoProcess,
    sender: str,
    recipients: list[str] | dict[str, list[str]],
    body: bytes,
    *,
    mail_options: Sequence[str] = (),
) -> None:
    """One transaction; ``recipients`` may map each address to its RCPT parameters."""
    options = (
        recipients if isinstance(recipients, dict) else {address: [] for address in recipients}
    )
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(sender, list(mail_options))[0] == 250
        for address, params in options.items():
            assert client.rcpt(address, params)[0] == 250, address
        assert client.data(body)[0] == 250


def mailbox(hato: HatoProcess, address: str) -> list[bytes]:
    """Every message in a mailbox (new/ and cur/), oldest first."""
    local, _, domain = address.rpartition("@")
    agent = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname)
    return [m.path.read_bytes() for m in agent.messages(domain, local)]


def all_mail(hato: HatoProcess) -> list[str]:
    """Every file in every mailbox of ``hato``, as paths relative to mailboxes/."""
    root = hato.data_dir / "mailboxes"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def wait_mail(hato: HatoProcess, address: str, count: int = 1) -> list[bytes]:
    found: list[bytes] = hato.poll(
        lambda: (messages := mailbox(hato, address)) and len(messages) >= count and messages,
        what=f"{count} message(s) for {address}",
    )
    return found


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery report as the sender received it."""

    message: EmailMessage
    fields: Message  # the per-message fields of its delivery-status part
    recipients: list[Message]  # one block per recipient
    returned: EmailMessage  # the third part: the message or its header section


def parse_report(raw: bytes) -> Report:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    text, status, returned = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()  # RFC 3464: per-message fields, then one per recipient
    assert isinstance(blocks, list) and isinstance(returned, EmailMessage)
    per_message, *recipients = cast(list[Message], blocks)
    return Report(message, per_message, recipients, returned)


# -- the scenarios ---------------------------------------------------------------------


def test_two_servers_exchange_mail_both_ways_through_mx(
    hato_factory: Callable[..., HatoProcess], net: Net
) -> None:
    reverse_dns = ("-o", "server.reverse_dns=true")
    a = start_hato(hato_factory, net, "a", "alice@a.test", trusted=True, extra=reverse_dns)
    b = start_hato(hato_factory, net, "b", "bob@b.test", trusted=True, extra=reverse_dns)

    body = b"Subject: hello B\r\nMessage-ID: <one@a.test>\r\n\r\nFrom A, by MX.\r\n"
    submit(a, "alice@a.test", ["bob@b.test"], body)
    (stored,) = wait_mail(b, "bob@b.test")
    assert stored.endswith(body)
    received = email.message_from_bytes(stored, policy=email.policy.default).get_all("Received")
    assert received is not None and len(received) == 2
    by_b, by_a = (" ".join(str(field).split()) for field in received)  # newest first
    # B heard from A (its EHLO name), the connection's address confirmed by reverse DNS.
    assert by_b.startswith("from mx.a.test (localhost [127.0.0.1]) by mx.b.test (Hato ")
    assert "for <bob@b.test>" in by_b
    assert re.match(r"from \S+ \(localhost \[127\.0\.0\.1\]\) by mx\.a\.test \(Hato ", by_a)
    assert stored.startswith(b"Return-Path: <alice@a.test>\r\nDelivered-To: bob@b.test\r\n")
    delivered = a.wait_for_event("delivered", recipient="bob@b.test")
    assert delivered["detail"].startswith("mx.b.test said: 250 ")
    assert Query("b.test", "MX", False) in net.dns.queries

    reply = b"Subject: Re: hello B\r\nIn-Reply-To: <one@a.test>\r\n\r\nBack from B.\r\n"
    submit(b, "bob@b.test", ["alice@a.test"], reply)
    (answer,) = wait_mail(a, "alice@a.test")
    assert answer.endswith(reply)
    assert b"from mx.b.test (localhost [127.0.0.1])\r\n\tby mx.a.test" in answer
    back = b.wait_for_event("delivered", recipient="alice@a.test")
    assert back["detail"].startswith("mx.a.test said: 250 ")


def test_unreachable_first_mx_falls_back_to_the_next_preference(
    hato_factory: Callable[..., HatoProcess], net: Net
) -> None:
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect((DEAD_HOST, net.port))  # the preferred MX really is dead
    a = start_hato(hato_factory, net, "a", trusted=True)
    b = start_hato(hato_factory, net, "b")
    cli(b, "domain", "add", "c.test")
    cli(b, "user", "add", "x@c.test")

    submit(a, "alice@a.test", ["x@c.test"], b"Subject: fallback\r\n\r\nvia MX 20\r\n")
    (stored,) = wait_mail(b, "x@c.test")
    assert stored.endswith(b"via MX 20\r\n")
    delivered = a.wait_for_event("delivered", recipient="x@c.test")
    assert delivered["detail"].startswith("mx.b.test said: 250 ")
    # The preferred host was looked up, and its refusal cost no attempt: the next MX
    # took the message in the same attempt, so nothing was ever deferred.
    assert Query("dead.c.test", "A", False) in net.dns.queries
    assert a.events("deferred") == []

    # Alive again, the preferred host gets the next message: preference decides, not chance.
    with ScriptedSmtp(DEAD_HOST, net.port, hostname="dead.c.test") as preferred:
        submit(a, "alice@a.test", ["x@c.test"], b"Subject: direct\r\n\r\nvia MX 10\r\n")
        second = a.poll(
            lambda: a.events("delivered", recipient="x@c.test")[1:],
            what="the second delivery",
        )[0]
        assert second["detail"].startswith("dead.c.test said: 250 ")
        (taken,) = preferred.delivered()
        assert taken.data is not None and taken.data.endswith(b"via MX 10\r\n")
    assert not preferred.errors
    assert len(mailbox(b, "x@c.test")) == 1


def test_a_transient_refusal_at_the_preferred_mx_falls_back_too(
    hato_factory: Callable[..., HatoProcess], net: Net, next_hop: Callable[..., ScriptedSmtp]
) -> None:
    # g.test: MX 10 is the scripted server, greylisting; MX 20 is B. RFC 5321 5.1 and the
    # agent's promise: a transient failure before any recipient was accepted moves on.
    net.dns.add("g.test", "MX", "10 mx.d.test")
    net.dns.add("g.test", "MX", "20 mx.b.test")
    greylisting = next_hop(replies={"x@g.test": ["450 4.7.1 Greylisted, try again later"]})
    a = start_hato(hato_factory, net, "a", trusted=True)
    b = start_hato(hato_factory, net, "b")
    cli(b, "domain", "add", "g.test")
    cli(b, "user", "add", "x@g.test")

    submit(a, "alice@a.test", ["x@g.test"], b"Subject: grey\r\n\r\nvia MX 20\r\n")
    (stored,) = wait_mail(b, "x@g.test")
    assert stored.endswith(b"via MX 20\r\n")
    assert a.wait_for_event("delivered", recipient="x@g.test")["detail"].startswith(
        "mx.b.test said: 250 "
    )
    (tried,) = greylisting.transactions  # the preferred host was asked first
    assert tried.recipients == ["RCPT TO:<x@g.test>"] and tried.data is None
    assert a.events("deferred") == []


def test_temporary_failure_is_deferred_shown_in_the_queue_and_retried(
    hato_factory: Callable[..., HatoProcess], net: Net, next_hop: Callable[..., ScriptedSmtp]
) -> None:
    hop = next_hop(
        replies={"later@d.test": ["451 4.3.0 Mailbox busy, try again later", ACCEPTED]},
        hold_after=1,  # the retry waits at the greeting until the queue was looked at
    )
    # A fresh session for the retry (no kept one), so it is the one held at its greeting.
    a = start_hato(hato_factory, net, "a", trusted=True, extra=("-o", "relay.session_reuse=0"))
    body = b"Subject: persistence\r\n\r\nsecond time lucky\r\n"
    submit(a, "alice@a.test", ["later@d.test"], body)

    deferred = a.wait_for_event("deferred", recipient="later@d.test")
    queue_id = deferred["queue_id"]
    assert deferred["status"] == "4.3.0"
    assert deferred["detail"] == "mx.d.test said: 451 4.3.0 Mailbox busy, try again later"
    assert deferred["attempts"] == 1
    # retry_initial = 1 s plus up to 10 % jitter, from the end of the attempt (just before
    # the event was written).
    assert 0.5 <= deferred["next_attempt"] - deferred["ts"] <= 1.101
    listing = cli(a, "queue", "list").stdout
    when = time.strftime("%H:%M:%S", time.localtime(deferred["next_attempt"]))
    reason = "(4.3.0 mx.d.test said: 451 4.3.0 Mailbox busy, try again later; "
    # Listed within the second, it shows the time; later, that the retry is running.
    assert f"{reason}retry {when})" in listing or f"{reason}being retried now)" in listing
    assert queue_id in listing and "later@d.test" in listing
    assert a.events("delivered") == []

    hop.release()
    delivered = a.wait_for_event("delivered", recipient="later@d.test")
    assert delivered["queue_id"] == queue_id
    a.wait_for_event("removed", queue_id=queue_id)
    assert hop.connections == 2
    (taken,) = hop.delivered()
    assert taken.connection == 2 and taken.data is not None and taken.data.endswith(body)
    assert len(a.events("deferred")) == 1
    assert cli(a, "queue", "list").stdout.strip() == "Mail queue is empty"


def test_permanent_failure_returns_a_report_to_the_local_sender(
    hato_factory: Callable[..., HatoProcess], net: Net, next_hop: Callable[..., ScriptedSmtp]
) -> None:
    hop = next_hop(replies={"nobody@d.test": [UNKNOWN_USER]})
    a = start_hato(hato_factory, net, "a", "alice@a.test", trusted=True)
    body = b"Subject: lost letter\r\nMessage-ID: <lost@a.test>\r\n\r\nIs anyone there?\r\n"
    submit(a, "alice@a.test", ["nobody@d.test", "somebody@d.test"], body)

    failed = a.wait_for_event("failed", recipient="nobody@d.test")
    assert failed["status"] == "5.1.1" and failed["reverse_path"] == "alice@a.test"
    # One transaction: the refused RCPT fails only its own recipient.
    (transaction,) = hop.delivered()
    assert transaction.accepted == ["somebody@d.test"]
    a.wait_for_event("delivered", recipient="somebody@d.test", queue_id=failed["queue_id"])
    (raw,) = wait_mail(a, "alice@a.test")
    # Reports travel with the null reverse-path, so they are never reported on in turn.
    assert raw.startswith(b"Return-Path: <>\r\nDelivered-To: alice@a.test\r\n")
    report = parse_report(raw)
    assert report.message["From"] == "Mail Delivery System <MAILER-DAEMON@mx.a.test>"
    assert report.message["To"] == "alice@a.test"
    assert report.message["Auto-Submitted"] == "auto-replied"
    assert report.fields["Reporting-MTA"] == "dns; mx.a.test"
    assert report.fields["X-Hato-Queue-ID"] == failed["queue_id"]
    (recipient,) = report.recipients
    assert recipient["Final-Recipient"] == "rfc822; nobody@d.test"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Remote-MTA"] == "dns; mx.d.test"
    assert recipient["Diagnostic-Code"] == f"smtp; {UNKNOWN_USER}"
    assert "Original-Recipient" not in recipient  # no ORCPT was given
    # Small and without RET: the whole message comes back.
    assert report.returned.get_content_type() == "message/rfc822"
    original = report.returned.get_content()
    assert original["Message-ID"] == "<lost@a.test>"
    assert original["Received"].startswith("from ")  # as A queued it, trace and all
    assert body in raw
    queued = a.wait_for_event("report", queue_id=failed["queue_id"])
    assert queued["action"] == "failed" and queued["recipients"] == ["nobody@d.test"]
    assert a.wait_for_event("queued", queue_id=queued["report_id"])["reverse_path"] == ""
    assert a.events("deferred") == []


def test_notify_decides_which_reports_the_sender_gets(
    hato_factory: Callable[..., HatoProcess], net: Net, next_hop: Callable[..., ScriptedSmtp]
) -> None:
    hop = next_hop(
        replies={
            "nobody@d.test": [UNKNOWN_USER],
            "never@d.test": ["550 5.1.1 <never@d.test>: user unknown"],
        }
    )
    a = start_hato(hato_factory, net, "a", "alice@a.test", "alice2@a.test", trusted=True)
    with smtplib.SMTP(a.host, a.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.has_extn("dsn")
        assert client.mail("alice@a.test", ["ENVID=QQ314159", "RET=HDRS"])[0] == 250
        for address, options in [
            ("alice2@a.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Alice2+2Borig@a.test"]),
            ("nobody@d.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;nobody@d.test"]),
            ("never@d.test", ["NOTIFY=NEVER"]),
        ]:
            assert client.rcpt(address, options)[0] == 250
        code, _ = client.data(b"Subject: three ways\r\n\r\nwho hears back?\r\n")
        assert code == 250

    queue_id = a.wait_for_event("removed", delivered=1, failed=2)["queue_id"]
    assert {e["recipient"] for e in a.events("failed", queue_id=queue_id)} == {
        "nobody@d.test",
        "never@d.test",
    }
    (transaction,) = hop.transactions  # NOTIFY and ORCPT went on to the DSN-capable hop
    assert transaction.recipients == [
        "RCPT TO:<nobody@d.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;nobody@d.test",
        "RCPT TO:<never@d.test> NOTIFY=NEVER",
    ]
    assert transaction.mail.startswith("MAIL FROM:<alice@a.test> ")
    assert "RET=HDRS" in transaction.mail and "ENVID=QQ314159" in transaction.mail
    reports = {e["action"]: e for e in a.events("report", queue_id=queue_id)}
    assert sorted(reports) == ["delivered", "failed"]
    for queued in reports.values():
        a.wait_for_event("removed", queue_id=queued["report_id"])
    found = [parse_report(raw) for raw in mailbox(a, "alice@a.test")]
    assert len(found) == 2  # nothing for never@d.test
    by_action = {report.recipients[0]["Action"]: report for report in found}

    success = by_action["delivered"]
    assert success.fields["Original-Envelope-Id"] == "QQ314159"
    (alice2,) = success.recipients
    assert alice2["Final-Recipient"] == "rfc822; alice2@a.test"
    assert alice2["Original-Recipient"] == "rfc822; Alice2+orig@a.test"
    assert alice2["Status"].startswith("2.")
    assert success.returned.get_content_type() == "text/rfc822-headers"

    failure = by_action["failed"]
    assert failure.fields["Original-Envelope-Id"] == "QQ314159"
    (nobody,) = failure.recipients  # never@d.test failed too, but asked for no report
    assert nobody["Final-Recipient"] == "rfc822; nobody@d.test"
    assert nobody["Original-Recipient"] == "rfc822; nobody@d.test"
    assert nobody["Status"] == "5.1.1"
    assert failure.returned.get_content_type() == "text/rfc822-headers"  # RET=HDRS
    assert b"who hears back?" not in failure.message.as_bytes()
    (alice2_mail,) = mailbox(a, "alice2@a.test")
    assert alice2_mail.endswith(b"who hears back?\r\n")


def test_notify_goes_on_to_a_dsn_hop_and_a_plain_hop_gets_a_relayed_report(
    hato_factory: Callable[..., HatoProcess], net: Net, next_hop: Callable[..., ScriptedSmtp]
) -> None:
    hop = next_hop(dsn=False, pipelining=False)  # a plain old server: lock-step, no DSN
    a = start_hato(hato_factory, net, "a", "alice@a.test", trusted=True)
    b = start_hato(hato_factory, net, "b", "bob@b.test")
    body = b"Subject: tell me when\r\n\r\nreceipt please\r\n"
    recipients = {
        # xtext (RFC 3461 4): "+" travels as "+2B", both from the client and on to B.
        "bob@b.test": ["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob+2Btag@b.test"],
        "carol@d.test": ["NOTIFY=SUCCESS"],
    }
    submit(a, "alice@a.test", recipients, body, mail_options=["ENVID=relay+2B42", "RET=HDRS"])

    # B speaks DSN: NOTIFY, ORCPT and ENVID went on with the message, and B reports itself.
    params = b.wait_for_event("rcpt", recipient="bob@b.test")["params"]
    assert params == {"notify": ["SUCCESS"], "orcpt": "rfc822;Bob+tag@b.test"}
    assert b.wait_for_event("mail", reverse_path="alice@a.test")["params"]["envid"] == "relay+42"
    (stored,) = wait_mail(b, "bob@b.test")
    assert stored.endswith(body)
    b_report = b.wait_for_event("report", action="delivered")
    assert b_report["recipients"] == ["bob@b.test"] and b_report["sender"] == "alice@a.test"
    # The scripted hop does not: A passes none of it on, and says "relayed" itself.
    (transaction,) = hop.delivered()
    assert transaction.recipients == ["RCPT TO:<carol@d.test>"]
    assert "ENVID" not in transaction.mail and "RET" not in transaction.mail
    queue_id = a.wait_for_event("delivered", recipient="carol@d.test")["queue_id"]
    a.wait_for_event("removed", queue_id=queue_id, delivered=2)
    (a_report,) = a.events("report", queue_id=queue_id)  # none for bob: B reports that
    assert a_report["action"] == "relayed" and a_report["recipients"] == ["carol@d.test"]

    reports = [parse_report(raw) for raw in wait_mail(a, "alice@a.test", 2)]
    by_mta = {report.fields["Reporting-MTA"]: report for report in reports}
    assert sorted(by_mta) == ["dns; mx.a.test", "dns; mx.b.test"]
    from_b = by_mta["dns; mx.b.test"]
    assert from_b.fields["Original-Envelope-Id"] == "relay+42"
    (bob,) = from_b.recipients
    assert bob["Final-Recipient"] == "rfc822; bob@b.test"
    assert bob["Original-Recipient"] == "rfc822; Bob+tag@b.test"
    assert bob["Action"] == "delivered"
    from_a = by_mta["dns; mx.a.test"]
    assert from_a.fields["Original-Envelope-Id"] == "relay+42"
    (carol,) = from_a.recipients
    assert carol["Final-Recipient"] == "rfc822; carol@d.test"
    assert carol["Action"] == "relayed"
    assert carol["Remote-MTA"] == "dns; mx.d.test"


def test_a_failed_report_is_never_reported_on(
    hato_factory: Callable[..., HatoProcess], net: Net, next_hop: Callable[..., ScriptedSmtp]
) -> None:
    next_hop(replies={"nobody@d.test": [UNKNOWN_USER]})
    a = start_hato(hato_factory, net, "a", "alice@a.test", trusted=True)
    submit(a, "", ["nobody@d.test"], b"Subject: a bounce\r\n\r\nreturned mail\r\n")

    failed = a.wait_for_event("failed", recipient="nobody@d.test")
    assert failed["reverse_path"] == "" and failed["status"] == "5.1.1"
    a.wait_for_event("removed", queue_id=failed["queue_id"], failed=1)
    # Reports are queued before the failure is recorded: had one been owed, it is logged.
    assert a.events("report") == []
    assert [e["queue_id"] for e in a.events("queued")] == [failed["queue_id"]]
    assert all_mail(a) == []


def test_null_mx_and_a_missing_domain_fail_at_once(
    hato_factory: Callable[..., HatoProcess], net: Net
) -> None:
    a = start_hato(hato_factory, net, "a", "alice@a.test", trusted=True)
    submit(a, "alice@a.test", ["x@e.test", "y@f.test"], b"Subject: nowhere\r\n\r\nx\r\n")

    (raw,) = wait_mail(a, "alice@a.test")
    a.wait_for_event("removed", failed=2)
    report = parse_report(raw)
    blocks = {block["Final-Recipient"]: block for block in report.recipients}
    assert sorted(blocks) == ["rfc822; x@e.test", "rfc822; y@f.test"]
    null_mx, missing = blocks["rfc822; x@e.test"], blocks["rfc822; y@f.test"]
    assert (null_mx["Action"], null_mx["Status"]) == ("failed", "5.1.10")
    assert "null MX" in null_mx["Diagnostic-Code"]
    assert (missing["Action"], missing["Status"]) == ("failed", "5.1.2")
    assert "Remote-MTA" not in null_mx and "Remote-MTA" not in missing
    statuses = {e["recipient"]: e["status"] for e in a.events("failed")}
    assert statuses == {"x@e.test": "5.1.10", "y@f.test": "5.1.2"}
    assert a.events("deferred") == []  # permanent: no retry was ever scheduled
    assert Query("f.test", "MX", False) in net.dns.queries


def test_an_untrusted_client_may_not_relay(
    hato_factory: Callable[..., HatoProcess], net: Net
) -> None:
    b = start_hato(hato_factory, net, "b", "bob@b.test")  # loopback is untrusted here
    with smtplib.SMTP(b.host, b.port, timeout=10) as client:
        client.ehlo("outsider.test")
        assert client.mail("someone@outside.test")[0] == 250
        code, text = client.rcpt("x@a.test")
        assert (code, text) == (554, b"5.7.1 <x@a.test>: Relay access denied")
        assert client.rcpt("bob@b.test")[0] == 250
        assert client.data(b"Subject: inbound\r\n\r\nfor B only\r\n")[0] == 250

    rejected = b.wait_for_event("reject", command="RCPT")
    assert rejected["reason"] == "relay to a.test from an untrusted client"
    (stored,) = wait_mail(b, "bob@b.test")
    assert stored.endswith(b"for B only\r\n")
    queued = b.wait_for_event("queued")  # the event log is written behind the mailbox
    assert queued["recipients"] == ["bob@b.test"]
    assert len(b.events("queued")) == 1
    assert not any(query.name == "a.test" for query in net.dns.queries)


def test_messages_to_one_host_share_a_session(
    hato_factory: Callable[..., HatoProcess], net: Net, next_hop: Callable[..., ScriptedSmtp]
) -> None:
    hop = next_hop()
    a = start_hato(hato_factory, net, "a", "alice@a.test", trusted=True)
    for n in range(3):
        submit(a, "alice@a.test", [f"reader{n}@d.test"], f"Subject: {n}\r\n\r\nx\r\n".encode())
        # One after the other, so each is a separate delivery the agent could connect for.
        a.wait_for_event("delivered", recipient=f"reader{n}@d.test")
    delivered = hop.delivered()
    assert len(delivered) == 3
    # RFC 5321 3.3: one session, several transactions (the kept session was reused).
    assert {t.connection for t in delivered} == {1}


def test_bare_line_ends_received_with_bdat_never_smuggle_a_second_message(
    hato_factory: Callable[..., HatoProcess], net: Net, next_hop: Callable[..., ScriptedSmtp]
) -> None:
    # CVE-2023-51764 with Hato as the relay: a message for a forwarding alias, sent with
    # BDAT (length-framed, so its bare LFs end nothing here), relayed with DATA to a next
    # hop that ends lines at LF. Under "normalize" Hato stores CRLF; the client stuffs
    # the dot, so the next hop reads one message whose text holds the "commands".
    hop = next_hop(lenient_line_ends=True)
    a = start_hato(hato_factory, net, "a", extra=("-o", "smtp.bare_newline=normalize"))
    cli(a, "alias", "add", "fwd@a.test", "reader@d.test")
    forged = (
        b"\n.\nMAIL FROM:<ceo@a.test>\nRCPT TO:<victim@d.test>\nDATA\n"
        b"Subject: forged\n\nWire the money.\n.\n"
    )
    payload = b"Subject: hello\r\n\r\nhello" + forged
    with socket.create_connection((a.host, a.port), timeout=10) as sock:
        stream = sock.makefile("rwb")

        def say(line: bytes) -> bytes:
            stream.write(line)
            stream.flush()
            while (answer := stream.readline())[3:4] == b"-":
                pass
            return answer

        assert say(b"")[:3] == b"220"
        assert say(b"EHLO client.test\r\n")[:3] == b"250"
        assert say(b"MAIL FROM:<someone@elsewhere.test>\r\n")[:3] == b"250"
        assert say(b"RCPT TO:<fwd@a.test>\r\n")[:3] == b"250"
        assert say(b"BDAT %d LAST\r\n" % len(payload) + payload)[:3] == b"250"
        say(b"QUIT\r\n")
    a.wait_for_event("delivered", recipient="fwd@a.test")  # logged under the alias
    (delivered,) = hop.delivered()
    assert len(hop.transactions) == 1
    assert delivered.recipients == ["RCPT TO:<reader@d.test>"]
    assert delivered.data is not None
    assert b"hello\r\n.\r\nMAIL FROM:<ceo@a.test>\r\nRCPT TO:<victim@d.test>\r\n" in delivered.data
    assert delivered.data.count(b"\n") == delivered.data.count(b"\r\n")


def test_bare_line_ends_in_bdat_are_refused_by_default(
    hato_factory: Callable[..., HatoProcess], net: Net
) -> None:
    a = start_hato(hato_factory, net, "a")
    cli(a, "alias", "add", "fwd@a.test", "reader@d.test")
    payload = b"Subject: hello\r\n\r\nhello\n.\nMAIL FROM:<ceo@a.test>\n"
    with socket.create_connection((a.host, a.port), timeout=10) as sock:
        stream = sock.makefile("rwb")
        stream.write(
            b"EHLO client.test\r\nMAIL FROM:<someone@elsewhere.test>\r\nRCPT TO:<fwd@a.test>\r\n"
            b"BDAT %d LAST\r\n" % len(payload) + payload + b"QUIT\r\n"
        )
        stream.flush()
        replies = [line for line in stream.read().split(b"\r\n") if line[3:4] == b" "]
    assert replies[-2].startswith(b"550 5.5.2 Error: bare <CR> or <LF> in message data")
    assert replies[-1].startswith(b"221")
    assert "fwd@a.test" not in a.cli("queue", "list").stdout
