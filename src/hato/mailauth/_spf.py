"""SPF (RFC 7208): may this client send for the reverse-path's domain, or for its HELO name?

pyspf evaluates the record; its DNS goes through the :class:`TxtResolver` the caller gives
(Hato's ``[dns]`` settings, one memo per message). pyspf asks DNS through one module-level
function, ``spf.DNSLookup``: it is replaced once, here, by a function that reads the
resolver of the check running in the calling thread from a context variable, so checks in
concurrent threads never see each other's resolver.

The RFC's processing limits stay on (pyspf's strict mode): at most 10 mechanisms or
modifiers that cause DNS lookups, at most 2 void lookups (RFC 7208 4.6.4); past either the
result is ``permerror``. The whole evaluation has a time limit, after which the result is
``temperror``. Whatever goes wrong, the caller gets a result with the reason, never an
exception: the client's record is the client's problem, not the server's.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import spf

from ..smtp import AddressError, domain_a_label
from ._types import SpfResult, TemporaryDnsError, TxtResolver

__all__ = ["SPF_TIME_LIMIT", "check_spf"]

# RFC 7208 4.6.4: "at least 20 seconds" for the whole evaluation is the suggested bound.
SPF_TIME_LIMIT = 20.0

_LOOKUP_TYPES = ("A", "AAAA", "MX", "PTR", "TXT")


@dataclass(frozen=True, slots=True)
class _Lookup:
    dns: TxtResolver
    deadline: float  # time.monotonic() past which no further lookup starts


_current: contextvars.ContextVar[_Lookup | None] = contextvars.ContextVar(
    "hato_spf_lookup", default=None
)
# What pyspf had before the hook: used when pyspf is called outside check_spf.
_library_lookup: Callable[..., Any] = spf.DNSLookup


def _dns_lookup(name: str, qtype: str, strict: object = True, timeout: object = 20) -> list[Any]:
    """pyspf's DNSLookup contract: ``[((name, type), value), ...]`` with an A/AAAA value an
    address string, MX ``(preference, exchange)``, PTR a name, TXT the record's strings;
    ``[]`` for no data; ``spf.TempError`` when DNS gave no usable answer."""
    lookup = _current.get()
    if lookup is None:
        return list(_library_lookup(name, qtype, strict, timeout))
    if time.monotonic() > lookup.deadline:
        raise spf.TempError("DNS: the SPF check ran out of time")
    qtype = qtype.upper()
    if qtype not in _LOOKUP_TYPES:
        return []  # type 99 (SPF) is obsolete (RFC 7208 3.1); pyspf asks it only when harsh
    try:
        if qtype == "TXT":
            return [((name, "TXT"), (value,)) for value in lookup.dns.txt(name)]
        records = lookup.dns.query(name, qtype)
    except TemporaryDnsError as error:
        raise spf.TempError(f"DNS {error}") from None
    except Exception as error:  # a resolver's own failure: still only DNS that failed
        raise spf.TempError(f"DNS {name} {qtype}: {error}") from None
    answers: list[Any] = []
    for record in records:
        if qtype == "MX":
            preference, _, exchange = record.partition(" ")
            if not preference.isdigit() or not exchange:
                continue
            answers.append(((name, "MX"), (int(preference), exchange.strip().rstrip("."))))
        elif qtype == "PTR":
            answers.append(((name, "PTR"), record.strip().rstrip(".")))
        else:
            answers.append(((name, qtype), record.strip()))
    return answers


spf.DNSLookup = _dns_lookup


class _Query(spf.query):  # type: ignore[misc]  # pyspf has no type information
    def validated_ptrs(self) -> list[str]:
        """The client's PTR names whose addresses include it, as pyspf finds them, except
        that a name whose address lookup fails is skipped rather than failing the check
        (RFC 7208 5.5: "If a DNS error occurs while doing an A RR lookup, then that domain
        name is skipped and the search continues")."""
        validated = []
        # RFC 7208 4.6.4: at most 10 of the PTR names are looked up; the rest are ignored.
        for name in self.dns_ptr(self.i)[: spf.MAX_PTR]:
            try:
                addresses = self.dns_a(name, self.A)
            except spf.TempError:
                continue
            if self.cidrmatch(addresses, self.cidrmax):
                validated.append(name)
        return validated


def check_spf(
    dns: TxtResolver, ip: str, sender: str, helo: str, *, time_limit: float = SPF_TIME_LIMIT
) -> SpfResult:
    """The SPF result for a client at ``ip`` giving the reverse-path ``sender`` (``""``
    for the null reverse-path) after HELO/EHLO ``helo``.

    The identity is "mailfrom" with the reverse-path's domain; for the null reverse-path it
    is "helo" with ``postmaster@<helo>`` (RFC 7208 2.4). A HELO that is not a domain name
    (an address literal, a bare word) has no SPF: ``none`` (RFC 7208 2.3).
    """
    if sender:
        identity = "mailfrom"
        local, at, domain = sender.rpartition("@")
        if not at:
            local, domain = "", sender
        domain = _a_label(domain)
        checked = f"{local or 'postmaster'}@{domain}"
    else:
        identity = "helo"
        domain = _a_label(helo)
        checked = f"postmaster@{domain}"
        try:
            domain_a_label(domain)
        except AddressError:
            return SpfResult("none", identity, domain, checked, "HELO is not a domain name")
    # pyspf takes the null reverse-path itself as the HELO identity.
    result, explanation = _evaluate(dns, ip, checked if sender else "", _a_label(helo), time_limit)
    return SpfResult(result, identity, domain, checked, explanation)


def _evaluate(
    dns: TxtResolver, ip: str, sender: str, helo: str, time_limit: float
) -> tuple[str, str]:
    token = _current.set(_Lookup(dns, time.monotonic() + time_limit))
    try:
        query = _Query(ip, sender, helo, strict=True, timeout=time_limit)
        result, _code, explanation = query.check()
    except spf.TempError as error:
        return "temperror", f"SPF Temporary Error: {error}"
    except spf.PermError as error:  # e.g. a client address pyspf cannot read
        return "permerror", f"SPF Permanent Error: {error}"
    except RecursionError:
        return "permerror", "SPF Permanent Error: the record nests too deeply"
    except Exception as error:  # pyspf's own assertion on runaway recursion, or a bug
        return "permerror", f"SPF Permanent Error: {type(error).__name__}: {error}"
    finally:
        _current.reset(token)
    word = str(result)
    if word not in ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"):
        return "permerror", f"SPF Permanent Error: unexpected result {word!r}"
    return word, str(explanation)


def _a_label(domain: str) -> str:
    """The A-label form of a non-ASCII domain (DNS asks in A-labels); others as given, so
    pyspf judges malformed names itself (RFC 7208 4.3: ``none``)."""
    if domain.isascii():
        return domain
    try:
        return domain_a_label(domain)
    except AddressError:
        return domain
