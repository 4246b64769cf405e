"""DnspythonResolver against a real DNS server on loopback: answers and classified failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.config import load_settings
from hato.routing import (
    DNS_TEMPORARY,
    NO_ROUTE,
    NO_SUCH_DOMAIN,
    DnsError,
    DnspythonResolver,
    DnsTemporaryFailure,
    MxRecord,
    NoRecords,
    NoSuchDomain,
)

T = TypeVar("T")

# Short, so the tests of a silent server do not wait long; ample for loopback answers.
SHORT_TIMEOUT = 0.5


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def resolver(server: DnsServer, timeout: float = 5.0) -> DnspythonResolver:
    return DnspythonResolver([server.nameserver], timeout=timeout)


def failure(coroutine: Coroutine[Any, Any, object]) -> DnsError:
    with pytest.raises(DnsError) as caught:
        run(coroutine)
    return caught.value


# -- answers ----------------------------------------------------------------------------


def test_mx_records_come_with_preference_and_a_normalized_exchange(dns_server: DnsServer) -> None:
    dns_server.add("example.test", "MX", "10 MX1.Example.TEST.")
    dns_server.add("example.test", "MX", "20 mx2.example.test")

    records = run(resolver(dns_server).mx("example.test"))

    assert sorted(records, key=lambda r: r.preference) == [
        MxRecord(10, "mx1.example.test"),
        MxRecord(20, "mx2.example.test"),
    ]


def test_a_null_mx_reads_as_the_root(dns_server: DnsServer) -> None:
    dns_server.add("nomail.test", "MX", "0 .")

    assert run(resolver(dns_server).mx("nomail.test")) == [MxRecord(0, ".")]


def test_addresses_are_ipv4_then_ipv6_each_once(dns_server: DnsServer) -> None:
    dns_server.add("mx.example.test", "A", "127.0.0.3")
    dns_server.add("mx.example.test", "A", "127.0.0.2")
    dns_server.add("mx.example.test", "AAAA", "::1")

    addresses = run(resolver(dns_server).addresses("mx.example.test"))

    assert sorted(addresses[:2]) == ["127.0.0.2", "127.0.0.3"]
    assert addresses[2:] == ["::1"]


def test_a_host_with_only_ipv6_resolves(dns_server: DnsServer) -> None:
    dns_server.add("v6.example.test", "AAAA", "::1")

    assert run(resolver(dns_server).addresses("v6.example.test")) == ["::1"]


def test_a_unicode_name_is_asked_as_its_a_label(dns_server: DnsServer) -> None:
    dns_server.add("xn--bcher-kva.test", "MX", "10 mx.xn--bcher-kva.test")

    records = run(resolver(dns_server).mx("bücher.test"))

    assert records == [MxRecord(10, "mx.xn--bcher-kva.test")]
    assert dns_server.queries[-1].name == "xn--bcher-kva.test"


def test_a_large_answer_is_fetched_again_over_tcp(dns_server: DnsServer) -> None:
    many = [f"127.0.1.{n}" for n in range(60)]  # 60 A records: far over 512 bytes
    for address in many:
        dns_server.add("big.example.test", "A", address)

    addresses = run(resolver(dns_server).addresses("big.example.test"))

    assert sorted(addresses) == sorted(many)
    asked = [(q.rtype, q.tcp) for q in dns_server.queries if q.name == "big.example.test"]
    assert ("A", False) in asked and ("A", True) in asked


def test_a_name_server_on_a_port_other_than_53(dns_server: DnsServer) -> None:
    dns_server.add("example.test", "MX", "5 mx.example.test")

    assert dns_server.port != 53
    assert run(resolver(dns_server).mx("example.test")) == [MxRecord(5, "mx.example.test")]


def test_an_ipv6_name_server() -> None:
    try:
        server = DnsServer(host="::1")
        server.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        server.add("example.test", "MX", "5 mx.example.test")
        assert server.address == f"[::1]:{server.port}"
        # As the file says it: the loader parses "[::1]:port", the resolver takes the value.
        loaded = load_settings(overrides={"dns.nameservers": [server.address]}).dns
        resolver = DnspythonResolver(loaded.nameservers)

        assert run(resolver.mx("example.test")) == [MxRecord(5, "mx.example.test")]
    finally:
        server.stop()


def test_no_search_domain_is_appended(dns_server: DnsServer) -> None:
    failure(resolver(dns_server).mx("example"))

    assert [q.name for q in dns_server.queries] == ["example"]


# -- permanent failures -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["mx", "addresses"])
def test_nxdomain_is_permanent_5_1_2(dns_server: DnsServer, method: str) -> None:
    dns_server.add("other.test", "A", "127.0.0.2")

    error = failure(getattr(resolver(dns_server), method)("missing.test"))

    assert isinstance(error, NoSuchDomain)
    assert (error.status, error.transient) == (NO_SUCH_DOMAIN, False)
    assert "missing.test" in error.detail


def test_a_name_without_mx_records_is_no_records(dns_server: DnsServer) -> None:
    dns_server.add("host.example.test", "A", "127.0.0.2")

    error = failure(resolver(dns_server).mx("host.example.test"))

    assert isinstance(error, NoRecords)
    assert (error.status, error.transient) == (NO_ROUTE, False)


def test_a_name_with_only_mx_records_has_no_addresses(dns_server: DnsServer) -> None:
    dns_server.add("example.test", "MX", "10 mx.example.test")

    error = failure(resolver(dns_server).addresses("example.test"))

    assert isinstance(error, NoRecords)
    assert "no A or AAAA" in error.detail


def test_a_name_with_records_only_below_it_exists(dns_server: DnsServer) -> None:
    dns_server.add("mx.parent.test", "A", "127.0.0.2")

    assert isinstance(failure(resolver(dns_server).mx("parent.test")), NoRecords)


def test_a_malformed_name_is_no_such_domain(dns_server: DnsServer) -> None:
    error = failure(resolver(dns_server).mx("a..b.test"))

    assert isinstance(error, NoSuchDomain)
    assert dns_server.queries == []


# -- transient failures -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["mx", "addresses"])
def test_servfail_is_transient_4_4_3(dns_server: DnsServer, method: str) -> None:
    dns_server.add("broken.test", "MX", "10 mx.broken.test")
    dns_server.add("broken.test", "A", "127.0.0.2")
    dns_server.servfail("broken.test")

    error = failure(getattr(resolver(dns_server), method)("broken.test"))

    assert isinstance(error, DnsTemporaryFailure)
    assert (error.status, error.transient) == (DNS_TEMPORARY, True)
    assert "SERVFAIL" in error.detail


def test_refused_is_transient(dns_server: DnsServer) -> None:
    dns_server.refuse("example.test")

    error = failure(resolver(dns_server).mx("example.test"))

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)
    assert "REFUSED" in error.detail


def test_a_name_outside_the_servers_zones_is_refused() -> None:
    with DnsServer(zones=["test."]) as server:
        error = failure(resolver(server).mx("example.org"))

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)


@pytest.mark.parametrize("method", ["mx", "addresses"])
def test_no_answer_in_time_is_transient(dns_server: DnsServer, method: str) -> None:
    dns_server.add("slow.test", "MX", "10 mx.slow.test")
    dns_server.add("slow.test", "A", "127.0.0.2")
    dns_server.silence("slow.test")

    error = failure(getattr(resolver(dns_server, SHORT_TIMEOUT), method)("slow.test"))

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)
    assert "no answer in time" in error.detail


def test_a_failing_aaaa_lookup_does_not_hide_the_a_records(dns_server: DnsServer) -> None:
    dns_server.add("mx.example.test", "A", "127.0.0.2")
    dns_server.servfail("mx.example.test", "AAAA")

    assert run(resolver(dns_server).addresses("mx.example.test")) == ["127.0.0.2"]


def test_a_failing_lookup_without_any_address_is_transient(dns_server: DnsServer) -> None:
    dns_server.add("mx.example.test", "MX", "10 other.test")  # the name exists, no A
    dns_server.servfail("mx.example.test", "AAAA")

    error = failure(resolver(dns_server).addresses("mx.example.test"))

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)


def test_a_healed_name_answers_again(dns_server: DnsServer) -> None:
    dns_server.add("example.test", "MX", "10 mx.example.test")
    dns_server.servfail("example.test")
    failure(resolver(dns_server).mx("example.test"))

    dns_server.heal("example.test")

    assert run(resolver(dns_server).mx("example.test")) == [MxRecord(10, "mx.example.test")]


# -- name servers -----------------------------------------------------------------------


def test_the_resolver_asks_only_the_name_servers_given(dns_server: DnsServer) -> None:
    # A second server that knows the name but is not configured must not be asked.
    with DnsServer() as other:
        other.add("example.test", "MX", "10 mx.example.test")
        dns_server.add("example.test", "MX", "20 mx.example.test")

        assert run(resolver(dns_server).mx("example.test")) == [MxRecord(20, "mx.example.test")]
        assert other.queries == []


def test_the_server_listens_on_loopback_only(dns_server: DnsServer) -> None:
    assert dns_server.address == f"127.0.0.1:{dns_server.port}"
    with socket.create_connection(("127.0.0.1", dns_server.port), timeout=5):
        pass  # TCP is there too, on the same port
