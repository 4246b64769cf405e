"""DMARC (RFC 7489): the From domain, its policy record, and whether SPF or DKIM aligns.

The check takes what SPF and DKIM already found and asks DNS only for the policy:
``_dmarc.<From domain>``, else ``_dmarc.<organizational domain>`` (where ``sp=`` applies).
The organizational domain comes from the public suffix list shipped in
``publicsuffixlist`` (loaded once, never fetched while running). Domains are compared as
lowercase A-labels. Results are RFC 7489's words: ``pass`` when an aligned identifier
passed, ``fail`` with the policy the domain asks for this message (``p=``/``sp=``, after
``pct=`` sampling), ``none`` without a usable record, ``temperror`` when DNS failed
(the policy lookup, or the check of an aligned identifier that did not pass: then with
the policy that would apply), ``permerror`` when the From field names no single domain.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.errors import InvalidHeaderDefect
from email.headerregistry import AddressHeader, HeaderRegistry

from publicsuffixlist import PublicSuffixList

from ..smtp import AddressError, domain_a_label
from ._types import DkimResult, DmarcResult, SpfResult, TemporaryDnsError, TxtResolver

__all__ = ["DmarcRecord", "check_dmarc", "organizational_domain", "parse_dmarc_record"]

# The list as the installed package ships it: one instance, read once on first use.
_PSL: PublicSuffixList | None = None
_POLICIES = ("none", "quarantine", "reject")
# RFC 7489 6.6.4: a message outside the pct= sample gets the next policy down.
_LOWER = {"reject": "quarantine", "quarantine": "none", "none": "none"}
_HEADERS = HeaderRegistry()


def _psl() -> PublicSuffixList:
    global _PSL
    if _PSL is None:
        _PSL = PublicSuffixList()
    return _PSL


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label, as a lowercase A-label domain; a
    domain that is itself a public suffix (or not a domain at all) is its own."""
    name = domain.strip().rstrip(".").lower()
    try:
        name = domain_a_label(name)
    except AddressError:
        return name
    found = _psl().privatesuffix(name)
    return found if isinstance(found, str) else name


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcRecord:
    """A usable DMARC policy record (RFC 7489 6.3), tags at their defaults when absent."""

    policy: str  # p=
    subdomain_policy: str | None = None  # sp=; None: p= applies to subdomains too
    nonexistent_policy: str | None = None  # np= (RFC 9091); parsed, not applied
    pct: int = 100
    adkim: str = "r"  # "r" relaxed, "s" strict
    aspf: str = "r"
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: tuple[str, ...] = ("0",)
    ri: int = 86400
    # p= was missing or invalid and rua= gave an address: read as p=none (RFC 7489 6.6.3).
    policy_assumed: bool = False


def _tags(text: str) -> list[tuple[str, str]]:
    tags: list[tuple[str, str]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        if not equals:
            return []  # not a tag list (RFC 7489 6.4)
        tags.append((name.strip(), value.strip()))
    return tags


def _uris(value: str) -> tuple[str, ...]:
    # RFC 7489 6.2: comma-separated URIs, each optionally followed by "!size".
    return tuple(uri for part in value.split(",") if (uri := part.strip()))


def parse_dmarc_record(text: str) -> DmarcRecord | None:
    """A DMARC record's tags, or None when it is none (no ``v=DMARC1`` first) or unusable
    (no valid ``p=`` and no ``rua=`` to report to). Unknown tags and invalid values of the
    other tags are ignored, as RFC 7489 6.3 says."""
    if not _is_dmarc(text):
        return None
    tags = _tags(text)
    values: dict[str, str] = {}
    for name, value in tags[1:]:
        values.setdefault(name.lower(), value)
    policy = values.get("p", "").lower()
    rua = _uris(values.get("rua", ""))
    assumed = False
    if policy not in _POLICIES:
        if not any(uri.lower().startswith("mailto:") and "@" in uri for uri in rua):
            return None
        policy, assumed = "none", True
    sp = values.get("sp", "").lower()
    np = values.get("np", "").lower()
    pct_text = values.get("pct", "")
    pct = int(pct_text) if pct_text.isdigit() and int(pct_text) <= 100 else 100
    adkim = values.get("adkim", "r").lower()
    aspf = values.get("aspf", "r").lower()
    fo = tuple(
        option
        for part in values.get("fo", "0").split(":")
        if (option := part.strip().lower()) in ("0", "1", "d", "s")
    )
    ri_text = values.get("ri", "")
    return DmarcRecord(
        policy=policy,
        subdomain_policy=sp if sp in _POLICIES else None,
        nonexistent_policy=np if np in _POLICIES else None,
        pct=pct,
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        rua=rua,
        ruf=_uris(values.get("ruf", "")),
        fo=fo or ("0",),
        ri=int(ri_text) if ri_text.isdigit() else 86400,
        policy_assumed=assumed,
    )


def _from_domains(from_field: bytes | None) -> tuple[list[str], str]:
    """The From domains as A-labels (each once, in order), or ([], why not)."""
    if from_field is None:
        return [], "no From field"
    try:
        text = from_field.decode("utf-8").replace("\r", "").replace("\n", "")
    except UnicodeDecodeError:
        return [], "the From field is not UTF-8"
    try:
        parsed = _HEADERS("From", text)
    except Exception:  # the stdlib parser on hostile input: a result, never a traceback
        return [], "the From field cannot be parsed"
    if not isinstance(parsed, AddressHeader) or any(
        isinstance(defect, InvalidHeaderDefect) for defect in parsed.defects
    ):
        return [], "the From field cannot be parsed"
    addresses = parsed.addresses
    if not addresses:
        return [], "the From field holds no address"
    domains: list[str] = []
    for address in addresses:
        domain = address.domain
        if not domain:
            return [], "a From address has no domain"
        try:
            name = domain_a_label(domain.rstrip("."))
        except AddressError:
            return [], f"the From domain {domain} is not a domain name"
        if name not in domains:
            domains.append(name)
    return domains, ""


def _lookup(dns: TxtResolver, domain: str) -> tuple[list[str], str]:
    """The v=DMARC1 records at _dmarc.DOMAIN (RFC 7489 6.6.3 step 4 drops the rest)."""
    found = dns.txt(f"_dmarc.{domain}")
    texts = [record.decode("utf-8", "replace") for record in found]
    return [t for t in texts if _is_dmarc(t)], f"_dmarc.{domain}"


def _is_dmarc(text: str) -> bool:
    tags = _tags(text)
    return bool(tags) and tags[0][0].lower() == "v" and tags[0][1] == "DMARC1"


def _aligned(domain: str, from_domain: str, mode: str) -> bool:
    try:
        domain = domain_a_label(domain.rstrip("."))
    except AddressError:
        return False
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


def check_dmarc(
    dns: TxtResolver,
    from_field: bytes | None,
    spf: SpfResult | None,
    dkim: Sequence[DkimResult],
    *,
    random: Callable[[], float] | None = None,
) -> DmarcResult:
    """The DMARC result of a message: ``from_field`` is the RFC5322.From field body (None
    without one); ``random`` draws the ``pct=`` sample (``random.random`` by default).

    A From with several authors in different domains is checked for each, and the
    strictest failing policy applies (RFC 7489 6.6.1), so a second author cannot carry a
    forged one past ``p=reject``."""
    domains, why = _from_domains(from_field)
    if not domains:
        result = "none" if from_field is None else "permerror"
        return DmarcResult(result=result, from_domain="", reason=why)
    results = [_check_domain(dns, domain, spf, dkim, random) for domain in domains]
    if len(results) == 1:
        return results[0]
    failed = [r for r in results if r.result == "fail"]
    if failed:
        return max(failed, key=lambda r: _STRICTNESS[r.policy])
    for word in ("temperror", "permerror", "none"):
        found = next((r for r in results if r.result == word), None)
        if found is not None:
            return found
    return results[0]  # every author's domain passed


# How strict a policy is, for a From with several authors: the strictest failing wins.
_STRICTNESS = {"none": 0, "quarantine": 1, "reject": 2}


def _check_domain(
    dns: TxtResolver,
    from_domain: str,
    spf: SpfResult | None,
    dkim: Sequence[DkimResult],
    random: Callable[[], float] | None,
) -> DmarcResult:
    org_domain = organizational_domain(from_domain)
    try:
        records, name = _lookup(dns, from_domain)
        at_org = False
        if not records and org_domain != from_domain:
            records, name = _lookup(dns, org_domain)
            at_org = True
    except TemporaryDnsError as error:
        return DmarcResult(
            result="temperror", from_domain=from_domain, reason=f"DMARC record lookup: {error}"
        )
    if not records:
        return DmarcResult(result="none", from_domain=from_domain, reason="no DMARC record")
    if len(records) > 1:
        return DmarcResult(
            result="none", from_domain=from_domain, reason=f"{name} has {len(records)} records"
        )
    record = parse_dmarc_record(records[0])
    if record is None:
        return DmarcResult(
            result="none", from_domain=from_domain, reason=f"{name} has no usable policy"
        )
    spf_aligned = (
        spf is not None and spf.result == "pass" and _aligned(spf.domain, from_domain, record.aspf)
    )
    dkim_aligned = any(
        d.result == "pass" and _aligned(d.domain, from_domain, record.adkim) for d in dkim
    )
    if spf_aligned or dkim_aligned:
        how = " and ".join(w for w, ok in (("SPF", spf_aligned), ("DKIM", dkim_aligned)) if ok)
        return DmarcResult(
            result="pass",
            from_domain=from_domain,
            published=record.policy,
            spf_aligned=spf_aligned,
            dkim_aligned=dkim_aligned,
            reason=f"{how} aligned with {from_domain}",
        )
    policy = record.policy
    if at_org and record.subdomain_policy is not None:
        policy = record.subdomain_policy
    # RFC 7489 6.6.2: an aligned identifier whose check failed for DNS may have passed; the
    # result is temperror (with the policy that would apply), never fail.
    spf_undecided = (
        spf is not None
        and spf.result == "temperror"
        and _aligned(spf.domain, from_domain, record.aspf)
    )
    dkim_undecided = any(
        d.result == "temperror" and _aligned(d.domain, from_domain, record.adkim) for d in dkim
    )
    if spf_undecided or dkim_undecided:
        what = " and ".join(
            w for w, hit in (("SPF", spf_undecided), ("DKIM", dkim_undecided)) if hit
        )
        return DmarcResult(
            result="temperror",
            from_domain=from_domain,
            policy=policy,
            published=record.policy,
            reason=f"{what} aligned with {from_domain} not checked (DNS failure)",
        )
    sampled = ""
    if record.pct < 100:
        draw = (random or _random.random)()
        if draw * 100 >= record.pct:
            policy = _LOWER[policy]
            sampled = f", outside the pct={record.pct} sample"
    return DmarcResult(
        result="fail",
        from_domain=from_domain,
        policy=policy,
        published=record.policy,
        reason=f"neither SPF nor DKIM aligned with {from_domain}{sampled}",
    )
