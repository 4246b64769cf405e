"""Next-hop routing: transport table, smarthost, address literals and MX, with TLS policy."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.config import HostPort, RelaySettings, TlsPolicy, TlsPolicyEntry, Transport, load_settings
from hato.routing import (
    DNS_TEMPORARY,
    MAIL_LOOP,
    NO_SUCH_DOMAIN,
    NULL_MX,
    DnspythonResolver,
    Hop,
    Hops,
    IsLocalHost,
    LocalRoute,
    NextHopRouter,
    Route,
    RouteError,
    local_host_matcher,
)

DOMAIN = "example.test"
MX_PORT = 2525  # relay.port: where MX hosts listen (25 on the internet)


@pytest.fixture
def zone(dns_server: DnsServer) -> DnsServer:
    """example.test with one MX host, and a few hosts a configuration may name."""
    dns_server.add(DOMAIN, "MX", "10 mx.example.test")
    dns_server.add("mx.example.test", "A", "127.0.0.2")
    dns_server.add("sub.example.test", "A", "127.0.0.3")
    dns_server.add("relay.test", "A", "127.0.0.4")
    dns_server.add("relay.test", "AAAA", "::1")
    dns_server.add("relay.test", "MX", "10 mx.elsewhere.test")  # never to be followed
    dns_server.add("inside.test", "A", "127.0.0.5")
    return dns_server


def relay_settings(**relay: object) -> RelaySettings:
    """``[relay]`` as a file would say it (``transports=["example.test relay.test"]``),
    parsed by the configuration: the router takes the values it makes."""
    relay.setdefault("port", MX_PORT)
    overrides = {f"relay.{key}": value for key, value in relay.items()}
    return load_settings(overrides={"server.hostname": "mx.here.test", **overrides}).relay


def router(
    server: DnsServer, *, is_local_host: IsLocalHost | None = None, **relay: object
) -> NextHopRouter:
    resolver = DnspythonResolver([server.nameserver], timeout=5.0)
    return NextHopRouter.from_settings(
        relay_settings(**relay), resolver, rng=random.Random(0), is_local_host=is_local_host
    )


def route(server: DnsServer, domain: str = DOMAIN, **options: Any) -> Route:
    return asyncio.run(router(server, **options).route(domain))


def refusal(server: DnsServer, domain: str = DOMAIN, **options: Any) -> RouteError:
    with pytest.raises(RouteError) as caught:
        route(server, domain, **options)
    return caught.value


# -- MX ---------------------------------------------------------------------------------


def test_without_configuration_mail_goes_to_the_mx_hosts(zone: DnsServer) -> None:
    assert route(zone) == Hops(
        [Hop("mx.example.test", MX_PORT, ["127.0.0.2"], TlsPolicy.MAY, "mx.example.test")],
        "mx",
    )


def test_the_domain_is_matched_without_case_or_final_dot(zone: DnsServer) -> None:
    found = route(zone, "Example.TEST.", transports=["example.test [127.0.0.7]:26"])

    assert isinstance(found, Hops) and found.via == "transport"


def test_mx_failures_reach_the_caller_classified(zone: DnsServer) -> None:
    zone.add("nomail.test", "MX", "0 .")
    zone.servfail("broken.test")

    missing, null, broken = (refusal(zone, d) for d in ("gone.test", "nomail.test", "broken.test"))

    assert (missing.status, missing.transient) == (NO_SUCH_DOMAIN, False)
    assert (null.status, null.transient) == (NULL_MX, False)
    assert (broken.status, broken.transient) == (DNS_TEMPORARY, True)


def test_mx_hosts_that_are_this_host_are_a_loop(zone: DnsServer) -> None:
    is_local_host = local_host_matcher(["mx.example.test"], [])

    error = refusal(zone, is_local_host=is_local_host)

    assert (error.status, error.transient) == (MAIL_LOOP, False)


def test_a_malformed_domain_is_permanent(zone: DnsServer) -> None:
    error = refusal(zone, "bad_domain!.test")

    assert (error.status, error.transient) == (NO_SUCH_DOMAIN, False)
    assert zone.queries == []


# -- TLS policy -------------------------------------------------------------------------


def test_the_tls_policy_of_the_domain_applies_to_its_hosts(zone: DnsServer) -> None:
    policies = ["example.test verify", "other.test none"]

    found = route(zone, tls_policy=policies)

    assert isinstance(found, Hops)
    assert [hop.tls_policy for hop in found.hosts] == [TlsPolicy.VERIFY]
    assert router(zone, tls_policy=policies).tls_policy_for("OTHER.test") is TlsPolicy.NONE
    assert router(zone, tls_policy=policies).tls_policy_for("unlisted.test") is TlsPolicy.MAY


def test_a_transport_uses_the_domains_tls_policy(zone: DnsServer) -> None:
    found = route(zone, transports=["example.test relay.test"], tls_policy=["example.test encrypt"])

    assert isinstance(found, Hops)
    assert found.hosts[0].tls_policy is TlsPolicy.ENCRYPT


def test_the_smarthost_uses_its_own_tls_policy(zone: DnsServer) -> None:
    found = route(
        zone, smarthost="relay.test:587", smarthost_tls="verify", tls_policy=["example.test none"]
    )

    assert isinstance(found, Hops)
    assert found.hosts[0].tls_policy is TlsPolicy.VERIFY


# -- transports -------------------------------------------------------------------------


def test_a_transport_to_an_address_is_used_as_is(zone: DnsServer) -> None:
    found = route(zone, transports=["example.test [127.0.0.7]:2626"])

    assert found == Hops(
        [Hop("127.0.0.7", 2626, ["127.0.0.7"], TlsPolicy.MAY, "127.0.0.7")], "transport"
    )
    assert zone.queries == [], "no DNS lookup for a next hop given as an address"


@pytest.mark.parametrize(
    ("next_hop", "host", "port"),
    [("127.0.0.7", "127.0.0.7", 25), ("[::1]:2626", "::1", 2626), ("[::1]", "::1", 25)],
)
def test_transport_addresses_in_every_form(
    zone: DnsServer, next_hop: str, host: str, port: int
) -> None:
    found = route(zone, transports=[f"example.test {next_hop}"])

    assert isinstance(found, Hops)
    assert [(hop.host, hop.port, hop.addresses) for hop in found.hosts] == [(host, port, [host])]


def test_a_transport_host_name_is_resolved_without_mx(zone: DnsServer) -> None:
    found = route(zone, transports=["example.test relay.test:2626"])

    assert found == Hops(
        [Hop("relay.test", 2626, ["127.0.0.4", "::1"], TlsPolicy.MAY, "relay.test")], "transport"
    )
    asked = {(q.name, q.rtype) for q in zone.queries}
    assert asked == {("relay.test", "A"), ("relay.test", "AAAA")}


def test_a_transport_to_local_delivers_here(zone: DnsServer) -> None:
    assert route(zone, transports=["example.test local"]) == LocalRoute()
    assert zone.queries == []


def test_a_transport_matches_its_domain_exactly(zone: DnsServer) -> None:
    found = route(zone, "sub.example.test", transports=["example.test [127.0.0.7]:2626"])

    assert isinstance(found, Hops)
    assert (found.via, found.hosts[0].host) == ("mx", "sub.example.test")  # implicit MX


def test_a_transport_beats_the_smarthost(zone: DnsServer) -> None:
    options: dict[str, object] = {
        "transports": ["example.test inside.test:2626"],
        "smarthost": "relay.test:587",
    }

    here, there = route(zone, DOMAIN, **options), route(zone, "other.test", **options)

    assert isinstance(here, Hops) and isinstance(there, Hops)
    assert (here.via, here.hosts[0].host, here.hosts[0].port) == ("transport", "inside.test", 2626)
    assert (there.via, there.hosts[0].host, there.hosts[0].port) == ("smarthost", "relay.test", 587)


def test_a_transport_host_that_does_not_resolve_is_transient(zone: DnsServer) -> None:
    # Our own configuration is wrong: wait for the operator, do not bounce.
    error = refusal(zone, transports=["example.test typo.test:2626"])

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)
    assert "typo.test" in error.detail


# -- smarthost --------------------------------------------------------------------------


def test_the_smarthost_beats_mx(zone: DnsServer) -> None:
    found = route(zone, smarthost="relay.test:587")

    assert found == Hops(
        [Hop("relay.test", 587, ["127.0.0.4", "::1"], TlsPolicy.MAY, "relay.test")], "smarthost"
    )
    assert all(q.rtype != "MX" for q in zone.queries)


def test_a_smarthost_without_a_port_gets_25(zone: DnsServer) -> None:
    found = route(zone, smarthost="[127.0.0.4]")

    assert isinstance(found, Hops)
    assert (found.hosts[0].port, found.hosts[0].addresses) == (25, ["127.0.0.4"])


def test_a_smarthost_that_does_not_resolve_is_transient(zone: DnsServer) -> None:
    zone.servfail("relay.test")

    error = refusal(zone, smarthost="relay.test:587")

    assert (error.status, error.transient) == (DNS_TEMPORARY, True)


def test_a_smarthost_on_this_host_is_no_loop(zone: DnsServer) -> None:
    # A content filter listening here on another port is a legitimate next hop.
    is_local_host = local_host_matcher([], ["127.0.0.1"])

    found = route(zone, smarthost="127.0.0.1:10025", is_local_host=is_local_host)

    assert isinstance(found, Hops) and found.hosts[0].addresses == ["127.0.0.1"]


# -- address literals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "address"), [("[127.0.0.8]", "127.0.0.8"), ("[IPv6:::1]", "::1")]
)
def test_an_address_literal_is_its_own_next_hop(
    zone: DnsServer, literal: str, address: str
) -> None:
    found = route(zone, literal)

    assert found == Hops([Hop(address, MX_PORT, [address], TlsPolicy.MAY, address)], "literal")
    assert zone.queries == []


@pytest.mark.parametrize("literal", ["[mx.example.test]", "[::1]", "[IPv6:127.0.0.1]", "[1.2.3]"])
def test_a_malformed_address_literal_is_permanent(zone: DnsServer, literal: str) -> None:
    error = refusal(zone, literal)

    assert (error.status, error.transient) == (NO_SUCH_DOMAIN, False)


def test_an_address_literal_of_this_host_is_a_loop(zone: DnsServer) -> None:
    error = refusal(zone, "[127.0.0.8]", is_local_host=local_host_matcher([], ["127.0.0.8"]))

    assert (error.status, error.transient) == (MAIL_LOOP, False)


def test_the_smarthost_beats_an_address_literal(zone: DnsServer) -> None:
    found = route(zone, "[127.0.0.8]", smarthost="relay.test:587")

    assert isinstance(found, Hops) and found.via == "smarthost"


# -- construction -----------------------------------------------------------------------


def test_built_from_relay_settings(zone: DnsServer) -> None:
    settings = RelaySettings(
        transports=(Transport(DOMAIN, HostPort("127.0.0.7", 2626)),),
        tls_policy=(TlsPolicyEntry("other.test", TlsPolicy.ENCRYPT),),
        smarthost=HostPort("relay.test", 587),
        smarthost_tls=TlsPolicy.NONE,
        port=MX_PORT,
    )
    made = NextHopRouter.from_settings(settings, DnspythonResolver([zone.nameserver]))

    here, there = asyncio.run(made.route(DOMAIN)), asyncio.run(made.route("other.test"))

    assert isinstance(here, Hops) and isinstance(there, Hops)
    assert (here.via, here.hosts[0].port) == ("transport", 2626)
    assert (there.via, there.hosts[0].tls_policy) == ("smarthost", TlsPolicy.NONE)
    assert made.tls_policy_for("other.test") is TlsPolicy.ENCRYPT
