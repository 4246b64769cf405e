"""Hato and rspamd agree: the same messages, the same DNS, the same words.

One rspamd (``rspamd_server``) and one ``hato serve`` B for the module, both asking the
same test DNS server (``rspamd.dns``). B trusts no network and checks mail from outside
(``mailauth.check``), so a message sent to it over SMTP from 127.0.0.1 gets B's
``Authentication-Results`` field, read back from the Maildir file it was delivered to (or,
when DMARC's p=reject refuses it, B's reply and the reason it logged). rspamd scans the
original bytes with the same client address, HELO and MAIL FROM, and the spf=, dkim=,
dmarc= and arc= words must be the same.

Where they differ, ``test_where_they_differ`` pins both words and says why each is
allowed, or which side the RFC contradicts.

B also forwards: ``fwd@agree.test`` is an alias of ``carol@sink.test``, a domain routed
(``relay.transports``) to a scripted SMTP server on loopback, which keeps the message as B
sent it, with B's ARC set sealed by ``agree.test``'s RSA key (published in the DNS server).
rspamd must find that chain valid.

rspamd keeps the keys and records it fetched, so every case has domains of its own.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import authres
import pytest
from mailauth_peers import (
    MessageCase,
    PeerKey,
    arc_seal,
    dkim_sign,
    ed25519_key,
    message,
    message_set,
    publish_txt,
    rsa_key,
)
from rspamd_server import CLIENT_HELO, RspamdScan, RspamdServer, rspamd_fixture  # noqa: F401
from scripted_smtp import ScriptedSmtp

import dkim_test_keys
from dns_server import DnsServer
from hato.delivery import MaildirAgent
from hato.mailauth import DkimKeys, dns_record, sign_dkim

if TYPE_CHECKING:
    from conftest import HatoProcess

CLIENT_IP = "127.0.0.1"  # where B sees every client of this module connect from
LOCAL_DOMAIN = "agree.test"  # B's mail domain; its RSA key seals what B forwards
SINK_DOMAIN = "sink.test"  # routed to the scripted server
FORWARDER = f"fwd@{LOCAL_DOMAIN}"
FORWARD_TARGET = f"carol@{SINK_DOMAIN}"
DELIVERY_TIMEOUT = 30.0
METHODS = ("spf", "dkim", "dmarc", "arc")
# When a message has several DKIM results, the summary is the best (rspamd_server's order).
DKIM_ORDER = ("pass", "fail", "temperror", "permerror", "neutral", "policy", "none")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What B made of one message, and what rspamd made of the same bytes."""

    code: int  # B's reply to the data
    reply: str
    stored: bytes | None  # the delivered file; None when refused
    hato: dict[str, str]  # B's words: from its field, or from the refusal's logged reason
    hato_signatures: list[tuple[str, str]]  # (header.d, word) per DKIM clause of B's field
    reason: str  # the refusal's logged reason ("" when delivered)
    scan: RspamdScan

    def explain(self) -> str:
        return f"hato {self.hato} {self.reply}\nrspamd {rspamd_words(self.scan)}\n" + (
            self.scan.explain()
        )

    def agree(self) -> None:
        assert self.hato == rspamd_words(self.scan), self.explain()


@pytest.fixture(name="sink", scope="module")
def sink_fixture() -> Iterator[ScriptedSmtp]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = ScriptedSmtp("127.0.0.1", port, hostname=f"mx.{SINK_DOMAIN}")
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, "the scripted server failed:\n" + "\n".join(server.errors)


@pytest.fixture(name="b", scope="module")
def b_fixture(
    module_hato_factory: Callable[..., HatoProcess], rspamd: RspamdServer, sink: ScriptedSmtp
) -> HatoProcess:
    hato = module_hato_factory(
        "b",
        "relay.trusted_networks=[]",
        f'dns.nameservers=["{rspamd.dns.address}"]',
        "mailauth.check=true",
        "mailauth.srs=true",
        "queue.retry_initial=1",
        'relay.transports=["relay.test.example 127.0.0.1:9",'
        f' "{SINK_DOMAIN} 127.0.0.1:{sink.port}"]',
    )
    cli(hato, "domain", "add", LOCAL_DOMAIN)  # makes its RSA key
    cli(hato, "alias", "add", FORWARDER, FORWARD_TARGET)
    for key in DkimKeys(hato.data_dir / "dkim").keys(LOCAL_DOMAIN):
        record = dns_record(key)
        publish_txt(rspamd.dns, record.name, record.value)
    return hato


def cli(hato: HatoProcess, *args: str) -> str:
    done = hato.cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def send(hato: HatoProcess, data: bytes, *, mail_from: str, rcpt: str) -> tuple[int, str]:
    """One transaction from 127.0.0.1; B's final reply to the data."""
    with smtplib.SMTP(hato.host, hato.port, timeout=20) as client:
        client.ehlo(CLIENT_HELO)
        assert client.mail(mail_from)[0] == 250
        assert client.rcpt(rcpt)[0] == 250, rcpt
        try:
            code, reply = client.data(data)
        except smtplib.SMTPDataError as error:
            code, reply = error.smtp_code, error.smtp_error
    return code, reply.decode("utf-8", "replace")


def check(
    b: HatoProcess, rspamd: RspamdServer, data: bytes, *, mail_from: str, user: str
) -> Outcome:
    """Send ``data`` to B's new mailbox ``user``@LOCAL_DOMAIN and scan it with rspamd."""
    address = f"{user}@{LOCAL_DOMAIN}"
    cli(b, "user", "add", address)
    refusals = len(b.events("filter_verdict", filter="mailauth", action="reject"))
    code, reply = send(b, data, mail_from=mail_from, rcpt=address)
    scan = rspamd.scan(data, ip=CLIENT_IP, helo=CLIENT_HELO, mail_from=mail_from, rcpt=address)
    if code != 250:
        found = b.poll(
            lambda: b.events("filter_verdict", filter="mailauth", action="reject")[refusals:],
            what="the refusal's filter_verdict event",
        )
        reason = found[0]["reason"]
        return Outcome(code, reply, None, reason_words(reason), [], reason, scan)
    maildir = MaildirAgent(b.data_dir / "mailboxes", hostname=b.hostname).mailbox_dir(
        LOCAL_DOMAIN, user
    )

    def delivered() -> bytes | None:
        files = [p for p in sorted(maildir.glob("**/new/*")) if p.is_file()]
        return files[0].read_bytes() if files else None

    stored: bytes = b.poll(delivered, timeout=DELIVERY_TIMEOUT, what=f"a message for {address}")
    words, signatures = hato_words(stored, b.hostname)
    return Outcome(code, reply, stored, words, signatures, "", scan)


def hato_words(stored: bytes, authserv_id: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The dkim/dmarc/arc words of the one Authentication-Results field of
    ``authserv_id`` (parsed by authres: the field must be RFC 8601), and (d, word) for
    each DKIM clause."""
    parsed = email.message_from_bytes(stored, policy=email.policy.compat32)
    ours = []
    for value in parsed.get_all("Authentication-Results") or []:
        header = authres.parse_value(re.sub(r"\r?\n[ \t]", " ", str(value)).strip())
        if str(header.authserv_id).lower() == authserv_id.lower():
            ours.append(header)
    assert len(ours) == 1, f"{len(ours)} Authentication-Results of {authserv_id}:\n{stored!r}"
    words: dict[str, list[str]] = {}
    signatures = []
    for result in ours[0].results:
        words.setdefault(str(result.method), []).append(str(result.result))
        if result.method == "dkim" and result.result != "none":
            d = next((str(p.value) for p in result.properties if p.name == "d"), "")
            signatures.append((d.lower(), str(result.result)))
    return {method: _best(words.get(method, ["none"])) for method in METHODS}, signatures


def reason_words(reason: str) -> dict[str, str]:
    """The method words of a refusal's logged reason ("dmarc=fail (p=reject) ...: spf=none
    dkim=pass dmarc=fail arc=none"): the summary after the last colon."""
    found = dict(re.findall(r"\b(spf|dkim|dmarc|arc)=([a-z]+)", reason.rpartition(": ")[2]))
    return {method: found.get(method, "none") for method in METHODS}


def rspamd_words(scan: RspamdScan) -> dict[str, str]:
    return {method: getattr(scan, method) or "none" for method in METHODS}


def _best(words: list[str]) -> str:
    return min(words, key=lambda w: DKIM_ORDER.index(w) if w in DKIM_ORDER else len(DKIM_ORDER))


def rsa_512(domain: str, selector: str) -> PeerKey:
    """A key RFC 8301 forbids verifiers to accept (cryptography refuses to make one)."""
    small = dkim_test_keys.rsa_key(domain, selector, bits=512)
    record = f"v=DKIM1; k=rsa; p={small.public_key}"
    return PeerKey(domain, selector, "rsa-sha256", small.private_key, record)


def expired(dns: DnsServer, domain: str, hours_ago: float) -> bytes:
    """A message whose signature expired ``hours_ago`` (x= one hour after t=)."""
    key = dkim_test_keys.rsa_key(domain, "s1")
    dkim_test_keys.publish(dns, key)
    original = message(f"alice@{domain}", message_id=f"<expired@{domain}>")
    now = time.time() - (hours_ago + 1) * 3600
    return sign_dkim(original, [key], expiry=3600, now=now) + original


# -- the message set -----------------------------------------------------------------------

CASE_NAMES = (
    "good",
    "tampered-body",
    "tampered-header",
    "wrong-key",
    "missing-key",
    "arc-good",
    "arc-tampered-body",
)


@pytest.fixture(name="cases", scope="module")
def cases_fixture(rspamd: RspamdServer) -> dict[tuple[str, str], MessageCase]:
    found = {}
    rsa, rsa_other = rsa_key("set-rsa.test", "s2026"), rsa_key("set-rsa.test", "s2026")
    for case in message_set(rspamd.dns, rsa, rsa_other):
        found["rsa", case.name] = case
    ed, ed_other = ed25519_key("set-ed.test", "e2026"), ed25519_key("set-ed.test", "e2026")
    sealer = rsa_key("set-ed-sealer.test", "seal")  # ARC seals are rsa-sha256 only
    for case in message_set(rspamd.dns, ed, ed_other, sealer=sealer):
        found["ed25519", case.name] = case
    return found


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_message_set(
    b: HatoProcess,
    rspamd: RspamdServer,
    cases: dict[tuple[str, str], MessageCase],
    algorithm: str,
    name: str,
) -> None:
    case = cases[algorithm, name]
    sender = f"alice@set-{'ed' if algorithm == 'ed25519' else algorithm}.test"
    outcome = check(b, rspamd, case.message, mail_from=sender, user=f"{algorithm}-{name}")
    assert outcome.code == 250, outcome.reply
    outcome.agree()
    # And both are right (mailauth_peers' table); the domain publishes no DMARC record.
    assert outcome.hato == {"spf": "none", "dkim": case.dkim, "dmarc": "none", "arc": case.arc}


# -- DMARC ---------------------------------------------------------------------------------


def signed_by(dns: DnsServer, signer: str, from_address: str) -> bytes:
    """A message From ``from_address`` signed with a new key of ``signer`` (published)."""
    key = rsa_key(signer, "s1")
    key.publish(dns)
    return dkim_sign(message(from_address, message_id=f"<m@{signer}>"), key)


def test_dmarc_aligned_pass(b: HatoProcess, rspamd: RspamdServer) -> None:
    publish_txt(rspamd.dns, "_dmarc.dm-pass.test", "v=DMARC1; p=reject")
    data = signed_by(rspamd.dns, "dm-pass.test", "alice@dm-pass.test")
    # The envelope is another domain's, without SPF: only the signature can align.
    outcome = check(b, rspamd, data, mail_from="list@elsewhere-pass.test", user="dm-pass")
    outcome.agree()
    assert outcome.hato["dmarc"] == "pass"


def test_dmarc_reject_without_aligned_pass_is_refused(b: HatoProcess, rspamd: RspamdServer) -> None:
    # The signature verifies, but its domain does not align with From; no SPF record.
    publish_txt(rspamd.dns, "_dmarc.dm-reject.test", "v=DMARC1; p=reject")
    data = signed_by(rspamd.dns, "dm-signer.test", "alice@dm-reject.test")
    outcome = check(b, rspamd, data, mail_from="alice@dm-reject.test", user="dm-reject")
    assert (outcome.code, outcome.reply[:5]) == (550, "5.7.1"), outcome.reply
    assert "(p=reject) header.from=dm-reject.test" in outcome.reason, outcome.reason
    outcome.agree()
    assert outcome.hato == {"spf": "none", "dkim": "pass", "dmarc": "fail", "arc": "none"}
    assert outcome.scan.dmarc_policy == "reject", outcome.explain()


def test_dmarc_strict_alignment_refuses_a_subdomain(b: HatoProcess, rspamd: RspamdServer) -> None:
    publish_txt(rspamd.dns, "_dmarc.dm-strict.test", "v=DMARC1; p=reject; adkim=s")
    data = signed_by(rspamd.dns, "dm-strict.test", "alice@mail.dm-strict.test")
    outcome = check(b, rspamd, data, mail_from="x@elsewhere-strict.test", user="dm-strict")
    assert outcome.code == 550, outcome.reply
    outcome.agree()
    assert outcome.hato["dmarc"] == "fail" and outcome.scan.dmarc_policy == "reject"


def test_dmarc_quarantine_goes_to_junk(b: HatoProcess, rspamd: RspamdServer) -> None:
    publish_txt(rspamd.dns, "_dmarc.dm-quarantine.test", "v=DMARC1; p=quarantine")
    data = message("alice@dm-quarantine.test", message_id="<quarantine@x.test>")
    outcome = check(b, rspamd, data, mail_from="alice@dm-quarantine.test", user="dm-quarantine")
    assert outcome.stored is not None, outcome.reply
    junk = b.data_dir / "mailboxes" / LOCAL_DOMAIN
    assert list(junk.glob("dm-quarantine/.Junk/new/*")), "not in the Junk folder"
    outcome.agree()
    assert outcome.hato["dmarc"] == "fail" and outcome.scan.dmarc_policy == "quarantine"


def test_dmarc_pct_zero_lowers_reject_to_quarantine(b: HatoProcess, rspamd: RspamdServer) -> None:
    # RFC 7489 6.6.4: outside the pct= sample, the next policy down.
    publish_txt(rspamd.dns, "_dmarc.dm-pct.test", "v=DMARC1; p=reject; pct=0")
    data = message("alice@dm-pct.test", message_id="<pct@x.test>")
    outcome = check(b, rspamd, data, mail_from="alice@dm-pct.test", user="dm-pct")
    assert outcome.code == 250, outcome.reply
    assert list((b.data_dir / "mailboxes" / LOCAL_DOMAIN).glob("dm-pct/.Junk/new/*"))
    outcome.agree()
    assert outcome.scan.dmarc_policy == "quarantine", outcome.explain()


@pytest.mark.parametrize(
    ("user", "record_at", "record", "from_address"),
    [
        ("dm-p-none", "dm-p-none.test", "v=DMARC1; p=none", "alice@dm-p-none.test"),
        # sp= applies to a subdomain whose policy came from the organizational domain.
        ("dm-sp", "dm-sp.test", "v=DMARC1; p=reject; sp=none", "alice@mail.dm-sp.test"),
    ],
)
def test_dmarc_fail_under_policy_none_is_delivered(
    b: HatoProcess, rspamd: RspamdServer, user: str, record_at: str, record: str, from_address: str
) -> None:
    publish_txt(rspamd.dns, f"_dmarc.{record_at}", record)
    data = message(from_address, message_id=f"<{user}@x.test>")
    outcome = check(b, rspamd, data, mail_from=from_address, user=user)
    assert outcome.code == 250, outcome.reply
    outcome.agree()
    assert outcome.hato["dmarc"] == "fail" and outcome.scan.dmarc_policy == "none"


def test_dmarc_relaxed_alignment_takes_the_organizational_domain(
    b: HatoProcess, rspamd: RspamdServer
) -> None:
    # From mail.dm-org.test, signed by dm-org.test: aligned under relaxed alignment,
    # whose organizational domain is dm-org.test (".test" a public suffix on both sides).
    publish_txt(rspamd.dns, "_dmarc.dm-org.test", "v=DMARC1; p=reject")
    data = signed_by(rspamd.dns, "dm-org.test", "alice@mail.dm-org.test")
    outcome = check(b, rspamd, data, mail_from="x@elsewhere-org.test", user="dm-org")
    outcome.agree()
    assert outcome.hato["dmarc"] == "pass"


def test_no_dmarc_record_is_none(b: HatoProcess, rspamd: RspamdServer) -> None:
    data = signed_by(rspamd.dns, "dm-none.test", "alice@dm-none.test")
    outcome = check(b, rspamd, data, mail_from="alice@dm-none.test", user="dm-none")
    outcome.agree()
    assert outcome.hato == {"spf": "none", "dkim": "pass", "dmarc": "none", "arc": "none"}


def test_no_from_field_is_none(b: HatoProcess, rspamd: RspamdServer) -> None:
    data = b"Subject: nobody wrote this\r\n\r\nHello.\r\n"
    outcome = check(b, rspamd, data, mail_from="a@dm-nofrom.test", user="dm-nofrom")
    outcome.agree()
    assert outcome.hato == {"spf": "none", "dkim": "none", "dmarc": "none", "arc": "none"}


# -- more DKIM -----------------------------------------------------------------------------


def test_dkim_key_lookup_servfail_is_temperror(b: HatoProcess, rspamd: RspamdServer) -> None:
    # The reason B writes names the name server ("...@port answered SERVFAIL"): the field
    # must still parse as RFC 8601 (hato_words parses it).
    data = signed_by(rspamd.dns, "dk-servfail.test", "alice@dk-servfail.test")
    rspamd.dns.servfail("s1._domainkey.dk-servfail.test")
    outcome = check(b, rspamd, data, mail_from="alice@dk-servfail.test", user="dk-servfail")
    outcome.agree()
    assert outcome.hato["dkim"] == "temperror"


def test_dkim_revoked_key_is_permerror(b: HatoProcess, rspamd: RspamdServer) -> None:
    # RFC 6376 3.6.1: an empty p= means the key was revoked.
    publish_txt(rspamd.dns, "s1._domainkey.dk-revoked.test", "v=DKIM1; k=rsa; p=")
    data = dkim_sign(message("alice@dk-revoked.test"), rsa_key("dk-revoked.test", "s1"))
    outcome = check(b, rspamd, data, mail_from="alice@dk-revoked.test", user="dk-revoked")
    outcome.agree()
    assert outcome.hato["dkim"] == "permerror"


def test_dkim_each_of_two_signatures(b: HatoProcess, rspamd: RspamdServer) -> None:
    # One good signature, and one claiming another domain's key that does not verify.
    good = signed_by(rspamd.dns, "dk-two.test", "alice@dk-two.test")
    other = rsa_key("dk-two-other.test", "s1")
    other.publish(rspamd.dns)
    data = dkim_sign(good, other.with_private(rsa_key("dk-two-other.test", "s1")))
    outcome = check(b, rspamd, data, mail_from="alice@dk-two.test", user="dk-two")
    outcome.agree()
    assert sorted(outcome.hato_signatures) == sorted(outcome.scan.dkim_signatures)
    assert sorted(outcome.hato_signatures) == [
        ("dk-two-other.test", "fail"),
        ("dk-two.test", "pass"),
    ]


# -- SPF -----------------------------------------------------------------------------------


def _lookups(dns: DnsServer, domain: str) -> str:
    """A record needing 11 DNS mechanisms, one over RFC 7208 4.6.4's limit of 10."""
    for n in range(11):
        dns.add(f"l{n}.{domain}", "TXT", '"v=spf1 -all"')
    return "v=spf1 " + " ".join(f"include:l{n}.{domain}" for n in range(11)) + " -all"


# (domain, its SPF record or None for a SERVFAIL, the word both must say)
SPF_CASES = [
    ("sp-pass.test", "v=spf1 ip4:127.0.0.1 -all", "pass"),
    ("sp-fail.test", "v=spf1 ip4:192.0.2.1 -all", "fail"),
    ("sp-soft.test", "v=spf1 ~all", "softfail"),
    ("sp-neutral.test", "v=spf1 ?all", "neutral"),
    ("sp-none.test", "", "none"),
    ("sp-servfail.test", None, "temperror"),
]


@pytest.mark.parametrize(
    ("domain", "record", "word"), SPF_CASES, ids=[case[0] for case in SPF_CASES]
)
def test_spf(
    b: HatoProcess, rspamd: RspamdServer, domain: str, record: str | None, word: str
) -> None:
    if record is None:
        rspamd.dns.add(domain, "TXT", '"v=spf1 -all"')
        rspamd.dns.servfail(domain)
    elif record:
        publish_txt(rspamd.dns, domain, record)
    data = message(f"alice@{domain}", message_id=f"<spf@{domain}>")
    user = domain.partition(".")[0]
    outcome = check(b, rspamd, data, mail_from=f"alice@{domain}", user=user)
    assert outcome.code == 250, outcome.reply  # SPF alone refuses nothing
    outcome.agree()
    assert outcome.hato["spf"] == word


def test_spf_helo_identity_for_the_null_sender(b: HatoProcess, rspamd: RspamdServer) -> None:
    # RFC 7208 2.4: with MAIL FROM:<>, the sender is postmaster@ the HELO name.
    publish_txt(rspamd.dns, CLIENT_HELO, "v=spf1 ip4:127.0.0.1 -all")
    data = message("alice@sp-helo.test", message_id="<spf@sp-helo.test>")
    outcome = check(b, rspamd, data, mail_from="", user="sp-helo")
    outcome.agree()
    assert outcome.hato["spf"] == "pass"


def test_dmarc_passes_on_aligned_spf(b: HatoProcess, rspamd: RspamdServer) -> None:
    # Unsigned: only SPF can align, and does (the MAIL FROM domain is a subdomain).
    publish_txt(rspamd.dns, "bounces.sp-dmarc.test", "v=spf1 ip4:127.0.0.1 -all")
    publish_txt(rspamd.dns, "_dmarc.sp-dmarc.test", "v=DMARC1; p=reject")
    data = message("alice@sp-dmarc.test", message_id="<spf@sp-dmarc.test>")
    outcome = check(b, rspamd, data, mail_from="list@bounces.sp-dmarc.test", user="sp-dmarc")
    outcome.agree()
    assert (outcome.hato["spf"], outcome.hato["dmarc"]) == ("pass", "pass")


def test_dmarc_refuses_on_failing_spf(b: HatoProcess, rspamd: RspamdServer) -> None:
    publish_txt(rspamd.dns, "sp-reject.test", "v=spf1 ip4:192.0.2.1 -all")
    publish_txt(rspamd.dns, "_dmarc.sp-reject.test", "v=DMARC1; p=reject")
    data = message("alice@sp-reject.test", message_id="<spf@sp-reject.test>")
    outcome = check(b, rspamd, data, mail_from="alice@sp-reject.test", user="sp-reject")
    assert outcome.code == 550, outcome.reply
    outcome.agree()
    assert outcome.hato == {"spf": "fail", "dkim": "none", "dmarc": "fail", "arc": "none"}


# -- where they differ ---------------------------------------------------------------------


def _small_key(dns: DnsServer) -> bytes:
    key = rsa_512("df-small.test", "s1")
    key.publish(dns)
    return dkim_sign(message("alice@df-small.test"), key)


def _bad_policy(dns: DnsServer) -> bytes:
    publish_txt(dns, "_dmarc.df-badp.test", "v=DMARC1; p=bogus")
    return message("alice@df-badp.test", message_id="<badp@x.test>")


def _two_records(dns: DnsServer) -> bytes:
    dns.add("_dmarc.df-two.test", "TXT", '"v=DMARC1; p=reject"')
    dns.add("_dmarc.df-two.test", "TXT", '"v=DMARC1; p=none"')
    return message("alice@df-two.test", message_id="<two@x.test>")


def _no_body_hash(dns: DnsServer) -> bytes:
    signed = signed_by(dns, "df-nobh.test", "alice@df-nobh.test")
    return re.sub(rb"bh=[^;]+;", b"", signed, count=1)


def _expired_lately(dns: DnsServer) -> bytes:
    return expired(dns, "df-expired-1h.test", hours_ago=1)


def _expired_long_ago(dns: DnsServer) -> bytes:
    return expired(dns, "df-expired-12h.test", hours_ago=12)


def _two_authors(dns: DnsServer) -> bytes:
    publish_txt(dns, "_dmarc.df-victim.test", "v=DMARC1; p=reject")
    return b"From: a@df-victim.test, b@df-other.test\r\nSubject: two\r\n\r\nHello.\r\n"


def _two_from_fields(dns: DnsServer) -> bytes:
    publish_txt(dns, "_dmarc.df-victim2.test", "v=DMARC1; p=reject")
    return b"From: a@df-victim2.test\r\nFrom: b@df-other.test\r\nSubject: two\r\n\r\nHello.\r\n"


def _spf_syntax_error(dns: DnsServer) -> bytes:
    publish_txt(dns, "df-spf-syntax.test", "v=spf1 ip4:not-an-address -all")
    return message("alice@df-spf-syntax.test", message_id="<syntax@x.test>")


def _spf_lookups(dns: DnsServer) -> bytes:
    publish_txt(dns, "df-spf-lookups.test", _lookups(dns, "df-spf-lookups.test"))
    return message("alice@df-spf-lookups.test", message_id="<lookups@x.test>")


# (case, message maker, B's reply code, B's words, rspamd's words), and why both stand.
DIFFERENCES = [
    # RFC 7208 4.6: a syntax error anywhere in the record makes check_host() return
    # permerror at once (B). rspamd 3.4 skips the bad mechanism and matches -all: fail.
    ("spf-syntax", _spf_syntax_error, 250, "spf=permerror", "spf=fail"),
    # RFC 7208 4.6.4: more than 10 DNS-querying mechanisms is permerror (B); rspamd's own
    # limits are higher, so it evaluates all 11 includes and then -all: fail.
    ("spf-lookups", _spf_lookups, 250, "spf=permerror", "spf=fail"),
    # RFC 8301 3.2: verifiers MUST NOT consider signatures with RSA keys under 1024 bits
    # valid. rspamd 3.4 accepts a 512-bit key: rspamd is wrong.
    ("rsa-512", _small_key, 250, "dkim=fail", "dkim=pass"),
    # RFC 7489 6.6.3 step 6: a record without a valid p= (and no rua=) means "no DMARC
    # processing" (B: none); 11.2 calls a syntactically incorrect record permerror
    # (rspamd). Both read the RFC; neither applies a policy.
    ("dmarc-bad-p", _bad_policy, 250, "dmarc=none", "dmarc=permerror"),
    # RFC 7489 6.6.3 step 5: several records, no DMARC processing (B); rspamd permerror.
    ("dmarc-two-records", _two_records, 250, "dmarc=none", "dmarc=permerror"),
    # RFC 6376 6.1.1: a signature missing a required tag: the verifier "MUST ignore the
    # DKIM-Signature header field and return PERMFAIL". B says permerror, rspamd ignores
    # it (unsigned: none).
    ("dkim-no-bh", _no_body_hash, 250, "dkim=permerror", "dkim=none"),
    # RFC 6376 3.5 x=: an expired signature MAY be considered invalid; 6.1.1: verifiers
    # MAY ignore it. B (dkimpy) allows 10 hours of clock skew past x=, then says fail;
    # rspamd ignores it at once. Both are allowed.
    ("dkim-expired-1h", _expired_lately, 250, "dkim=pass", "dkim=none"),
    ("dkim-expired-12h", _expired_long_ago, 250, "dkim=fail", "dkim=none"),
    # RFC 7489 6.6.1: a From with several addresses is checked for each author domain,
    # the strictest failing policy applied. Neither does: B says permerror (and delivers,
    # p=reject of df-victim.test notwithstanding), rspamd none.
    ("from-two-addresses", _two_authors, 250, "dmarc=permerror", "dmarc=none"),
    # Two From fields (RFC 5322 3.6 allows one): B checks the first and refuses it under
    # its p=reject; rspamd gives up on DMARC (none). RFC 7489 6.6.1 lets a receiver reject
    # such a message outright.
    ("two-from-fields", _two_from_fields, 550, "dmarc=fail", "dmarc=none"),
]


@pytest.mark.parametrize(
    ("name", "make", "code", "hato_says", "rspamd_says"),
    DIFFERENCES,
    ids=[case[0] for case in DIFFERENCES],
)
def test_where_they_differ(
    b: HatoProcess,
    rspamd: RspamdServer,
    name: str,
    make: Callable[[DnsServer], bytes],
    code: int,
    hato_says: str,
    rspamd_says: str,
) -> None:
    data = make(rspamd.dns)
    outcome = check(b, rspamd, data, mail_from=f"alice@df-{name}.test", user=f"df-{name}")
    method = hato_says.partition("=")[0]
    assert outcome.code == code, outcome.explain()
    assert f"{method}={outcome.hato[method]}" == hato_says, outcome.explain()
    assert f"{method}={rspamd_words(outcome.scan)[method]}" == rspamd_says, outcome.explain()


# -- forwarding through an alias -----------------------------------------------------------


def forwarded(b: HatoProcess, sink: ScriptedSmtp, data: bytes, message_id: str) -> bytes:
    """Send ``data`` to FORWARDER and return it as B handed it to the sink."""
    code, reply = send(b, data, mail_from="alice@origin.test", rcpt=FORWARDER)
    assert code == 250, reply
    marker = f"Message-ID: {message_id}".encode()
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while time.monotonic() < deadline:
        for transaction in sink.delivered():
            if transaction.data is not None and marker in transaction.data:
                assert transaction.recipients == [f"RCPT TO:<{FORWARD_TARGET}>"], transaction
                assert "SRS0=" in transaction.mail, transaction.mail
                return transaction.data
        time.sleep(0.05)
    raise AssertionError(f"B forwarded nothing with {message_id}; sink saw {sink.transactions}")


def seal_tags(data: bytes, instance: int) -> dict[str, str]:
    """The tags of the ARC-Seal field of ``instance`` (whitespace removed)."""
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    for value in parsed.get_all("ARC-Seal") or []:
        text = re.sub(r"\s+", "", str(value))
        tags = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        if tags.get("i") == str(instance):
            return tags
    raise AssertionError(f"no ARC-Seal i={instance} in {data[:2000]!r}")


def test_forwarded_message_carries_our_arc_seal(
    b: HatoProcess, rspamd: RspamdServer, sink: ScriptedSmtp
) -> None:
    key = rsa_key("fw-origin.test", "s1")
    key.publish(rspamd.dns)
    message_id = "<forward.1@fw-origin.test>"
    data = dkim_sign(message("alice@fw-origin.test", to=FORWARDER, message_id=message_id), key)
    out = forwarded(b, sink, data, message_id)
    tags = seal_tags(out, 1)
    assert (tags["d"], tags["cv"]) == (LOCAL_DOMAIN, "none"), tags
    scan = rspamd.scan(out, ip=CLIENT_IP, helo=b.hostname, mail_from="alice@fw-origin.test")
    assert scan.has("ARC_ALLOW") and scan.arc == "pass", scan.explain()
    assert scan.dkim == "pass", scan.explain()  # the original signature survives forwarding
    assert hato_words(out, b.hostname)[0]["arc"] == "none"  # what B found: no chain before


def test_forwarded_message_extends_an_arc_chain(
    b: HatoProcess, rspamd: RspamdServer, sink: ScriptedSmtp
) -> None:
    # Sealed once on the way (i=1 by another ADMD), then forwarded by B: i=2, cv=pass.
    key = rsa_key("fw-chain.test", "s1")
    key.publish(rspamd.dns)
    message_id = "<forward.2@fw-chain.test>"
    signed = dkim_sign(message("alice@fw-chain.test", to=FORWARDER, message_id=message_id), key)
    data = arc_seal(signed, key, results="dkim=pass header.d=fw-chain.test")
    out = forwarded(b, sink, data, message_id)
    tags = seal_tags(out, 2)
    assert (tags["d"], tags["cv"]) == (LOCAL_DOMAIN, "pass"), tags
    scan = rspamd.scan(out, ip=CLIENT_IP, helo=b.hostname, mail_from="alice@fw-chain.test")
    assert scan.has("ARC_ALLOW") and scan.arc == "pass", scan.explain()
    assert hato_words(out, b.hostname)[0]["arc"] == "pass"
