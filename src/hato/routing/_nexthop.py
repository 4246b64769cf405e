"""Next hops: where mail for a remote domain goes, and what TLS it insists on there.

What ``NextHopRouter.route(domain)`` promises:

- The first rule that applies decides: a transport entry for exactly this domain (no parent
  or wildcard matching: ``sub.example.com`` needs its own entry); else the smarthost; else,
  for an address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``), that address; else the
  domain's MX hosts (``mail_exchangers``: implicit MX, null MX, loop protection).
- A transport entry ``local`` gives ``LocalRoute``: deliver here.
- A configured next hop (transport or smarthost) is a ``HostPort`` the configuration parsed
  (``[ip]:port``, ``ip``, ``host:port`` or ``host``; port 25 when it names none). A host
  name there is resolved with A/AAAA only, never MX, as Postfix treats ``[host]``: the
  operator named a machine precisely to bypass MX routing. If it does not resolve, the
  route fails transiently (``4.4.3``) whatever DNS said, NXDOMAIN included: the fault is in
  our own configuration, and senders should not get bounces for an operator's typo while
  the queue lifetime still bounds the wait.
- Configured next hops are trusted not to loop: pointing the smarthost at this host's own
  address on another port (a content filter) is legitimate. MX and literal routes are
  checked against ``is_local_host`` (``5.4.6``).
- TLS: towards the smarthost, ``smarthost_tls`` (the session is with the smarthost, not
  with the domain); otherwise the ``tls_policy`` entry for the recipient domain, ``may``
  when there is none. ``server_name`` is the name a certificate is checked against and sent
  as SNI: the MX host or the configured host name, or the IP when only an IP is known.
- Every failure is a ``RouteError`` (a ``DnsError`` when DNS said it), classified here.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from hato.accounts import InvalidInput, normalize_domain
from hato.config import HostPort, RelaySettings, TlsPolicy, TlsPolicyEntry, Transport
from hato.routing._dns import (
    NO_SUCH_DOMAIN,
    DnsError,
    DnsTemporaryFailure,
    Resolver,
    RouteError,
)
from hato.routing._mx import IsLocalHost, loop_error, mail_exchangers

__all__ = [
    "SMTP_PORT",
    "Hop",
    "Hops",
    "LocalRoute",
    "NextHopRouter",
    "Route",
    "Via",
]

SMTP_PORT = 25  # RFC 5321 4.5.4: the port a configured next hop gets when it names none

Via: TypeAlias = Literal["mx", "transport", "smarthost", "literal"]


@dataclass(frozen=True, slots=True)
class LocalRoute:
    """Deliver here: a transport entry says the domain is ours to keep."""

    transport: Literal["local"] = "local"


@dataclass(frozen=True, slots=True)
class Hop:
    """One host to try: connect to one of ``addresses`` on ``port``; ``server_name`` is the
    name the TLS certificate is checked against (and sent as SNI unless it is an IP)."""

    host: str
    port: int
    addresses: list[str]
    tls_policy: TlsPolicy
    server_name: str


@dataclass(frozen=True, slots=True)
class Hops:
    """Hosts to try in order, and which rule chose them."""

    hosts: list[Hop]
    via: Via


Route: TypeAlias = LocalRoute | Hops


class NextHopRouter:
    """Routes remote domains by the transport table, smarthost or MX (module docstring).

    Built from the typed values ``RelaySettings`` holds (``from_settings`` does that): the
    configuration parsed and checked them, so nothing here parses text again.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        transports: Iterable[Transport] = (),
        tls_policy: Iterable[TlsPolicyEntry] = (),
        smarthost: HostPort | None = None,
        smarthost_tls: TlsPolicy = TlsPolicy.MAY,
        port: int = SMTP_PORT,
        rng: random.Random | None = None,
        is_local_host: IsLocalHost | None = None,
    ) -> None:
        self._resolver = resolver
        # LMTP entries are delivered by the LMTP agent, which the queue picks before routing.
        self._transports = {
            entry.domain: entry.next_hop for entry in transports if entry.lmtp is None
        }
        self._tls_policy = {entry.domain: entry.policy for entry in tls_policy}
        self._smarthost = smarthost
        self._smarthost_tls = smarthost_tls
        self._port = port
        self._rng = rng or random.Random()
        self._is_local_host = is_local_host

    @classmethod
    def from_settings(
        cls,
        relay: RelaySettings,
        resolver: Resolver,
        *,
        rng: random.Random | None = None,
        is_local_host: IsLocalHost | None = None,
    ) -> NextHopRouter:
        return cls(
            resolver,
            transports=relay.transports,
            tls_policy=relay.tls_policy,
            smarthost=relay.smarthost,
            smarthost_tls=relay.smarthost_tls,
            port=relay.port,
            rng=rng,
            is_local_host=is_local_host,
        )

    def tls_policy_for(self, domain: str) -> TlsPolicy:
        """The TLS policy towards ``domain``'s own hosts (MX or transport): its entry, or may."""
        try:
            key = normalize_domain(domain)
        except InvalidInput:
            return TlsPolicy.MAY
        return self._tls_policy.get(key, TlsPolicy.MAY)

    async def route(self, domain: str) -> Route:
        """Where mail for ``domain`` goes; raises ``RouteError`` when it can go nowhere now."""
        literal = _literal_address(domain) if domain.startswith("[") else None
        name = domain if literal is not None else _domain_name(domain)
        if literal is None and name in self._transports:
            transport = self._transports[name]
            if transport is None:
                return LocalRoute()
            return await self._configured(transport, "transport", self.tls_policy_for(name), name)
        if self._smarthost is not None:
            return await self._configured(self._smarthost, "smarthost", self._smarthost_tls, name)
        if literal is not None:
            return self._literal_route(domain, literal)
        exchangers = await mail_exchangers(
            name, self._resolver, self._rng, is_local_host=self._is_local_host
        )
        policy = self.tls_policy_for(name)
        hops = [Hop(mx.host, self._port, mx.addresses, policy, mx.host) for mx in exchangers]
        return Hops(hops, "mx")

    async def _configured(self, hop: HostPort, via: Via, policy: TlsPolicy, domain: str) -> Hops:
        if hop.is_ip:
            addresses = [hop.host]
        else:
            try:
                addresses = await self._resolver.addresses(hop.host)
            except DnsError as exc:
                detail = f"{via} {hop.host} for {domain} does not resolve: {exc.detail}"
                raise DnsTemporaryFailure(detail) from None
        return Hops([Hop(hop.host, hop.port, addresses, policy, hop.host)], via)

    def _literal_route(self, domain: str, address: str) -> Hops:
        if self._is_local_host is not None and self._is_local_host(address):
            raise loop_error(domain)
        policy = TlsPolicy.MAY  # no domain name, so no tls_policy entry can name it
        return Hops([Hop(address, self._port, [address], policy, address)], "literal")


def _literal_address(domain: str) -> str:
    """The IP of an address literal (RFC 5321 4.1.3); permanent 5.1.2 when it is none."""
    inner = domain.strip().removeprefix("[").removesuffix("]")
    tag, colon, rest = inner.partition(":")
    tagged = bool(colon) and tag.lower() == "ipv6"
    try:
        address = ipaddress.ip_address(rest if tagged else inner)
    except ValueError:
        address = None
    # An IPv6 literal is tagged "IPv6:", an IPv4 one is not (RFC 5321 4.1.3).
    if address is None or tagged != isinstance(address, ipaddress.IPv6Address):
        raise RouteError(NO_SUCH_DOMAIN, False, f"{domain} is not a valid address literal")
    return str(address)


def _domain_name(domain: str) -> str:
    try:
        return normalize_domain(domain)
    except InvalidInput as exc:
        raise RouteError(NO_SUCH_DOMAIN, False, str(exc)) from None
