"""The rspamd verifier itself (``rspamd_server``), on messages signed and sealed with dkimpy
and records served by the test DNS server: what later tests compare Hato's results with
must be right on the plain cases first. One rspamd for the module; each test has domains of
its own, since rspamd keeps the keys and records it has fetched."""

from __future__ import annotations

import dkim
import pytest
from mailauth_peers import (
    RELAXED,
    SIGNED_HEADERS,
    PeerKey,
    arc_seal,
    dkim_sign,
    ed25519_key,
    message,
    message_set,
    rsa_key,
)
from rspamd_server import CLIENT_IP, RspamdServer, rspamd_fixture  # noqa: F401

OTHER_IP = "198.51.100.7"  # TEST-NET-2: not in any record here


def signed(key: PeerKey, from_address: str) -> bytes:
    """A message signed with dkimpy directly (relaxed/relaxed), not through the helper."""
    original = message(from_address)
    field = dkim.sign(
        original,
        key.selector.encode(),
        key.domain.encode(),
        key.private,
        canonicalize=RELAXED,
        include_headers=list(SIGNED_HEADERS),
    )
    return bytes(field) + original


def test_dkim_signature_passes(rspamd: RspamdServer) -> None:
    key = rsa_key("dkim-pass.test", "s2023")
    key.publish(rspamd.dns)
    scan = rspamd.scan(signed(key, "alice@dkim-pass.test"), mail_from="alice@dkim-pass.test")
    assert scan.dkim == "pass", scan.explain()
    assert scan.has("R_DKIM_ALLOW")
    assert scan.dkim_signatures == (("dkim-pass.test", "pass"),)
    assert any(q.name == "s2023._domainkey.dkim-pass.test" for q in rspamd.dns.queries)


def test_dkim_ed25519_signature_passes(rspamd: RspamdServer) -> None:
    key = ed25519_key("dkim-ed.test", "ed1")
    key.publish(rspamd.dns)
    scan = rspamd.scan(dkim_sign(message("alice@dkim-ed.test"), key))
    assert scan.dkim == "pass", scan.explain()


def test_dkim_tampered_body_fails(rspamd: RspamdServer) -> None:
    key = rsa_key("dkim-body.test", "s1")
    key.publish(rspamd.dns)
    tampered = signed(key, "alice@dkim-body.test").replace(b"in spirit", b"in person")
    scan = rspamd.scan(tampered)
    assert scan.dkim == "fail", scan.explain()
    assert scan.has("R_DKIM_REJECT")


def test_dkim_missing_key_is_permerror(rspamd: RspamdServer) -> None:
    # rspamd 3.4 says R_DKIM_PERMFAIL (trace "~") for a selector without a record.
    key = rsa_key("dkim-nokey.test", "gone")
    scan = rspamd.scan(signed(key, "alice@dkim-nokey.test"))
    assert scan.dkim == "permerror", scan.explain()
    assert scan.has("R_DKIM_PERMFAIL")
    assert scan.dkim_signatures == (("dkim-nokey.test", "permerror"),)


def test_unsigned_message_has_no_dkim(rspamd: RspamdServer) -> None:
    scan = rspamd.scan(message("alice@dkim-none.test"))
    assert scan.dkim == "none", scan.explain()
    assert scan.has("R_DKIM_NA")


def test_spf_pass_and_fail(rspamd: RspamdServer) -> None:
    rspamd.dns.add("spf.test", "TXT", '"v=spf1 ip4:192.0.2.10 -all"')
    mail = message("alice@spf.test")
    passed = rspamd.scan(mail, ip=CLIENT_IP, mail_from="alice@spf.test")
    assert passed.spf == "pass", passed.explain()
    failed = rspamd.scan(mail, ip=OTHER_IP, mail_from="alice@spf.test")
    assert failed.spf == "fail", failed.explain()
    assert failed.has("R_SPF_FAIL")


def test_spf_checks_loopback_clients_too(rspamd: RspamdServer) -> None:
    # rspamd skips SPF for "local" clients unless told otherwise; 127.0.0.1 must be checked.
    rspamd.dns.add("spf-local.test", "TXT", '"v=spf1 ip4:192.0.2.10 -all"')
    scan = rspamd.scan(message("a@spf-local.test"), ip="127.0.0.1", mail_from="a@spf-local.test")
    assert scan.spf == "fail", scan.explain()


def test_spf_softfail_and_none(rspamd: RspamdServer) -> None:
    rspamd.dns.add("spf-soft.test", "TXT", '"v=spf1 ~all"')
    soft = rspamd.scan(message("a@spf-soft.test"), mail_from="a@spf-soft.test")
    assert soft.spf == "softfail", soft.explain()
    none = rspamd.scan(message("a@spf-none.test"), mail_from="a@spf-none.test")
    assert none.spf == "none", none.explain()


def test_dmarc_passes_on_aligned_dkim(rspamd: RspamdServer) -> None:
    key = rsa_key("dmarc-pass.test", "s1")
    key.publish(rspamd.dns)
    rspamd.dns.add("_dmarc.dmarc-pass.test", "TXT", '"v=DMARC1; p=reject"')
    # The envelope is another domain's, without SPF: only the signature can align.
    scan = rspamd.scan(signed(key, "alice@dmarc-pass.test"), mail_from="list@elsewhere.test")
    assert scan.dkim == "pass", scan.explain()
    assert scan.dmarc == "pass", scan.explain()
    assert scan.has("DMARC_POLICY_ALLOW")


def test_dmarc_relaxed_alignment_takes_the_organizational_domain(rspamd: RspamdServer) -> None:
    # From mail.dmarc-org.test, signed by dmarc-org.test: aligned only if rspamd takes
    # dmarc-org.test as the organizational domain (".test" a public suffix).
    key = rsa_key("dmarc-org.test", "s1")
    key.publish(rspamd.dns)
    rspamd.dns.add("_dmarc.dmarc-org.test", "TXT", '"v=DMARC1; p=reject"')
    scan = rspamd.scan(signed(key, "alice@mail.dmarc-org.test"), mail_from="x@elsewhere.test")
    assert scan.dmarc == "pass", scan.explain()


def test_dmarc_fails_with_neither_spf_nor_dkim(rspamd: RspamdServer) -> None:
    rspamd.dns.add("dmarc-fail.test", "TXT", '"v=spf1 ip4:192.0.2.10 -all"')
    rspamd.dns.add("_dmarc.dmarc-fail.test", "TXT", '"v=DMARC1; p=reject"')
    scan = rspamd.scan(message("alice@dmarc-fail.test"), ip=OTHER_IP, mail_from="a@dmarc-fail.test")
    assert scan.spf == "fail", scan.explain()
    assert scan.dmarc == "fail", scan.explain()
    assert scan.dmarc_policy == "reject"
    assert scan.has("DMARC_POLICY_REJECT")


def test_dmarc_without_record_is_none(rspamd: RspamdServer) -> None:
    scan = rspamd.scan(message("alice@dmarc-none.test"), mail_from="a@dmarc-none.test")
    assert scan.dmarc == "none", scan.explain()


def test_arc_seal_at_instance_one_passes(rspamd: RspamdServer) -> None:
    key = rsa_key("arc.test", "seal")
    key.publish(rspamd.dns)
    sealed = arc_seal(message("alice@origin.test"), key, results="spf=pass")
    assert sealed.startswith(b"ARC-Seal: i=1;")
    scan = rspamd.scan(sealed)
    assert scan.arc == "pass", scan.explain()
    assert scan.has("ARC_ALLOW")


def test_unsealed_message_has_no_arc(rspamd: RspamdServer) -> None:
    scan = rspamd.scan(message("alice@arc-none.test"))
    assert scan.arc == "none", scan.explain()


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_message_set_gets_the_results_it_claims(rspamd: RspamdServer, algorithm: str) -> None:
    domain = f"set-{algorithm}.test"
    make = rsa_key if algorithm == "rsa" else ed25519_key
    key, other = make(domain, "s1"), make(domain, "s2")
    sealer = rsa_key(f"forwarder-{algorithm}.test", "arc")
    cases = message_set(rspamd.dns, key, other, sealer=sealer)
    assert len(cases) == 7
    for case in cases:
        scan = rspamd.scan(case.message)
        assert (scan.dkim, scan.arc) == (case.dkim, case.arc), f"{case.name}\n{scan.explain()}"
