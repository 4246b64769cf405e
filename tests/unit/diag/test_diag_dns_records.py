"""The record checks of ``hato test DOMAIN --dns`` over a zone held in a dictionary: SPF terms
and the RFC 7208 4.6.4 lookup count, DMARC, MTA-STS and TLS-RPT syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from hato.diag._dns_records import (
    check_dmarc_record,
    check_mta_sts,
    check_spf_record,
    check_tls_rpt,
    parse_spf,
)
from hato.diag._self import certificate_check, dnsbl_check, dnsbl_zones, reverse_dns_check
from hato.mailauth import TemporaryDnsError


class Zone:
    """TXT records by name; a name in ``failing`` answers with a temporary error."""

    def __init__(
        self,
        records: dict[str, list[str]],
        failing: tuple[str, ...] = (),
        other: dict[tuple[str, str], list[str]] | None = None,
    ) -> None:
        self.records = records
        self.failing = failing
        self.other = other or {}
        self.asked: list[str] = []

    def txt(self, name: str) -> list[bytes]:
        self.asked.append(name)
        if name in self.failing:
            raise TemporaryDnsError(f"{name}: SERVFAIL")
        return [text.encode() for text in self.records.get(name, [])]

    def query(self, name: str, rtype: str) -> list[str]:
        if name in self.failing:
            raise TemporaryDnsError(f"{name}: SERVFAIL")
        return self.other.get((name, rtype), [])


def codes(check: object) -> list[str]:
    return [item.code for item in check.findings]  # type: ignore[attr-defined]


def test_terms_and_qualifiers() -> None:
    record = parse_spf(
        "v=spf1 a:mail.example.com/24 -ip4:192.0.2.0/24 ~mx ip6:2001:db8::/32 ?all exp=x.example"
    )
    assert [(t.kind, t.name, t.qualifier, t.value) for t in record.terms] == [
        ("mechanism", "a", "+", "mail.example.com/24"),
        ("mechanism", "ip4", "-", "192.0.2.0/24"),
        ("mechanism", "mx", "~", ""),
        ("mechanism", "ip6", "+", "2001:db8::/32"),
        ("mechanism", "all", "?", ""),
        ("modifier", "exp", "", "x.example"),
    ]
    assert record.all_qualifier == "?"
    assert record.own_lookups == 2
    assert record.errors == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("v=spf1 ip5:1.2.3.4 -all", "unknown term 'ip5:1.2.3.4'"),
        ("v=spf1 include -all", "'include' needs ':' and a value"),
        ("v=spf1 all:x", "'all:x': all takes no value"),
        ("v=spf1 ip4:300.1.1.1 -all", "'ip4:300.1.1.1' is not an IPv4 address or network"),
        ("v=spf1 ip6:192.0.2.1 -all", "'ip6:192.0.2.1' is not an IPv6 address or network"),
        ("v=spf1 redirect=a.example redirect=b.example", "more than one redirect="),
    ],
)
def test_syntax_errors(text: str, error: str) -> None:
    assert error in parse_spf(text).errors


def test_redirect_is_ignored_beside_all() -> None:
    assert parse_spf("v=spf1 redirect=x.example -all").own_lookups == 0
    assert parse_spf("v=spf1 redirect=x.example").own_lookups == 1


def test_exactly_ten_lookups_pass_eleven_fail() -> None:
    ten = {f"i{n}.example": ["v=spf1 -all"] for n in range(9)}
    ten["example.com"] = [
        "v=spf1 mx " + " ".join(f"include:i{n}.example" for n in range(9)) + " -all"
    ]
    check = check_spf_record(Zone(ten), "example.com")
    assert check.facts["lookups"] == 10
    assert check.status == "ok"
    ten["i0.example"] = ["v=spf1 a -all"]
    check = check_spf_record(Zone(ten), "example.com")
    assert check.facts["lookups"] == 11
    assert codes(check) == ["spf-too-many-lookups"]
    assert "i0.example 2" in check.findings[0].next_steps


def test_include_loop_ends_and_is_reported() -> None:
    zone = Zone(
        {
            "a.example": ["v=spf1 include:b.example -all"],
            "b.example": ["v=spf1 include:a.example -all"],
        }
    )
    check = check_spf_record(zone, "a.example")
    assert codes(check) == ["spf-include-broken"]
    assert "loop" in check.findings[0].title
    assert len(zone.asked) < 5


def test_macro_include_is_counted_not_followed() -> None:
    zone = Zone({"m.example": ["v=spf1 include:%{d}.spf.example -all"]})
    check = check_spf_record(zone, "m.example")
    assert check.facts["lookups"] == 1
    assert zone.asked == ["m.example"]


def test_bare_all_and_no_all() -> None:
    assert codes(check_spf_record(Zone({"x.example": ["v=spf1 all"]}), "x.example")) == [
        "spf-plus-all"
    ]
    assert codes(check_spf_record(Zone({"x.example": ["v=spf1 mx"]}), "x.example")) == [
        "spf-no-all"
    ]
    assert check_spf_record(Zone({"x.example": ["v=spf1 mx ~all"]}), "x.example").status == "ok"


def test_spf_none_and_other_txt_records() -> None:
    zone = Zone({"x.example": ["google-site-verification=abc", "v=spf10 nope"]})
    check = check_spf_record(zone, "x.example")
    assert codes(check) == ["spf-none"]
    assert check.status == "warn"


def test_temporary_error_in_an_include() -> None:
    zone = Zone({"x.example": ["v=spf1 include:t.example -all"]}, failing=("t.example",))
    check = check_spf_record(zone, "x.example")
    assert codes(check) == ["record-temporary"]
    assert check.status == "fail"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("v=DMARC1; p=reject; rua=mailto:a@x.example", []),
        ("v=DMARC1; p=quarantine; pct=20; rua=mailto:a@x.example", ["dmarc-partial"]),
        ("v=DMARC1; p=none; rua=mailto:a@x.example", ["dmarc-monitoring"]),
        ("v=DMARC1; p=reject", ["dmarc-no-reports"]),
        ("v=DMARC1; p=bogus", ["dmarc-invalid"]),
        ("v=DMARC1; rua=mailto:a@x.example", ["dmarc-invalid", "dmarc-monitoring"]),
    ],
)
def test_dmarc(text: str, found: list[str]) -> None:
    check = check_dmarc_record(Zone({"_dmarc.x.example": [text]}), "x.example")
    assert codes(check) == found


def test_two_dmarc_records() -> None:
    zone = Zone({"_dmarc.x.example": ["v=DMARC1; p=none", "v=DMARC1; p=reject"]})
    assert codes(check_dmarc_record(zone, "x.example")) == ["dmarc-multiple"]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("v=STSv1; id=20240101T000000Z", True),
        ("v=STSv1; id=", False),
        ("v=STSv1;", False),
        ("v=STSv1; id=" + "a" * 33, False),
    ],
)
def test_mta_sts(text: str, ok: bool) -> None:
    check = check_mta_sts(Zone({"_mta-sts.x.example": [text]}), "x.example")
    assert (check.status == "ok") is ok, check


def test_optional_records_absent() -> None:
    assert check_mta_sts(Zone({}), "x.example").status == "none"
    assert check_tls_rpt(Zone({}), "x.example").status == "none"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("v=TLSRPTv1; rua=mailto:r@x.example,https://r.x.example/report", True),
        ("v=TLSRPTv1;", False),
        ("v=TLSRPTv1; rua=ftp://x.example", False),
    ],
)
def test_tls_rpt(text: str, ok: bool) -> None:
    check = check_tls_rpt(Zone({"_smtp._tls.x.example": [text]}), "x.example")
    assert (check.status == "ok") is ok, check


def test_blocklist_zones_once_each_in_order() -> None:
    assert dnsbl_zones(
        [("A.example.",), ("b.example", "a.example")], ["c.example", "b.example"]
    ) == (
        "a.example",
        "b.example",
        "c.example",
    )


def test_certificate_missing_and_unreadable(tmp_path: Path) -> None:
    missing = certificate_check(tmp_path / "cert.pem", configured=False)
    assert codes(missing) == ["self-cert-missing"]
    (tmp_path / "bad.pem").write_text("not a certificate")
    bad = certificate_check(tmp_path / "bad.pem", configured=True)
    assert codes(bad) == ["self-cert-unreadable"]
    gone = certificate_check(tmp_path / "gone.pem", configured=True)
    assert codes(gone) == ["self-cert-unreadable"]


V6_PTR = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"


def test_reverse_dns_ipv6_confirmed_prefers_the_helo_name() -> None:
    zone = Zone(
        {},
        other={
            (V6_PTR, "PTR"): ["a.example.", "mail.example."],
            ("a.example", "AAAA"): ["2001:db8::1"],
            ("mail.example", "AAAA"): ["2001:0db8:0::1"],
        },
    )
    check = reverse_dns_check(zone, "2001:db8::1", "Mail.example")
    assert check.status == "ok", check
    assert check.facts["confirmed"] == "mail.example"


def test_reverse_dns_failures() -> None:
    assert codes(reverse_dns_check(Zone({}), "192.0.2.9", "mail.example")) == ["rdns-none"]
    ptr = {("9.2.0.192.in-addr.arpa", "PTR"): ["x.example."]}
    assert codes(reverse_dns_check(Zone({}, other=ptr), "192.0.2.9", "x.example")) == [
        "rdns-unconfirmed"
    ]
    failing = Zone({}, failing=("9.2.0.192.in-addr.arpa",))
    assert codes(reverse_dns_check(failing, "192.0.2.9", "x.example")) == ["record-temporary"]


def test_dnsbl_answers() -> None:
    listed = Zone(
        {"9.2.0.192.bl.example": ["spam seen"]},
        other={("9.2.0.192.bl.example", "A"): ["127.0.0.2"]},
    )
    check = dnsbl_check(listed, "192.0.2.9", "bl.example")
    assert codes(check) == ["dnsbl-listed"]
    assert "spam seen" in check.findings[0].title
    # RFC 5782 2.3 error answers (127.255.255.x) say nothing about the address.
    refused = Zone({}, other={("9.2.0.192.bl.example", "A"): ["127.255.255.254"]})
    check = dnsbl_check(refused, "192.0.2.9", "bl.example")
    assert codes(check) == ["dnsbl-temporary"]
    assert "refused" in check.findings[0].title
    assert dnsbl_check(Zone({}), "192.0.2.9", "bl.example").status == "ok"
    timeout = Zone({}, failing=("9.2.0.192.bl.example",))
    assert codes(dnsbl_check(timeout, "192.0.2.9", "bl.example")) == ["dnsbl-temporary"]


def test_dmarc_of_a_subdomain_comes_from_the_organizational_domain() -> None:
    zone = Zone({"_dmarc.example.com": ["v=DMARC1; p=reject; sp=none; rua=mailto:d@example.com"]})
    check = check_dmarc_record(zone, "mail.example.com")
    assert check.subject == "_dmarc.example.com"
    assert check.facts["policy_domain"] == "example.com"
    assert check.facts["p"] == "none"  # sp= is the subdomain's policy
    assert codes(check) == ["dmarc-monitoring"]
    assert zone.asked == ["_dmarc.mail.example.com", "_dmarc.example.com"]
    assert codes(check_dmarc_record(Zone({}), "mail.example.com")) == ["dmarc-none"]
