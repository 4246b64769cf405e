"""SPF over a real DNS server: the results, the HELO identity, RFC 7208's limits, failures."""

from __future__ import annotations

import threading

import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401
from hato.mailauth import MailDns, SpfResult, check_spf


def dns_for(server: DnsServer, timeout: float = 1.0) -> MailDns:
    return MailDns([server.nameserver], timeout=timeout)


def spf_record(server: DnsServer, domain: str, *strings: str) -> None:
    server.add(domain, "TXT", " ".join(f'"{s}"' for s in strings))


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("v=spf1 ip4:127.0.0.1 -all", "pass"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "fail"),
        ("v=spf1 ip4:192.0.2.0/24 ~all", "softfail"),
        ("v=spf1 ip4:192.0.2.0/24 ?all", "neutral"),
        ("v=spf1 a:host.example.test -all", "pass"),
        ("v=spf1 mx -all", "pass"),
        ("v=spf1 -ip4:127.0.0.0/8 +all", "fail"),
        ("v=spf1 ip4:127.0.0.1 moo -all", "permerror"),  # an unknown mechanism
    ],
)
def test_results(dns_server: DnsServer, record: str, expected: str) -> None:
    spf_record(dns_server, "example.test", record)
    dns_server.add("host.example.test", "A", "127.0.0.1")
    dns_server.add("example.test", "MX", "10 host.example.test")
    found = check_spf(dns_for(dns_server), "127.0.0.1", "bounce@example.test", "client.test")
    assert found.result == expected, found
    assert (found.identity, found.domain, found.sender) == (
        "mailfrom",
        "example.test",
        "bounce@example.test",
    )


def test_no_record_is_none(dns_server: DnsServer) -> None:
    dns_server.add("example.test", "TXT", '"some other text"')
    found = check_spf(dns_for(dns_server), "127.0.0.1", "a@example.test", "client.test")
    assert found.result == "none"
    assert check_spf(dns_for(dns_server), "127.0.0.1", "a@nowhere.test", "h.test").result == "none"


def test_ipv6_client(dns_server: DnsServer) -> None:
    spf_record(dns_server, "example.test", "v=spf1 ip6:2001:db8::/32 -all")
    dns = dns_for(dns_server)
    assert check_spf(dns, "2001:db8::25", "a@example.test", "h.test").result == "pass"
    assert check_spf(dns, "2001:db9::25", "a@example.test", "h.test").result == "fail"


def test_null_sender_checks_the_helo_identity(dns_server: DnsServer) -> None:
    # RFC 7208 2.4: for MAIL FROM:<> the identity is postmaster@ the HELO name.
    spf_record(dns_server, "mx.sender.test", "v=spf1 ip4:127.0.0.1 -all")
    spf_record(dns_server, "sender.test", "v=spf1 -all")
    found = check_spf(dns_for(dns_server), "127.0.0.1", "", "mx.sender.test")
    assert found == SpfResult(
        "pass", "helo", "mx.sender.test", "postmaster@mx.sender.test", found.explanation
    )
    failing = check_spf(dns_for(dns_server), "127.0.0.2", "", "mx.sender.test")
    assert (failing.result, failing.identity) == ("fail", "helo")


def test_null_sender_without_helo_is_none(dns_server: DnsServer) -> None:
    assert check_spf(dns_for(dns_server), "127.0.0.1", "", "").result == "none"


def test_include_of_itself_is_permerror(dns_server: DnsServer) -> None:
    spf_record(dns_server, "loop.test", "v=spf1 include:loop.test -all")
    found = check_spf(dns_for(dns_server), "127.0.0.1", "a@loop.test", "h.test")
    assert found.result == "permerror"
    assert found.explanation


def test_mutual_includes_are_permerror(dns_server: DnsServer) -> None:
    spf_record(dns_server, "a.test", "v=spf1 include:b.test -all")
    spf_record(dns_server, "b.test", "v=spf1 include:a.test -all")
    spf_record(dns_server, "c.test", "v=spf1 redirect=c.test")
    dns = dns_for(dns_server)
    assert check_spf(dns, "127.0.0.1", "x@a.test", "h.test").result == "permerror"
    assert check_spf(dns, "127.0.0.1", "x@c.test", "h.test").result == "permerror"


def test_more_than_ten_lookups_is_permerror(dns_server: DnsServer) -> None:
    for n in range(12):
        dns_server.add(f"h{n}.many.test", "A", "192.0.2.1")
    terms = " ".join(f"a:h{n}.many.test" for n in range(11))
    spf_record(dns_server, "many.test", f"v=spf1 {terms} ip4:127.0.0.1 -all")
    found = check_spf(dns_for(dns_server), "127.0.0.1", "x@many.test", "h.test")
    assert found.result == "permerror"
    assert "lookups" in found.explanation
    # Ten are allowed (RFC 7208 4.6.4).
    dns_server.remove("many.test", "TXT")
    terms = " ".join(f"a:h{n}.many.test" for n in range(10))
    spf_record(dns_server, "many.test", f"v=spf1 {terms} ip4:127.0.0.1 -all")
    assert check_spf(dns_for(dns_server), "127.0.0.1", "x@many.test", "h.test").result == "pass"


def test_more_than_two_void_lookups_is_permerror(dns_server: DnsServer) -> None:
    spf_record(dns_server, "void.test", "v=spf1 a:n1.void.test a:n2.void.test ip4:127.0.0.1 -all")
    spf_record(
        dns_server,
        "void3.test",
        "v=spf1 a:n1.void3.test a:n2.void3.test a:n3.void3.test ip4:127.0.0.1 -all",
    )
    dns = dns_for(dns_server)
    assert check_spf(dns, "127.0.0.1", "x@void.test", "h.test").result == "pass"
    found = check_spf(dns, "127.0.0.1", "x@void3.test", "h.test")
    assert found.result == "permerror"
    assert "Void lookup" in found.explanation


def test_huge_record_is_a_result(dns_server: DnsServer) -> None:
    # Some 6 KB of mechanisms in 255-byte strings, over TCP: evaluated to the end.
    terms = [f"ip4:192.0.{n // 250}.{n % 250}" for n in range(400)] + ["ip4:127.0.0.1", "-all"]
    text = "v=spf1 " + " ".join(terms)
    spf_record(dns_server, "big.test", *(text[i : i + 255] for i in range(0, len(text), 255)))
    found = check_spf(dns_for(dns_server), "127.0.0.1", "x@big.test", "h.test")
    assert found.result == "pass"
    assert any(q.tcp for q in dns_server.queries)
    # Huge and asking DNS at every term: the lookup limit ends it.
    dns_server.remove("big.test")
    text = "v=spf1 " + " ".join(f"include:i{n}.big.test" for n in range(300)) + " -all"
    spf_record(dns_server, "big.test", *(text[i : i + 255] for i in range(0, len(text), 255)))
    for n in range(300):
        spf_record(dns_server, f"i{n}.big.test", "v=spf1 ?all")
    assert check_spf(dns_for(dns_server), "127.0.0.1", "x@big.test", "h.test").result == (
        "permerror"
    )


def test_record_split_into_strings(dns_server: DnsServer) -> None:
    # RFC 7208 3.3: the strings of one TXT record are joined with nothing between them.
    filler = " ".join(f"ip4:198.51.100.{n}" for n in range(1, 26))
    text = f"v=spf1 {filler} ip4:127.0.0.1 -all"
    assert len(text) > 450
    pieces = [text[0:200], text[200:400], text[400:]]
    # Cut inside a mechanism, so only joining without a space gives the right record.
    assert not pieces[0].endswith(" ") and not pieces[1].startswith(" ")
    spf_record(dns_server, "split.test", *pieces)
    found = check_spf(dns_for(dns_server), "127.0.0.1", "x@split.test", "h.test")
    assert found.result == "pass", found


def test_servfail_is_temperror(dns_server: DnsServer) -> None:
    dns_server.servfail("broken.test")
    found = check_spf(dns_for(dns_server), "127.0.0.1", "x@broken.test", "h.test")
    assert found.result == "temperror"
    assert found.explanation


def test_servfail_in_an_include_is_temperror(dns_server: DnsServer) -> None:
    spf_record(dns_server, "outer.test", "v=spf1 include:inner.test -all")
    dns_server.servfail("inner.test")
    found = check_spf(dns_for(dns_server), "127.0.0.1", "x@outer.test", "h.test")
    assert found.result == "temperror"


def test_silence_is_temperror(dns_server: DnsServer) -> None:
    dns_server.silence("quiet.test")
    found = check_spf(
        dns_for(dns_server, timeout=0.3), "127.0.0.1", "x@quiet.test", "h.test", time_limit=5
    )
    assert found.result == "temperror"
    assert "in time" in found.explanation


def test_time_limit_for_the_whole_check(dns_server: DnsServer) -> None:
    spf_record(dns_server, "slow.test", "v=spf1 include:a.slow.test include:b.slow.test -all")
    dns_server.silence("a.slow.test")
    dns_server.silence("b.slow.test")
    # Each lookup may take 0.4 s; the check as a whole has 0.5 s: the second is not asked.
    found = check_spf(
        dns_for(dns_server, timeout=0.4), "127.0.0.1", "x@slow.test", "h.test", time_limit=0.5
    )
    assert found.result == "temperror"
    assert not any(q.name == "b.slow.test" for q in dns_server.queries)


def test_bad_input_is_a_result(dns_server: DnsServer) -> None:
    spf_record(dns_server, "example.test", "v=spf1 -all")
    dns = dns_for(dns_server)
    assert check_spf(dns, "not-an-ip", "x@example.test", "h.test").result == "permerror"
    # A macro naming a label longer than DNS allows, non-ASCII in a record: results.
    spf_record(dns_server, "macro.test", "v=spf1 exists:%{l}.%{l}.%{l}.macro.test -all")
    found = check_spf(dns, "127.0.0.1", ("x" * 60) + "@macro.test", "h.test")
    assert found.result in ("fail", "permerror")
    dns_server.add("utf8.test", "TXT", '"v=spf1 ip4:127.0.0.1 \\195\\169 -all"')
    assert check_spf(dns, "127.0.0.1", "x@utf8.test", "h.test").result == "permerror"


def test_concurrent_checks_ask_their_own_resolver() -> None:
    with DnsServer() as allowing, DnsServer() as refusing:
        spf_record(allowing, "both.test", "v=spf1 ip4:127.0.0.1 -all")
        spf_record(refusing, "both.test", "v=spf1 -all")
        results: dict[str, list[str]] = {"allowing": [], "refusing": []}

        def run(name: str, server: DnsServer) -> None:
            for _ in range(20):
                # A fresh resolver each time: no memo hides which server answered.
                found = check_spf(dns_for(server), "127.0.0.1", "x@both.test", "h.test")
                results[name].append(found.result)

        threads = [
            threading.Thread(target=run, args=("allowing", allowing)),
            threading.Thread(target=run, args=("refusing", refusing)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {"allowing": ["pass"] * 20, "refusing": ["fail"] * 20}


def test_per_message_view_asks_once(dns_server: DnsServer) -> None:
    spf_record(dns_server, "example.test", "v=spf1 ip4:127.0.0.1 -all")
    view = dns_for(dns_server).for_message()
    check_spf(view, "127.0.0.1", "a@example.test", "h.test")
    check_spf(view, "127.0.0.1", "b@example.test", "h.test")
    assert sum(q.name == "example.test" for q in dns_server.queries) == 1
