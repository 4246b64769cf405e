"""Forward-confirmed reverse DNS for the Received header, against a real DNS server."""

from __future__ import annotations

import asyncio

from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.routing import DnspythonResolver, confirmed_name


def lookup(dns_server: DnsServer, ip: str) -> str | None:
    resolver = DnspythonResolver([dns_server.nameserver], timeout=2.0)
    return asyncio.run(confirmed_name(resolver, ip))


# Documentation addresses (RFC 5737): only their reverse zone is asked for, and only of the
# test's own name server on loopback; nothing is ever sent to these addresses.
def test_confirmed_name(dns_server: DnsServer) -> None:
    dns_server.add("5.2.0.192.in-addr.arpa", "PTR", "client.example.test.")
    dns_server.add("client.example.test", "A", "192.0.2.5")
    assert lookup(dns_server, "192.0.2.5") == "client.example.test"


def test_unconfirmed_name_is_not_trusted(dns_server: DnsServer) -> None:
    # The PTR claims a name that does not lead back to the address: anyone can write a PTR.
    dns_server.add("6.2.0.192.in-addr.arpa", "PTR", "bank.example.test.")
    dns_server.add("bank.example.test", "A", "192.0.2.99")
    assert lookup(dns_server, "192.0.2.6") is None


def test_no_ptr_and_server_failure_are_unknown(dns_server: DnsServer) -> None:
    assert lookup(dns_server, "192.0.2.7") is None
    dns_server.servfail("8.2.0.192.in-addr.arpa")
    assert lookup(dns_server, "192.0.2.8") is None


def test_loopback_is_localhost_without_asking(dns_server: DnsServer) -> None:
    dns_server.add("9.0.0.127.in-addr.arpa", "PTR", "elsewhere.example.test.")
    assert lookup(dns_server, "127.0.0.9") == "localhost"
    assert dns_server.queries == []
