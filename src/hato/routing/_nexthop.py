"""Next hops: where mail for a remote domain goes, and what TLS it insists on there.

What ``NextHopRouter.route(domain)`` promises:

- The first rule that applies decides: a transport entry for exactly this domain (no parent
  or wildcard matching: ``sub.example.com`` needs its own entry); else the smarthost; else,
  for an address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``), that address; else the
  domain's MX hosts (``mail_exchangers``: implicit MX, null MX, loop protection).
- A transport entry ``local`` gives ``LocalRoute``: deliver here.
- A configured next hop (transport or smarthost) is ``[ip]:port``, ``ip``, ``host:port`` or
  ``host``; the port defaults to 25. A host name there is resolved with A/AAAA only, never
  MX, as Postfix treats ``[host]``: the operator named a machine precisely to bypass MX
  routing. If it does not resolve, the route fails transiently (``4.4.3``) whatever DNS
  said, NXDOMAIN included: the fault is in our own configuration, and senders should not get
  bounces for an operator's typo while the queue lifetime still bounds the wait.
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
from hato.config import RelaySettings, TlsPolicy
from hato.routing._dns import (
    NO_SUCH_DOMAIN,
    DnsError,
    DnsTemporaryFailure,
    Resolver,
    RouteError,
)
from hato.routing._mx import IsLocalHost, loop_error, mail_exchangers

from ..smtp import is_ip_address

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


@dataclass(frozen=True, slots=True)
class _NextHop:
    host: str
    port: int
    is_ip: bool


class NextHopRouter:
    """Routes remote domains by the transport table, smarthost or MX (module docstring).

    Built from plain values as ``RelaySettings`` holds them (``from_settings`` does that);
    a malformed entry raises ValueError here rather than misroute mail later.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        transports: Iterable[str] = (),
        tls_policy: Iterable[str] = (),
        smarthost: str = "",
        smarthost_tls: str = TlsPolicy.MAY,
        port: int = SMTP_PORT,
        rng: random.Random | None = None,
        is_local_host: IsLocalHost | None = None,
    ) -> None:
        self._resolver = resolver
        self._transports: dict[str, _NextHop | None] = {}
        for domain, target in map(_entry, transports):
            self._transports[domain] = None if target == "local" else _parse_next_hop(target)
        self._tls_policy = {domain: TlsPolicy(policy) for domain, policy in map(_entry, tls_policy)}
        self._smarthost = _parse_next_hop(smarthost) if smarthost else None
        self._smarthost_tls = TlsPolicy(smarthost_tls)
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

    async def _configured(self, hop: _NextHop, via: Via, policy: TlsPolicy, domain: str) -> Hops:
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


def _entry(text: str) -> tuple[str, str]:
    """A "domain value" table entry, its domain normalized."""
    domain, _, value = text.strip().partition(" ")
    if not value.strip():
        raise ValueError(f'{text!r}: expected "domain value"')
    try:
        return normalize_domain(domain), value.strip()
    except InvalidInput as exc:
        raise ValueError(f"{text!r}: {exc}") from None


def _parse_next_hop(text: str) -> _NextHop:
    """``[ip]:port``, ``[ip]``, ``ip``, ``host:port`` or ``host`` (``[host]`` too)."""
    if is_ip_address(text):
        return _NextHop(str(ipaddress.ip_address(text)), SMTP_PORT, True)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f'{text!r}: expected "[ADDRESS]:PORT"')
        port_text = rest[1:]
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    port = int(port_text) if port_text else SMTP_PORT
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port must be 1-65535")
    if is_ip_address(host):
        return _NextHop(str(ipaddress.ip_address(host)), port, True)
    try:
        return _NextHop(normalize_domain(host), port, False)
    except InvalidInput as exc:
        raise ValueError(f"{text!r}: {exc}") from None


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
