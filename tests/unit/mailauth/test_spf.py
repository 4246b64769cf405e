"""SPF through Hato's resolver against a real DNS server: each result, the HELO identity for
the null reverse-path, RFC 7208's processing limits, DNS failures and the time limit."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401
from hato.mailauth import SPF_RESULTS, MailDns, check_spf


def dns_for(server: DnsServer, timeout: float = 1.0) -> MailDns:
    return MailDns([server.nameserver], timeout=timeout).for_message()


def spf(server: DnsServer, domain: str, record: str) -> None:
    server.add(domain, "TXT", f'"{record}"')


@pytest.mark.parametrize(
    ("record", "result"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "pass"),
        ("v=spf1 ip4:198.51.100.1 -all", "fail"),
        ("v=spf1 ip4:198.51.100.1 ~all", "softfail"),
        ("v=spf1 ip4:198.51.100.1 ?all", "neutral"),
        ("v=spf1 ip4:198.51.100.1", "neutral"),  # no match, no all: neutral (RFC 7208 4.7)
        ("v=spf1 a -all", "pass"),
        ("v=spf1 mx -all", "pass"),
        ("v=spf1 include:ok.example -all", "pass"),
        ("v=spf1 redirect=ok.example", "pass"),
        ("v=spf1 ip4:192.0.2.7 moo -all", "permerror"),  # unknown mechanism
    ],
)
def test_results(dns_server: DnsServer, record: str, result: str) -> None:
    spf(dns_server, "example.com", record)
    spf(dns_server, "ok.example", "v=spf1 ip4:192.0.2.7 -all")
    dns_server.add("example.com", "A", "192.0.2.7")
    dns_server.add("example.com", "MX", "10 mx.example.com")
    dns_server.add("mx.example.com", "A", "192.0.2.7")
    found = check_spf(dns_for(dns_server), "192.0.2.7", "Alice@example.com", "mail.example.org")
    assert found.result == result
    assert found.result in SPF_RESULTS
    assert (found.identity, found.domain, found.sender) == (
        "mailfrom",
        "example.com",
        "Alice@example.com",
    )


def test_none_without_a_record(dns_server: DnsServer) -> None:
    dns_server.add("norecord.example", "TXT", '"some verification token"')
    resolver = dns_for(dns_server)
    assert check_spf(resolver, "192.0.2.7", "a@norecord.example", "h.example").result == "none"
    assert check_spf(resolver, "192.0.2.7", "a@nxdomain.example", "h.example").result == "none"


def test_ipv6_client(dns_server: DnsServer) -> None:
    spf(dns_server, "six.example", "v=spf1 ip6:2001:db8::/32 a -all")
    dns_server.add("six.example", "AAAA", "2001:db9::1")
    resolver = dns_for(dns_server)
    assert check_spf(resolver, "2001:db8::25", "a@six.example", "h").result == "pass"
    assert check_spf(resolver, "2001:db9::1", "a@six.example", "h").result == "pass"
    assert check_spf(resolver, "2001:dba::1", "a@six.example", "h").result == "fail"


def test_null_sender_checks_the_helo_identity(dns_server: DnsServer) -> None:
    spf(dns_server, "mail.example.org", "v=spf1 ip4:192.0.2.7 -all")
    spf(dns_server, "example.org", "v=spf1 -all")
    resolver = dns_for(dns_server)
    found = check_spf(resolver, "192.0.2.7", "", "mail.example.org")
    assert found.result == "pass"
    assert (found.identity, found.domain, found.sender) == (
        "helo",
        "mail.example.org",
        "postmaster@mail.example.org",
    )
    assert check_spf(resolver, "192.0.2.8", "", "mail.example.org").result == "fail"


@pytest.mark.parametrize("helo", ["[192.0.2.7]", "localhost", ""])
def test_helo_that_is_no_domain_has_none(dns_server: DnsServer, helo: str) -> None:
    found = check_spf(dns_for(dns_server), "192.0.2.7", "", helo)
    assert (found.result, found.identity) == ("none", "helo")


def test_include_loop_is_permerror(dns_server: DnsServer) -> None:
    spf(dns_server, "loop.example", "v=spf1 include:loop2.example -all")
    spf(dns_server, "loop2.example", "v=spf1 include:loop.example -all")
    spf(dns_server, "self.example", "v=spf1 include:self.example -all")
    resolver = dns_for(dns_server)
    found = check_spf(resolver, "192.0.2.7", "a@loop.example", "h.example")
    assert found.result == "permerror"
    assert "lookups" in found.explanation
    assert check_spf(resolver, "192.0.2.7", "a@self.example", "h.example").result == "permerror"


def test_long_redirect_chain_is_permerror(dns_server: DnsServer) -> None:
    for n in range(40):
        spf(dns_server, f"r{n}.example", f"v=spf1 redirect=r{n + 1}.example")
    spf(dns_server, "r40.example", "v=spf1 +all")
    found = check_spf(dns_for(dns_server), "192.0.2.7", "a@r0.example", "h.example")
    assert found.result == "permerror"


def test_more_than_ten_lookups_is_permerror(dns_server: DnsServer) -> None:
    names = [f"h{n}.example" for n in range(11)]
    for name in names:
        dns_server.add(name, "A", "198.51.100.1")
    spf(dns_server, "ten.example", "v=spf1 " + " ".join(f"a:{n}" for n in names[:10]) + " -all")
    spf(dns_server, "eleven.example", "v=spf1 " + " ".join(f"a:{n}" for n in names) + " -all")
    resolver = dns_for(dns_server)
    assert check_spf(resolver, "192.0.2.7", "a@ten.example", "h.example").result == "fail"
    found = check_spf(resolver, "192.0.2.7", "a@eleven.example", "h.example")
    assert found.result == "permerror"
    assert "Too many DNS lookups" in found.explanation


def test_void_lookups(dns_server: DnsServer) -> None:
    # RFC 7208 4.6.4: more than two lookups answering no data (or NXDOMAIN) is permerror.
    spf(dns_server, "two.example", "v=spf1 a:v1.example a:v2.example -all")
    spf(dns_server, "three.example", "v=spf1 a:v1.example a:v2.example a:v3.example -all")
    resolver = dns_for(dns_server)
    assert check_spf(resolver, "192.0.2.7", "a@two.example", "h.example").result == "fail"
    found = check_spf(resolver, "192.0.2.7", "a@three.example", "h.example")
    assert found.result == "permerror"
    assert "Void lookup" in found.explanation


def test_huge_record(dns_server: DnsServer) -> None:
    # Thousands of address mechanisms (no DNS among them): evaluated, not a crash. The
    # record is longer than a UDP answer, so the resolver asks again over TCP.
    mechanisms = [f"ip4:10.{n // 250}.{n % 250}.1" for n in range(3000)]
    strings = " ".join(f'"{m} "' for m in mechanisms)
    dns_server.add("huge.example", "TXT", f'"v=spf1 " {strings} "ip4:192.0.2.7 -all"')
    found = check_spf(dns_for(dns_server), "192.0.2.7", "a@huge.example", "h.example")
    assert found.result == "pass"
    assert any(q.tcp for q in dns_server.queries)


def test_record_split_in_strings(dns_server: DnsServer) -> None:
    # A 450-byte record is published as strings of at most 255 bytes, joined without spaces
    # (RFC 7208 3.3); here the split falls inside the passing mechanism.
    record = "v=spf1 " + "ip4:203.0.113.1 " * 15 + "ip4:192.0.2.7 " + "ip4:203.0.113.2 " * 12
    record += "-all"
    cut = record.index("ip4:192.0.2.7") + 6
    head, tail = record[:cut], record[cut:]
    assert len(record) >= 450 and len(head) <= 255 and len(tail) <= 255
    dns_server.add("split.example", "TXT", f'"{head}" "{tail}"')
    resolver = dns_for(dns_server)
    assert check_spf(resolver, "192.0.2.7", "a@split.example", "h.example").result == "pass"
    assert check_spf(resolver, "192.0.2.8", "a@split.example", "h.example").result == "fail"


def test_servfail_is_temperror(dns_server: DnsServer) -> None:
    dns_server.servfail("broken.example")
    spf(dns_server, "inc.example", "v=spf1 include:broken.example -all")
    resolver = dns_for(dns_server)
    found = check_spf(resolver, "192.0.2.7", "a@broken.example", "h.example")
    assert found.result == "temperror"
    assert check_spf(resolver, "192.0.2.7", "a@inc.example", "h.example").result == "temperror"


def test_silence_is_temperror(dns_server: DnsServer) -> None:
    dns_server.silence("quiet.example")
    started = time.monotonic()
    found = check_spf(dns_for(dns_server, 0.5), "192.0.2.7", "a@quiet.example", "h.example")
    assert found.result == "temperror"
    assert time.monotonic() - started < 5


def test_time_limit_for_the_whole_check(dns_server: DnsServer) -> None:
    # Each lookup answers within its own timeout, but the chain takes longer than the check
    # may: temperror once the time is up, without asking further.
    for n in range(3):
        dns_server.silence(f"slow{n}.example", "A")
    spf(
        dns_server,
        "slow.example",
        "v=spf1 a:slow0.example a:slow1.example a:slow2.example -all",
    )
    started = time.monotonic()
    found = check_spf(
        dns_for(dns_server, 0.4), "192.0.2.7", "a@slow.example", "h.example", time_limit=0.5
    )
    assert found.result == "temperror"
    assert time.monotonic() - started < 1.5


def test_each_thread_uses_its_own_resolver() -> None:
    with DnsServer() as passing, DnsServer() as failing:
        spf(passing, "same.example", "v=spf1 ip4:192.0.2.7 -all")
        spf(failing, "same.example", "v=spf1 -all")
        resolvers = [dns_for(passing), dns_for(failing)] * 20
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(
                pool.map(
                    lambda r: check_spf(r, "192.0.2.7", "a@same.example", "h").result,
                    resolvers,
                )
            )
    assert results == ["pass", "fail"] * 20


@pytest.mark.parametrize(
    ("ip", "sender"),
    [("not-an-address", "a@example.com"), ("192.0.2.7", "a@" + "x" * 300 + ".example")],
)
def test_bad_input_gives_a_result(dns_server: DnsServer, ip: str, sender: str) -> None:
    spf(dns_server, "example.com", "v=spf1 -all")
    found = check_spf(dns_for(dns_server), ip, sender, "h.example")
    assert found.result in ("permerror", "none")


def test_international_domain_is_asked_in_a_labels(dns_server: DnsServer) -> None:
    spf(dns_server, "xn--bcher-kva.example", "v=spf1 ip4:192.0.2.7 -all")
    found = check_spf(dns_for(dns_server), "192.0.2.7", "a@bücher.example", "h.example")
    assert (found.result, found.domain) == ("pass", "xn--bcher-kva.example")


def test_ptr_name_whose_address_lookup_fails_is_skipped(dns_server: DnsServer) -> None:
    # RFC 7208 5.5: a DNS error on one PTR name's addresses skips that name only.
    spf(dns_server, "ptr.example", "v=spf1 ptr -all")
    dns_server.add("7.2.0.192.in-addr.arpa", "PTR", "broken.ptr.example")
    dns_server.add("7.2.0.192.in-addr.arpa", "PTR", "mail.ptr.example")
    dns_server.servfail("broken.ptr.example")
    dns_server.add("mail.ptr.example", "A", "192.0.2.7")
    resolver = dns_for(dns_server)
    assert check_spf(resolver, "192.0.2.7", "a@ptr.example", "h.example").result == "pass"
    dns_server.remove("mail.ptr.example")
    assert check_spf(dns_for(dns_server), "192.0.2.7", "a@ptr.example", "h.example").result == (
        "fail"
    )
