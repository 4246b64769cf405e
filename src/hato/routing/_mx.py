"""MX selection (RFC 5321 5.1, RFC 7505): the mail exchangers of a domain, best first.

What ``mail_exchangers`` promises:

- Exchangers come in the order to try them: by preference, lowest first; hosts of equal
  preference are shuffled with the ``random.Random`` given, which spreads the load as
  RFC 5321 5.1 asks (and keeps tests deterministic with a seeded one). Each exchanger
  carries its addresses, A records first; a host named twice is kept once, at its best
  preference. At most ``MAX_EXCHANGERS`` hosts are looked up.
- No MX records: the domain itself is the exchanger, preference 0 (implicit MX). Neither MX
  nor A/AAAA records: permanent ``5.4.4``.
- A null MX (RFC 7505: the only MX record is ``.``): permanent ``5.1.10``, the domain
  accepts no mail. A ``.`` listed among real exchangers is ignored (it names no host).
- NXDOMAIN for the domain: permanent ``5.1.2``. SERVFAIL, REFUSED or a timeout on the
  domain's own lookups: transient ``4.4.3``.
- An MX host whose addresses cannot be found is skipped. When no host is left: transient
  ``4.4.3`` if any host's lookup failed transiently, since the answer may come later;
  permanent ``5.4.4`` when every host is known to have no address (NXDOMAIN or no A/AAAA
  records). That is the domain's published configuration, and retrying for days would
  only delay the bounce (Postfix decides the same by default:
  ``smtp_defer_if_no_mx_address_found = no``).
- This host is never a next hop for mail it relays (RFC 5321 5.1: when the relay finds
  itself in the list, "all records at that preference level and higher-numbered ones MUST
  be discarded"). An exchanger is this host when ``is_local_host`` says so of its name or
  of any of its addresses. If nothing is left (this host is the best MX, or the implicit
  MX points here): permanent ``5.4.6``, the mail would loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from hato.routing._dns import (
    NO_ROUTE,
    DnsError,
    DnsTemporaryFailure,
    MxRecord,
    NoRecords,
    Resolver,
    RouteError,
)

__all__ = [
    "MAIL_LOOP",
    "MAX_EXCHANGERS",
    "NULL_MX",
    "Exchanger",
    "IsLocalHost",
    "local_host_matcher",
    "loop_error",
    "mail_exchangers",
]

NULL_MX = "5.1.10"  # RFC 7505 3.2 / RFC 3463 X.1.10: recipient address has null MX
MAIL_LOOP = "5.4.6"  # RFC 3463 X.4.6 Routing loop detected

# Most MX hosts whose addresses are looked up for one domain. Real domains list a handful;
# the bound keeps a hostile zone with hundreds of MX records from costing hundreds of
# lookups per message. RFC 5321 5.1 asks for at least two.
MAX_EXCHANGERS = 10

# Whether a host name or an IP address is this host (its names, its listening addresses).
IsLocalHost = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Exchanger:
    """A host to deliver to: its name, MX preference and addresses (never empty)."""

    host: str
    preference: int
    addresses: list[str]


def local_host_matcher(names: Iterable[str], addresses: Iterable[str]) -> IsLocalHost:
    """An ``is_local_host`` for this host's ``names`` and listening ``addresses``: names
    compare without case or final dot, addresses by value (``::1`` equals ``0::1``)."""
    own_names = {_name_key(name) for name in names}
    own_addresses = {ipaddress.ip_address(address) for address in addresses}

    def is_local_host(name_or_ip: str) -> bool:
        try:
            return ipaddress.ip_address(name_or_ip) in own_addresses
        except ValueError:
            return _name_key(name_or_ip) in own_names

    return is_local_host


async def mail_exchangers(
    domain: str,
    resolver: Resolver,
    rng: random.Random,
    *,
    is_local_host: IsLocalHost | None = None,
) -> list[Exchanger]:
    """The exchangers for ``domain``, best first; raises ``RouteError`` (a ``DnsError``
    for what DNS itself said) classified as the module docstring promises."""
    is_local = is_local_host or _nobody
    try:
        records = await resolver.mx(domain)
    except NoRecords:
        records = []
    if not records:
        return await _implicit_mx(domain, resolver, is_local)
    hosts = [record for record in records if record.exchange != "."]
    if not hosts:
        raise RouteError(NULL_MX, False, f"{domain} does not accept mail (null MX)")
    ordered = _before_self(_by_preference(hosts, rng), lambda record: is_local(record.exchange))
    if not ordered:
        raise loop_error(domain)
    ordered = ordered[:MAX_EXCHANGERS]
    lookups = await asyncio.gather(*(_addresses(resolver, r.exchange) for r in ordered))
    return _usable(domain, list(zip(ordered, lookups, strict=True)), is_local)


def _usable(
    domain: str, lookups: list[tuple[MxRecord, list[str] | DnsError]], is_local: IsLocalHost
) -> list[Exchanger]:
    """The exchangers with addresses, before any whose address is this host's."""
    own = [
        record.preference
        for record, result in lookups
        if isinstance(result, list) and any(map(is_local, result))
    ]
    if own:
        lookups = [(record, result) for record, result in lookups if record.preference < min(own)]
    if not lookups:
        raise loop_error(domain)
    exchangers = [
        Exchanger(record.exchange, record.preference, result)
        for record, result in lookups
        if isinstance(result, list)
    ]
    if exchangers:
        return exchangers
    raise _no_address(domain, [result for _, result in lookups if isinstance(result, DnsError)])


async def _implicit_mx(domain: str, resolver: Resolver, is_local: IsLocalHost) -> list[Exchanger]:
    try:
        addresses = await resolver.addresses(domain)
    except NoRecords:
        raise RouteError(NO_ROUTE, False, f"{domain} has no MX, A or AAAA records") from None
    if is_local(domain) or any(map(is_local, addresses)):
        raise loop_error(domain)
    return [Exchanger(domain, 0, addresses)]


def _by_preference(records: Sequence[MxRecord], rng: random.Random) -> list[MxRecord]:
    """Best preference first, shuffled among equals; each host once, at its best."""
    best: dict[str, int] = {}
    for record in records:
        best[record.exchange] = min(record.preference, best.get(record.exchange, record.preference))
    # Sorted by name before shuffling, so the order the server listed them in (which some
    # servers rotate) has no say: the rng alone decides.
    unique = [MxRecord(preference, host) for host, preference in best.items()]
    unique.sort(key=lambda record: (record.preference, record.exchange))
    ordered: list[MxRecord] = []
    for _, group in groupby(unique, key=lambda record: record.preference):
        equals = list(group)
        rng.shuffle(equals)
        ordered.extend(equals)
    return ordered


def _before_self(records: list[MxRecord], is_self: Callable[[MxRecord], bool]) -> list[MxRecord]:
    """The records preferred over the best one that is this host (all if none is)."""
    own = [record.preference for record in records if is_self(record)]
    if not own:
        return records
    return [record for record in records if record.preference < min(own)]


async def _addresses(resolver: Resolver, host: str) -> list[str] | DnsError:
    try:
        return await resolver.addresses(host)
    except DnsError as exc:
        return exc


def _no_address(domain: str, errors: list[DnsError]) -> RouteError:
    details = "; ".join(error.detail for error in errors)
    if any(error.transient for error in errors):
        return DnsTemporaryFailure(f"no address for any MX host of {domain}: {details}")
    return RouteError(NO_ROUTE, False, f"no MX host of {domain} has an address: {details}")


def loop_error(domain: str) -> RouteError:
    """Permanent 5.4.6: delivering mail for ``domain`` would hand it back to this host."""
    return RouteError(MAIL_LOOP, False, f"mail for {domain} loops back to myself")


def _nobody(name_or_ip: str) -> bool:
    return False


def _name_key(name: str) -> str:
    return name.strip().removesuffix(".").lower()
