"""MX selection (RFC 5321 5.1, RFC 7505) against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import random

import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.routing import (
    DNS_TEMPORARY,
    MAIL_LOOP,
    MAX_EXCHANGERS,
    NO_ROUTE,
    NO_SUCH_DOMAIN,
    NULL_MX,
    DnspythonResolver,
    Exchanger,
    IsLocalHost,
    NoSuchDomain,
    RouteError,
    local_host_matcher,
    mail_exchangers,
)

DOMAIN = "example.test"
# This host, as the loop tests see it: its name and the address it listens on.
SELF = local_host_matcher(["mx.hato.test"], ["127.0.0.99"])


def exchangers(
    server: DnsServer,
    domain: str = DOMAIN,
    *,
    seed: int = 0,
    is_local_host: IsLocalHost | None = None,
    timeout: float = 5.0,
) -> list[Exchanger]:
    resolver = DnspythonResolver([server.nameserver], timeout=timeout)
    found = mail_exchangers(domain, resolver, random.Random(seed), is_local_host=is_local_host)
    return asyncio.run(found)


def refusal(server: DnsServer, domain: str = DOMAIN, **options: object) -> RouteError:
    with pytest.raises(RouteError) as caught:
        exchangers(server, domain, **options)  # type: ignore[arg-type]
    return caught.value


def add_mx(server: DnsServer, preference: int, host: str, *addresses: str) -> None:
    server.add(DOMAIN, "MX", f"{preference} {host}")
    for address in addresses:
        server.add(host, "AAAA" if ":" in address else "A", address)


def hosts(found: list[Exchanger]) -> list[str]:
    return [exchanger.host for exchanger in found]


# -- ordering ---------------------------------------------------------------------------


def test_exchangers_come_best_preference_first(dns_server: DnsServer) -> None:
    add_mx(dns_server, 20, "b.example.test", "127.0.0.3")
    add_mx(dns_server, 10, "a.example.test", "127.0.0.2")
    add_mx(dns_server, 30, "c.example.test", "127.0.0.4")

    assert exchangers(dns_server) == [
        Exchanger("a.example.test", 10, ["127.0.0.2"]),
        Exchanger("b.example.test", 20, ["127.0.0.3"]),
        Exchanger("c.example.test", 30, ["127.0.0.4"]),
    ]


def test_equal_preferences_are_shuffled_by_the_rng(dns_server: DnsServer) -> None:
    equals = [f"mx{n}.example.test" for n in range(4)]
    for n, host in enumerate(equals):
        add_mx(dns_server, 10, host, f"127.0.0.{n + 2}")
    add_mx(dns_server, 20, "backup.example.test", "127.0.0.9")

    orders = [hosts(exchangers(dns_server, seed=seed)) for seed in range(8)]

    for order in orders:
        assert sorted(order[:4]) == equals
        assert order[4] == "backup.example.test"
    assert len({order[0] for order in orders}) > 1, "the first choice never changes"
    assert hosts(exchangers(dns_server, seed=3)) == orders[3], "a seeded rng is repeatable"


def test_the_order_the_server_lists_them_in_does_not_matter(dns_server: DnsServer) -> None:
    names = [f"mx{n}.example.test" for n in range(4)]
    for server_domain, listed in (("one.test", names), ("two.test", names[::-1])):
        for n, host in enumerate(listed):
            dns_server.add(server_domain, "MX", f"10 {host}")
            dns_server.add(host, "A", f"127.0.0.{n + 2}")

    for seed in range(4):
        assert hosts(exchangers(dns_server, "one.test", seed=seed)) == hosts(
            exchangers(dns_server, "two.test", seed=seed)
        )


def test_a_host_listed_twice_is_kept_once_at_its_best_preference(dns_server: DnsServer) -> None:
    add_mx(dns_server, 30, "a.example.test", "127.0.0.2")
    add_mx(dns_server, 10, "a.example.test")
    add_mx(dns_server, 20, "b.example.test", "127.0.0.3")

    found = exchangers(dns_server)

    assert [(e.host, e.preference) for e in found] == [
        ("a.example.test", 10),
        ("b.example.test", 20),
    ]


def test_each_exchanger_has_all_its_addresses(dns_server: DnsServer) -> None:
    add_mx(dns_server, 10, "mx.example.test", "127.0.0.2", "127.0.0.3", "::1")

    [found] = exchangers(dns_server)

    assert sorted(found.addresses[:2]) == ["127.0.0.2", "127.0.0.3"]
    assert found.addresses[2:] == ["::1"]


def test_at_most_max_exchangers_are_looked_up(dns_server: DnsServer) -> None:
    for n in range(MAX_EXCHANGERS + 3):
        add_mx(dns_server, n, f"mx{n}.example.test", f"127.0.0.{n + 2}")

    found = exchangers(dns_server)

    assert hosts(found) == [f"mx{n}.example.test" for n in range(MAX_EXCHANGERS)]
    asked = {q.name for q in dns_server.queries if q.rtype == "A"}
    assert f"mx{MAX_EXCHANGERS}.example.test" not in asked


# -- implicit and null MX ---------------------------------------------------------------


def test_without_mx_records_the_domain_itself_is_the_exchanger(dns_server: DnsServer) -> None:
    dns_server.add(DOMAIN, "A", "127.0.0.2")
    dns_server.add(DOMAIN, "AAAA", "::1")

    assert exchangers(dns_server) == [Exchanger(DOMAIN, 0, ["127.0.0.2", "::1"])]


def test_neither_mx_nor_address_records_is_permanent(dns_server: DnsServer) -> None:
    dns_server.add(DOMAIN, "TXT", '"v=spf1 -all"')

    error = refusal(dns_server)

    assert (error.status, error.transient) == (NO_ROUTE, False)
    assert "no MX, A or AAAA" in error.detail


def test_mx_records_forbid_the_implicit_mx(dns_server: DnsServer) -> None:
    # RFC 5321 5.1: with MX records, the domain's own A records are not used.
    dns_server.add(DOMAIN, "A", "127.0.0.2")
    add_mx(dns_server, 10, "mx.example.test", "127.0.0.3")

    assert hosts(exchangers(dns_server)) == ["mx.example.test"]


def test_a_null_mx_is_permanent_5_1_10(dns_server: DnsServer) -> None:
    dns_server.add(DOMAIN, "MX", "0 .")
    dns_server.add(DOMAIN, "A", "127.0.0.2")  # RFC 7505: the A record must not be used

    error = refusal(dns_server)

    assert (error.status, error.transient) == (NULL_MX, False)
    assert "null MX" in error.detail


def test_a_null_mx_among_real_exchangers_is_ignored(dns_server: DnsServer) -> None:
    dns_server.add(DOMAIN, "MX", "0 .")
    add_mx(dns_server, 10, "mx.example.test", "127.0.0.2")

    assert hosts(exchangers(dns_server)) == ["mx.example.test"]


# -- the domain's own lookups fail ------------------------------------------------------


def test_nxdomain_is_permanent_5_1_2(dns_server: DnsServer) -> None:
    dns_server.add("other.test", "A", "127.0.0.2")

    error = refusal(dns_server, "missing.test")

    assert isinstance(error, NoSuchDomain)
    assert (error.status, error.transient) == (NO_SUCH_DOMAIN, False)


@pytest.mark.parametrize("rtype", ["MX", "A"])
def test_servfail_for_the_domain_is_transient(dns_server: DnsServer, rtype: str) -> None:
    # MX: the MX lookup fails; A: no MX, and the implicit MX lookup fails.
    dns_server.add(DOMAIN, "TXT", '"exists"')
    dns_server.servfail(DOMAIN, rtype)

    error = refusal(dns_server)

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)


def test_no_answer_in_time_for_the_domain_is_transient(dns_server: DnsServer) -> None:
    add_mx(dns_server, 10, "mx.example.test", "127.0.0.2")
    dns_server.silence(DOMAIN)

    error = refusal(dns_server, timeout=0.5)

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)


# -- exchangers without addresses -------------------------------------------------------


def test_an_exchanger_without_an_address_is_skipped(dns_server: DnsServer) -> None:
    add_mx(dns_server, 10, "gone.example.test")  # NXDOMAIN
    add_mx(dns_server, 20, "noaddr.example.test")
    dns_server.add("noaddr.example.test", "TXT", '"exists, no address"')
    add_mx(dns_server, 30, "mx.example.test", "127.0.0.2")

    assert exchangers(dns_server) == [Exchanger("mx.example.test", 30, ["127.0.0.2"])]


def test_no_exchanger_with_an_address_is_permanent(dns_server: DnsServer) -> None:
    add_mx(dns_server, 10, "gone.example.test")
    add_mx(dns_server, 20, "noaddr.example.test")
    dns_server.add("noaddr.example.test", "TXT", '"exists, no address"')

    error = refusal(dns_server)

    assert (error.status, error.transient) == (NO_ROUTE, False)
    assert "gone.example.test" in error.detail and "noaddr.example.test" in error.detail


def test_no_address_yet_because_a_lookup_failed_is_transient(dns_server: DnsServer) -> None:
    add_mx(dns_server, 10, "gone.example.test")
    add_mx(dns_server, 20, "flaky.example.test", "127.0.0.2")
    dns_server.servfail("flaky.example.test")

    error = refusal(dns_server)

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)
    assert "no address for any MX host" in error.detail


# -- loops back to this host ------------------------------------------------------------


def test_this_host_as_the_best_exchanger_is_a_loop(dns_server: DnsServer) -> None:
    add_mx(dns_server, 10, "MX.hato.test.", "127.0.0.99")
    add_mx(dns_server, 20, "backup.example.test", "127.0.0.2")

    error = refusal(dns_server, is_local_host=SELF)

    assert (error.status, error.transient) == (MAIL_LOOP, False)
    assert error.detail == f"mail for {DOMAIN} loops back to myself"


def test_this_host_as_backup_keeps_only_the_better_exchangers(dns_server: DnsServer) -> None:
    add_mx(dns_server, 10, "primary.example.test", "127.0.0.2")
    add_mx(dns_server, 20, "mx.hato.test", "127.0.0.99")
    add_mx(dns_server, 20, "peer.example.test", "127.0.0.3")  # same preference: dropped too
    add_mx(dns_server, 30, "last.example.test", "127.0.0.4")

    assert hosts(exchangers(dns_server, is_local_host=SELF)) == ["primary.example.test"]


def test_this_host_is_recognized_by_its_address(dns_server: DnsServer) -> None:
    add_mx(dns_server, 10, "primary.example.test", "127.0.0.2")
    add_mx(dns_server, 20, "alias-of-me.example.test", "127.0.0.99")
    add_mx(dns_server, 30, "last.example.test", "127.0.0.4")

    assert hosts(exchangers(dns_server, is_local_host=SELF)) == ["primary.example.test"]
    assert hosts(exchangers(dns_server)) == [
        "primary.example.test",
        "alias-of-me.example.test",
        "last.example.test",
    ]


def test_an_implicit_mx_pointing_here_is_a_loop(dns_server: DnsServer) -> None:
    dns_server.add(DOMAIN, "A", "127.0.0.99")

    error = refusal(dns_server, is_local_host=SELF)

    assert (error.status, error.transient) == (MAIL_LOOP, False)


def test_a_better_exchanger_failing_for_now_is_no_loop(dns_server: DnsServer) -> None:
    # The better host may resolve later: wait for it rather than bounce.
    add_mx(dns_server, 10, "flaky.example.test", "127.0.0.2")
    add_mx(dns_server, 20, "mx.hato.test", "127.0.0.99")
    dns_server.servfail("flaky.example.test")

    error = refusal(dns_server, is_local_host=SELF)

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("mx.hato.test", True),
        ("MX.Hato.Test.", True),
        ("127.0.0.99", True),
        ("other.hato.test", False),
        ("127.0.0.9", False),
        ("::1", False),
    ],
)
def test_local_host_matcher(candidate: str, expected: bool) -> None:
    assert SELF(candidate) is expected


def test_local_host_matcher_compares_addresses_by_value() -> None:
    is_local = local_host_matcher([], ["::1"])

    assert is_local("0:0:0:0:0:0:0:1")
    assert not is_local("127.0.0.1")
