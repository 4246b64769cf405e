"""DNS lookups for mail routing, and the errors routing raises, classified where they happen.

A lookup either answers or raises a ``DnsError`` that already says whose problem it is:

- ``NoSuchDomain`` (NXDOMAIN, ``5.1.2``, permanent): the authoritative servers say the name
  does not exist. Waiting does not make it exist, so the message is returned.
- ``NoRecords`` (an empty answer, ``5.4.4``, permanent): the name exists but holds no record
  of the type asked for. Callers decide what that means (no MX is an implicit MX).
- ``DnsTemporaryFailure`` (``4.4.3``, transient): SERVFAIL, REFUSED, a malformed answer, or no
  answer within the timeout. Nothing was learnt about the name, so the message waits
  (RFC 5321 5.1: "If a temporary error is returned, the message MUST be queued").
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

from hato.config import HostPort

__all__ = [
    "DNS_TEMPORARY",
    "NO_ROUTE",
    "NO_SUCH_DOMAIN",
    "DnsError",
    "DnsTemporaryFailure",
    "DnspythonResolver",
    "MxRecord",
    "NoRecords",
    "NoSuchDomain",
    "Resolver",
    "RouteError",
]

# Enhanced status codes (RFC 3463) of the failures a lookup reports.
NO_SUCH_DOMAIN = "5.1.2"  # X.1.2 Bad destination system address
NO_ROUTE = "5.4.4"  # X.4.4 Unable to route
DNS_TEMPORARY = "4.4.3"  # X.4.3 Directory server failure


class RouteError(Exception):
    """Mail for a destination cannot go anywhere now: ``status`` is its RFC 3463 code,
    ``transient`` says whether a later attempt may succeed, ``detail`` says why."""

    def __init__(self, status: str, transient: bool, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.transient = transient
        self.detail = detail


class DnsError(RouteError):
    """A lookup failed; the subclass says how."""


class NoSuchDomain(DnsError):
    """NXDOMAIN: the name does not exist."""

    def __init__(self, detail: str) -> None:
        super().__init__(NO_SUCH_DOMAIN, False, detail)


class NoRecords(DnsError):
    """The name exists but has no record of the type asked for."""

    def __init__(self, detail: str) -> None:
        super().__init__(NO_ROUTE, False, detail)


class DnsTemporaryFailure(DnsError):
    """SERVFAIL, REFUSED, timeout or garbage: nothing learnt, try again later."""

    def __init__(self, detail: str) -> None:
        super().__init__(DNS_TEMPORARY, True, detail)


@dataclass(frozen=True, slots=True)
class MxRecord:
    """One MX record: ``exchange`` lowercase without the final dot, ``"."`` for the root
    (the null MX of RFC 7505)."""

    preference: int
    exchange: str


class Resolver(Protocol):
    """What routing asks of DNS. Both methods raise ``DnsError`` and nothing else."""

    async def mx(self, domain: str) -> list[MxRecord]:
        """The MX records of ``domain``, in the order the server gave them."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """The IPv4 then IPv6 addresses (A, then AAAA records) of ``host``, each once."""
        ...

    async def names(self, ip: str) -> list[str]:
        """The PTR names of ``ip``."""
        ...


async def confirmed_name(resolver: Resolver, ip: str) -> str | None:
    """``ip``'s PTR name, kept only if that name resolves back to ``ip`` (forward-confirmed
    reverse DNS, as Postfix records it); None when there is none or a lookup fails.

    A loopback client is this host: it is "localhost" without a query, as the hosts file
    would answer, so local clients never wait on (or send traffic to) a name server.
    """
    try:
        if ipaddress.ip_address(ip).is_loopback:
            return "localhost"
    except ValueError:
        return None
    try:
        names = await resolver.names(ip)
    except (DnsError, ValueError):
        return None
    wanted = ipaddress.ip_address(ip)
    for name in names[:4]:
        try:
            if any(ipaddress.ip_address(a) == wanted for a in await resolver.addresses(name)):
                return name
        except DnsError:
            continue
    return None


class DnspythonResolver:
    """``Resolver`` over dnspython's asyncio stub resolver.

    ``nameservers`` as the configuration parsed them (``dns.nameservers``: addresses with
    their ports); none: the system's (/etc/resolv.conf). Names are always absolute: no search
    domains are appended, since a relay must not guess what a partial name means (RFC 5321
    5.1). A truncated UDP answer is asked again over TCP (dnspython's default). ``timeout``
    bounds each lookup as a whole, retries included; running out of it is a transient
    failure.
    """

    def __init__(self, nameservers: Sequence[HostPort] = (), timeout: float = 5.0) -> None:
        resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(server.host, server.port) for server in nameservers
            ]
        resolver.search = []
        resolver.use_search_by_default = False
        resolver.lifetime = timeout
        self._resolver = resolver

    async def mx(self, domain: str) -> list[MxRecord]:
        answer = await self._query(domain, dns.rdatatype.MX)
        return [MxRecord(int(rdata.preference), _host_text(rdata.exchange)) for rdata in answer]

    async def addresses(self, host: str) -> list[str]:
        # Both families at once, so a host costs one round trip, not two.
        results = await asyncio.gather(
            self._addresses_of_type(host, dns.rdatatype.A),
            self._addresses_of_type(host, dns.rdatatype.AAAA),
        )
        found = [address for result in results if isinstance(result, list) for address in result]
        if found:
            # An answer in one family is enough to deliver; the other family's failure
            # (some servers SERVFAIL on AAAA) must not hold the message back.
            return list(dict.fromkeys(found))
        errors = [result for result in results if isinstance(result, DnsError)]
        for error in errors:
            if error.transient:
                raise error
        if errors and all(isinstance(error, NoSuchDomain) for error in errors):
            raise errors[0]
        raise NoRecords(f"{host} has no A or AAAA records")

    async def a_records(self, name: str) -> list[str]:
        """The IPv4 addresses of ``name`` (for DNS blocklists); DnsError when there are none."""
        answer = await self._query(name, dns.rdatatype.A)
        return [str(rdata.address) for rdata in answer]

    async def names(self, ip: str) -> list[str]:
        """The PTR names of ``ip`` (lowercase, no final dot)."""
        reverse = dns.reversename.from_address(ip).to_text()
        answer = await self._query(reverse, dns.rdatatype.PTR)
        return [str(rdata.target).rstrip(".").lower() for rdata in answer]

    async def _addresses_of_type(
        self, host: str, rdtype: dns.rdatatype.RdataType
    ) -> list[str] | DnsError:
        try:
            answer = await self._query(host, rdtype)
        except NoRecords:
            return []
        except DnsError as exc:
            return exc
        return [str(rdata.address) for rdata in answer]

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer:
        what = f"{dns.rdatatype.to_text(rdtype)} lookup for {name}"
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise NoSuchDomain(f"{name!r} is not a valid domain name: {exc}") from None
        try:
            return await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise NoSuchDomain(f"{name}: domain does not exist") from None
        except dns.resolver.NoAnswer:
            raise NoRecords(f"{name} has no {dns.rdatatype.to_text(rdtype)} records") from None
        except dns.exception.Timeout:
            raise DnsTemporaryFailure(f"{what}: no answer in time") from None
        except dns.resolver.NoNameservers as exc:
            raise DnsTemporaryFailure(f"{what}: {_server_errors(exc)}") from None
        except dns.exception.DNSException as exc:
            raise DnsTemporaryFailure(f"{what}: {exc}") from None


def _host_text(name: dns.name.Name) -> str:
    """A host name as routing compares it: lowercase, no final dot; the root is "."."""
    if name == dns.name.root:
        return "."
    return name.to_text(omit_final_dot=True).lower()


def _server_errors(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    answers = [f"{server} answered {error}" for server, _, _, error, _ in errors]
    return "; ".join(answers) or "no name server answered"
