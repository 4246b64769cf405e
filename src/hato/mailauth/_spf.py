"""SPF (RFC 7208) through pyspf, asking DNS through the :class:`TxtResolver` it is given.

pyspf does every lookup through one module-level function, ``spf.DNSLookup``. One
function of ours takes its place once, at import; it reads the resolver of the check in
progress from a context variable set around that check, so checks in concurrent threads
(``asyncio.to_thread`` copies the context per call) each ask their own resolver. A
lookup outside a check goes to the function pyspf had.

Limits, RFC 7208 4.6.4: at most 10 mechanisms and modifiers that ask DNS (``include``,
``a``, ``mx``, ``ptr``, ``exists``, ``redirect``) and at most 2 lookups that find nothing;
past either the result is ``permerror``, which is also what a record including itself
gets. pyspf counts both in strict mode, which is how it is called here. The whole check
has a time limit (``time_limit``): once it has passed, the next lookup fails the check
with ``temperror``; a lookup under way is bounded by the resolver's own timeout.

Whatever goes wrong is a result, never an exception: a DNS failure is ``temperror``, a
record pyspf cannot make sense of (or trips over) is ``permerror``, with the reason in
``explanation``.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import spf

from ..smtp import AddressError, domain_a_label
from ._types import SPF_RESULTS, SpfResult, TemporaryDnsError, TxtResolver

__all__ = ["SPF_TIME_LIMIT", "check_spf"]

# RFC 7208 4.6.4 suggests at least 20 s for the whole evaluation; a client waits for its
# 250 to MAIL meanwhile, so less, and each lookup has the resolver's own timeout within.
SPF_TIME_LIMIT = 20.0
# RFC 7208 4.6.4: the DNS-querying terms, and the lookups that find nothing.
MAX_DNS_MECHANISMS = 10
MAX_VOID_LOOKUPS = 2

# What pyspf's lookup function returns: ((name, type), value) for each record.
_Answer = list[tuple[tuple[str, str], Any]]


@dataclass(frozen=True, slots=True)
class _Check:
    """The check in progress in this context: where to ask, and until when."""

    dns: TxtResolver
    deadline: float  # time.monotonic()
    time_limit: float


_current: contextvars.ContextVar[_Check | None] = contextvars.ContextVar(
    "hato_spf_check", default=None
)
_library_lookup: Callable[..., _Answer] = spf.DNSLookup


def _lookup(name: str, qtype: str, strict: object = True, timeout: object = None) -> _Answer:
    """``spf.DNSLookup``: the records of ``name``, in the shape pyspf expects."""
    check = _current.get()
    if check is None:
        return _library_lookup(name, qtype, strict, timeout)
    if time.monotonic() > check.deadline:
        raise spf.TempError(f"the SPF check took longer than {check.time_limit:g} s")
    key = (name, qtype)
    try:
        if qtype == "TXT":
            return [(key, (value,)) for value in check.dns.txt(name)]
        if qtype in ("A", "AAAA"):
            return [(key, value) for value in check.dns.query(name, qtype)]
        if qtype == "MX":
            return [(key, _mx(value)) for value in check.dns.query(name, "MX")]
        if qtype == "PTR":
            return [(key, value.rstrip(".")) for value in check.dns.query(name, "PTR")]
    except TemporaryDnsError as error:
        raise spf.TempError(f"DNS: {error}") from None
    # The type 99 SPF record is obsolete (RFC 7208 3.1); pyspf asks only in harsh mode.
    return []


def _mx(text: str) -> tuple[int, str]:
    preference, _, exchange = text.partition(" ")
    try:
        return int(preference), exchange.strip().rstrip(".")
    except ValueError:
        raise spf.TempError(f"DNS: an MX record that is not one: {text!r}") from None


def _install() -> None:
    spf.DNSLookup = _lookup
    # The RFC's limits, whatever else in the process may have set.
    spf.MAX_LOOKUP = MAX_DNS_MECHANISMS
    spf.MAX_VOID_LOOKUPS = MAX_VOID_LOOKUPS


_install()


def check_spf(
    dns: TxtResolver,
    ip: str,
    sender: str,
    helo: str,
    *,
    time_limit: float = SPF_TIME_LIMIT,
) -> SpfResult:
    """SPF for a client at ``ip`` sending from ``sender`` after ``HELO helo``.

    The identity is the reverse-path ("mailfrom"); for the null reverse-path it is
    ``postmaster@HELO`` ("helo", RFC 7208 2.4). Synchronous and blocking on DNS: run it in
    a thread.
    """
    if sender:
        identity, checked = "mailfrom", sender
    else:
        identity, checked = "helo", f"postmaster@{helo}" if helo else ""
    local, _, domain = checked.rpartition("@")
    domain = domain.rstrip(".")
    # RFC 7208 4.3: a name that is no domain gets "none"; pyspf sees to it.
    with contextlib.suppress(AddressError):
        domain = domain_a_label(domain)
    checked = f"{local or 'postmaster'}@{domain}" if domain else ""
    if not domain:
        return SpfResult("none", identity, "", checked, "no domain to check")

    def result(word: str, explanation: str) -> SpfResult:
        return SpfResult(word, identity, domain, checked, explanation)

    check = _Check(dns, time.monotonic() + time_limit, time_limit)
    token = _current.set(check)
    try:
        query = spf.query(i=ip, s=checked, h=helo, strict=True, timeout=time_limit)
        word, _code, explanation = query.check()
    except spf.TempError as error:
        return result("temperror", f"SPF temporary error: {error}")
    except spf.PermError as error:
        return result("permerror", f"SPF permanent error: {error}")
    except RecursionError:
        return result("permerror", "SPF permanent error: records nested too deeply")
    except OSError as error:
        return result("temperror", f"SPF temporary error: {error}")
    except Exception as error:  # pyspf tripping over a record: the record's fault
        return result("permerror", f"SPF permanent error: {type(error).__name__}: {error}")
    finally:
        _current.reset(token)
    if word not in SPF_RESULTS:  # pyspf's own words beyond RFC 7208's ("ambiguous")
        return result("permerror", f"SPF permanent error: {word}: {explanation}")
    return result(word, str(explanation or ""))
