"""DMARC over a real DNS server: record discovery, alignment, sp=, pct= and the errors."""

from __future__ import annotations

import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401
from hato.mailauth import (
    DkimResult,
    MailDns,
    SpfResult,
    check_dmarc,
    organizational_domain,
    parse_dmarc_record,
)


def dns_for(server: DnsServer) -> MailDns:
    return MailDns([server.nameserver], timeout=1.0)


def spf_pass(domain: str) -> SpfResult:
    return SpfResult("pass", "mailfrom", domain, f"bounce@{domain}")


def dkim(domain: str, result: str = "pass") -> DkimResult:
    return DkimResult(result, domain, "sel")


@pytest.mark.parametrize(
    ("domain", "organizational"),
    [
        ("example.com", "example.com"),
        ("mail.Example.COM.", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix is its own
        ("bücher.example", "xn--bcher-kva.example"),
        ("x.xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_organizational_domain(domain: str, organizational: str) -> None:
    assert organizational_domain(domain) == organizational


def test_parse_record_tags_and_defaults() -> None:
    record = parse_dmarc_record(
        "v=DMARC1; p=Reject; sp=quarantine; pct=20; adkim=s; aspf=r;"
        " rua=mailto:a@example.com, mailto:b@example.com!10m; fo=1:d; ri=3600; zz=ignored"
    )
    assert record is not None
    assert (record.policy, record.subdomain_policy, record.pct) == ("reject", "quarantine", 20)
    assert (record.adkim, record.aspf, record.fo, record.ri) == ("s", "r", ("1", "d"), 3600)
    assert record.rua == ("mailto:a@example.com", "mailto:b@example.com!10m")
    plain = parse_dmarc_record("v=DMARC1;p=none")
    assert plain is not None
    assert (plain.subdomain_policy, plain.pct, plain.adkim, plain.aspf) == (None, 100, "r", "r")


@pytest.mark.parametrize(
    "text",
    [
        "p=reject; v=DMARC1",  # v= not first
        "v=dmarc1; p=reject",  # the version is exact
        "v=DMARC1; p=bounce",  # invalid p=, no rua=
        "v=DMARC1",  # no p=
        "v=spf1 -all",
        "",
        "v=DMARC1; p",
    ],
)
def test_parse_record_unusable(text: str) -> None:
    assert parse_dmarc_record(text) is None


def test_parse_record_invalid_policy_with_rua_is_none() -> None:
    # RFC 7489 6.6.3: act as p=none when rua= names somewhere to report to.
    record = parse_dmarc_record("v=DMARC1; p=bogus; rua=mailto:d@example.com")
    assert record is not None
    assert (record.policy, record.policy_assumed) == ("none", True)


def test_parse_record_invalid_values_fall_back() -> None:
    record = parse_dmarc_record("v=DMARC1; p=reject; sp=maybe; pct=300; adkim=x; ri=soon")
    assert record is not None
    assert (record.subdomain_policy, record.pct, record.adkim, record.ri) == (None, 100, "r", 86400)


def test_pass_by_relaxed_spf_and_dkim(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject"')
    dns = dns_for(dns_server)
    result = check_dmarc(dns, b"Alice <alice@Example.com>", spf_pass("bounce.example.com"), ())
    assert (result.result, result.spf_aligned, result.dkim_aligned) == ("pass", True, False)
    assert (result.from_domain, result.published, result.policy) == (
        "example.com",
        "reject",
        "none",
    )
    result = check_dmarc(dns, b"alice@example.com", None, [dkim("other.test"), dkim("example.com")])
    assert (result.result, result.dkim_aligned) == ("pass", True)


def test_fail_gives_the_policy(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=quarantine"')
    dns = dns_for(dns_server)
    result = check_dmarc(
        dns,
        b"alice@example.com",
        spf_pass("evil.test"),
        [dkim("example.com", "fail"), dkim("evil.test")],
    )
    assert (result.result, result.policy, result.published) == ("fail", "quarantine", "quarantine")
    assert not result.spf_aligned and not result.dkim_aligned
    assert "example.com" in result.reason


def test_spf_not_passing_does_not_align(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject"')
    softfail = SpfResult("softfail", "mailfrom", "example.com", "a@example.com")
    result = check_dmarc(dns_for(dns_server), b"a@example.com", softfail, ())
    assert (result.result, result.policy) == ("fail", "reject")


def test_strict_alignment(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject; adkim=s; aspf=s"')
    dns = dns_for(dns_server)
    relaxed_only = check_dmarc(
        dns, b"a@example.com", spf_pass("mail.example.com"), [dkim("mail.example.com")]
    )
    assert relaxed_only.result == "fail"
    exact = check_dmarc(dns, b"a@example.com", None, [dkim("EXAMPLE.com")])
    assert (exact.result, exact.dkim_aligned) == ("pass", True)


def test_subdomain_falls_back_to_organizational_sp(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject; sp=quarantine"')
    dns = dns_for(dns_server)
    result = check_dmarc(dns, b"a@news.example.com", None, ())
    assert (result.result, result.from_domain) == ("fail", "news.example.com")
    assert (result.policy, result.published) == ("quarantine", "reject")
    # Relaxed: a signature of the organizational domain aligns with the subdomain.
    assert check_dmarc(dns, b"a@news.example.com", None, [dkim("example.com")]).result == "pass"
    asked = [q.name for q in dns_server.queries]
    assert "_dmarc.news.example.com" in asked and "_dmarc.example.com" in asked


def test_subdomain_own_record_wins(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject; sp=reject"')
    dns_server.add("_dmarc.news.example.com", "TXT", '"v=DMARC1; p=none; sp=reject"')
    result = check_dmarc(dns_for(dns_server), b"a@news.example.com", None, ())
    assert (result.result, result.policy, result.published) == ("fail", "none", "none")


def test_subdomain_without_sp_takes_p(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.co.uk", "TXT", '"v=DMARC1; p=reject"')
    result = check_dmarc(dns_for(dns_server), b"a@x.y.example.co.uk", None, ())
    assert (result.result, result.policy) == ("fail", "reject")


@pytest.mark.parametrize(
    ("draw", "policy"),
    [(0.0, "reject"), (0.249, "reject"), (0.25, "quarantine"), (0.99, "quarantine")],
)
def test_pct_sample(dns_server: DnsServer, draw: float, policy: str) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject; pct=25"')
    result = check_dmarc(dns_for(dns_server), b"a@example.com", None, (), random=lambda: draw)
    assert (result.result, result.policy, result.published) == ("fail", policy, "reject")


def test_pct_quarantine_falls_to_none_and_100_never_draws(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=quarantine; pct=0"')
    dns_server.add("_dmarc.example.org", "TXT", '"v=DMARC1; p=quarantine"')
    dns = dns_for(dns_server)
    assert check_dmarc(dns, b"a@example.com", None, (), random=lambda: 0.0).policy == "none"

    def never() -> float:
        raise AssertionError("pct=100 needs no draw")

    assert check_dmarc(dns, b"a@example.org", None, (), random=never).policy == "quarantine"


def test_no_record_is_none(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=spf1 -all"')  # not a DMARC record
    result = check_dmarc(dns_for(dns_server), b"a@example.com", None, ())
    assert (result.result, result.published, result.from_domain) == ("none", "", "example.com")


def test_several_records_is_none(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject"')
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=none"')
    result = check_dmarc(dns_for(dns_server), b"a@example.com", None, ())
    assert result.result == "none"
    assert "2 records" in result.reason


def test_unusable_record_is_none(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=everything"')
    assert check_dmarc(dns_for(dns_server), b"a@example.com", None, ()).result == "none"


def test_dns_failure_is_temperror(dns_server: DnsServer) -> None:
    dns_server.servfail("_dmarc.example.com")
    result = check_dmarc(dns_for(dns_server), b"a@example.com", None, ())
    assert (result.result, result.from_domain) == ("temperror", "example.com")
    dns_server.heal("_dmarc.example.com")
    dns_server.servfail("_dmarc.example.org")  # the organizational domain's lookup fails
    result = check_dmarc(dns_for(dns_server), b"a@sub.example.org", None, ())
    assert result.result == "temperror"


def test_an_aligned_check_dns_left_undecided_is_temperror_not_fail(
    dns_server: DnsServer,
) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject; sp=quarantine"')
    dns = dns_for(dns_server)
    undecided = check_dmarc(dns, b"a@example.com", None, (dkim("example.com", "temperror"),))
    assert (undecided.result, undecided.policy) == ("temperror", "reject")
    assert "DKIM" in undecided.reason
    spf = SpfResult("temperror", "mailfrom", "mail.example.com", "b@mail.example.com")
    sub = check_dmarc(dns, b"a@sub.example.com", spf, ())
    assert (sub.result, sub.policy) == ("temperror", "quarantine")
    # Another domain's DNS failure decides nothing about example.com; a pass still passes.
    other = check_dmarc(dns, b"a@example.com", None, (dkim("example.net", "temperror"),))
    assert (other.result, other.policy) == ("fail", "reject")
    both = (dkim("example.com", "temperror"), dkim("example.com"))
    assert check_dmarc(dns, b"a@example.com", None, both).result == "pass"


def test_idna_from_domain(dns_server: DnsServer) -> None:
    dns_server.add("_dmarc.xn--bcher-kva.example", "TXT", '"v=DMARC1; p=reject"')
    result = check_dmarc(
        dns_for(dns_server),
        "Jörg <j@Bücher.example>".encode(),
        None,
        [dkim("xn--bcher-kva.example")],
    )
    assert (result.result, result.from_domain) == ("pass", "xn--bcher-kva.example")


def test_several_authors_get_the_strictest_failing_policy(dns_server: DnsServer) -> None:
    # RFC 7489 6.6.1: every author domain is checked. A second author in a domain without a
    # record (or one that passes) does not carry a forged first one past p=reject.
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject"')
    dns_server.add("_dmarc.example.net", "TXT", '"v=DMARC1; p=quarantine"')
    resolver = dns_for(dns_server)
    found = check_dmarc(resolver, b"b@example.org, a@example.com", None, ())
    assert (found.result, found.from_domain, found.policy) == ("fail", "example.com", "reject")
    found = check_dmarc(resolver, b"n@example.net, a@example.com", None, ())
    assert (found.result, found.policy) == ("fail", "reject")
    signed = [dkim("example.com")]
    found = check_dmarc(resolver, b"a@example.com, n@example.net", None, signed)
    assert (found.result, found.from_domain, found.policy) == ("fail", "example.net", "quarantine")
    both = [dkim("example.com"), dkim("example.net")]
    assert check_dmarc(resolver, b"a@example.com, n@example.net", None, both).result == "pass"


@pytest.mark.parametrize(
    ("field", "result", "words"),
    [
        (None, "none", "no From"),
        (b"undisclosed-recipients:;", "permerror", "no address"),
        (b"alice", "permerror", ""),
        (b"Mallory <m@evil.test> <a@example.com>", "permerror", "parsed"),
        (b"a@[192.0.2.1]", "permerror", "not a domain"),
        (b"\xff\xfe@example.com", "permerror", "UTF-8"),
        (b"<>", "permerror", ""),
    ],
)
def test_from_field_without_one_domain(
    dns_server: DnsServer, field: bytes | None, result: str, words: str
) -> None:
    dns_server.add("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject"')
    found = check_dmarc(dns_for(dns_server), field, None, ())
    assert (found.result, found.from_domain) == (result, "")
    assert words in found.reason and found.reason
    assert not dns_server.queries  # nothing to look up
