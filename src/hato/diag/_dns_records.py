"""``hato test DOMAIN --dns``: the records a receiver reads about a sending domain.

SPF (one ``v=spf1`` TXT record, its DNS-mechanism lookups counted through every include and
redirect as a receiver counts them, RFC 7208 4.6.4), DMARC (``_dmarc.DOMAIN``), the DKIM
keys Hato signs with (a domain's selectors cannot be listed, so only a hosted domain's
keys are checked), MTA-STS and TLS-RPT (presence and syntax: no HTTPS fetch here). Each
is a :class:`Check` with :class:`Finding`s in the catalog's words.

Everything is synchronous over a :class:`~hato.mailauth.TxtResolver` (``MailDns`` from
``[dns]``), as the receivers' libraries are: the command has no event loop to block.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..mailauth import (
    TemporaryDnsError,
    TxtResolver,
    organizational_domain,
    parse_dmarc_record,
)
from ._explain import finding
from ._report import Check, CheckStatus, Finding

__all__ = [
    "MAX_SPF_LOOKUPS",
    "SpfRecord",
    "check_dmarc_record",
    "check_mta_sts",
    "check_spf_record",
    "check_tls_rpt",
    "domain_checks",
    "parse_spf",
    "spf_records",
]

# RFC 7208 4.6.4: at most 10 mechanisms and modifiers that cost a DNS lookup.
MAX_SPF_LOOKUPS = 10
_LOOKUP_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
# Records fetched while following includes: past this the count is only "more than".
_MAX_SPF_FETCHES = 40
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$")
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9_.-]*)([:/].*)?$")
# RFC 8461 3.1: id is 1 to 32 letters and digits.
_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


@dataclass(frozen=True, slots=True)
class SpfTerm:
    text: str
    kind: str  # "mechanism" or "modifier"
    name: str  # lowercased: "include", "ip4", "redirect", ...
    qualifier: str  # "+", "-", "~", "?" for mechanisms; "" for modifiers
    value: str  # after ":" (or "=" for modifiers); "" when none


@dataclass(slots=True)
class SpfRecord:
    """One ``v=spf1`` record, split into terms; ``errors`` are terms a receiver rejects."""

    text: str
    terms: list[SpfTerm] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def all_qualifier(self) -> str | None:
        for term in self.terms:
            if term.kind == "mechanism" and term.name == "all":
                return term.qualifier
        return None

    @property
    def redirect(self) -> str | None:
        for term in self.terms:
            if term.kind == "modifier" and term.name == "redirect":
                return term.value
        return None

    @property
    def own_lookups(self) -> int:
        count = sum(1 for t in self.terms if t.kind == "mechanism" and t.name in _LOOKUP_MECHANISMS)
        # RFC 7208 6.1: redirect is ignored when the record has an "all".
        return count + (1 if self.redirect is not None and self.all_qualifier is None else 0)


def parse_spf(text: str) -> SpfRecord:
    """The terms of an SPF record (RFC 7208 4.6.1, 12)."""
    record = SpfRecord(text)
    words = text.split()
    for word in words[1:]:
        modifier = _MODIFIER.match(word)
        if modifier is not None and ":" not in modifier.group(1):
            name = modifier.group(1).lower()
            record.terms.append(SpfTerm(word, "modifier", name, "", modifier.group(2)))
            if name in ("redirect", "exp") and not modifier.group(2):
                record.errors.append(f"{word!r} names no domain")
            continue
        mechanism = _MECHANISM.match(word)
        name = mechanism.group(2).lower() if mechanism is not None else ""
        if mechanism is None or name not in _MECHANISMS:
            record.errors.append(f"unknown term {word!r}")
            continue
        rest = mechanism.group(3) or ""
        value = rest[1:] if rest.startswith(":") else ""
        if name in ("include", "exists", "ip4", "ip6") and not value:
            record.errors.append(f"{word!r} needs ':' and a value")
            continue
        if name == "all" and rest:
            record.errors.append(f"{word!r}: all takes no value")
            continue
        if name in ("ip4", "ip6") and not _network(value, 4 if name == "ip4" else 6):
            record.errors.append(f"{word!r} is not an IPv{name[-1]} address or network")
            continue
        record.terms.append(SpfTerm(word, "mechanism", name, mechanism.group(1) or "+", value))
    redirects = [t for t in record.terms if t.kind == "modifier" and t.name == "redirect"]
    if len(redirects) > 1:
        record.errors.append("more than one redirect=")
    return record


def _network(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_network(text, strict=False).version == version
    except ValueError:
        return False


def spf_records(dns: TxtResolver, domain: str) -> list[str]:
    """The ``v=spf1`` TXT records of ``domain`` (RFC 7208 4.5); TemporaryDnsError passes."""
    found = []
    for raw in dns.txt(domain):
        text = raw.decode("utf-8", "replace")
        if text.lower() == "v=spf1" or text.lower().startswith("v=spf1 "):
            found.append(text)
    return found


@dataclass(slots=True)
class _Count:
    """Lookups counted while following includes and redirects."""

    dns: TxtResolver
    total: int = 0
    fetched: int = 0
    by_name: dict[str, int] = field(default_factory=dict)  # each include's own share
    included: list[dict[str, Any]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (target, what is wrong)
    temporary: list[tuple[str, str]] = field(default_factory=list)

    def follow(self, record: SpfRecord, path: tuple[str, ...]) -> None:
        self.total += record.own_lookups
        targets = [t.value for t in record.terms if t.kind == "mechanism" and t.name == "include"]
        redirect = record.redirect if record.all_qualifier is None else None
        if redirect is not None:
            targets.append(redirect)
        for target in targets:
            name = target.lower().rstrip(".")
            if "%" in name:  # a macro: expanded per message, nothing to follow here
                continue
            if name in path:
                self.problems.append((name, "includes itself again (a loop)"))
                continue
            if self.fetched >= _MAX_SPF_FETCHES:
                return
            self.fetched += 1
            before = self.total
            try:
                texts = spf_records(self.dns, name)
            except TemporaryDnsError as error:
                self.temporary.append((name, str(error)))
                continue
            if not texts:
                self.problems.append((name, "publishes no SPF record"))
                self.included.append({"domain": name, "record": None})
                continue
            if len(texts) > 1:
                self.problems.append((name, f"publishes {len(texts)} SPF records"))
            inner = parse_spf(texts[0])
            self.included.append({"domain": name, "record": texts[0], "via": path[-1]})
            for error_text in inner.errors:
                self.problems.append((name, f"has an invalid term: {error_text}"))
            self.follow(inner, (*path, name))
            if len(path) == 1:  # the include's own lookup and everything inside it
                self.by_name[name] = self.by_name.get(name, 0) + 1 + self.total - before


def _effective_all(dns: TxtResolver, record: SpfRecord, depth: int = 0) -> tuple[str | None, str]:
    """The qualifier of the ``all`` that ends evaluation (through redirects), and where."""
    qualifier = record.all_qualifier
    if qualifier is not None or record.redirect is None or depth > MAX_SPF_LOOKUPS:
        return qualifier, ""
    target = record.redirect.lower().rstrip(".")
    try:
        texts = spf_records(dns, target)
    except TemporaryDnsError:
        return None, target
    if len(texts) != 1:
        return None, target
    found, _ = _effective_all(dns, parse_spf(texts[0]), depth + 1)
    return found, target


def check_spf_record(dns: TxtResolver, domain: str) -> Check:
    subject = domain
    try:
        texts = spf_records(dns, domain)
    except TemporaryDnsError as error:
        return _check("spf", subject, [finding("record-temporary", name=domain, detail=error)])
    if not texts:
        return _check("spf", subject, [finding("spf-none", domain=domain)], summary="no record")
    if len(texts) > 1:
        item = finding("spf-multiple", domain=domain, count=len(texts))
        return _check("spf", subject, [item], record=" | ".join(texts), facts={"records": texts})
    record = parse_spf(texts[0])
    findings: list[Finding] = []
    if record.errors:
        findings.append(finding("spf-syntax", domain=domain, detail="; ".join(record.errors)))
    count = _Count(dns)
    count.follow(record, (domain.lower().rstrip("."),))
    for target, detail in count.problems:
        findings.append(finding("spf-include-broken", domain=domain, target=target, detail=detail))
    for target, detail in count.temporary:
        findings.append(finding("record-temporary", name=target, detail=detail))
    if count.total > MAX_SPF_LOOKUPS:
        shares = ", ".join(f"{name} {n}" for name, n in count.by_name.items()) or "none"
        own = record.own_lookups - sum(
            1 for t in record.terms if t.name == "include" and "%" not in t.value
        )
        own -= 1 if record.redirect and record.all_qualifier is None else 0
        findings.append(
            finding(
                "spf-too-many-lookups",
                domain=domain,
                count=count.total
                if count.fetched < _MAX_SPF_FETCHES
                else f"more than {count.total}",
                detail=f"{own} in the record itself, the rest by include: {shares}",
            )
        )
    qualifier, via = _effective_all(dns, record)
    if qualifier == "+":
        term = next((t.text for t in record.terms if t.name == "all"), "+all")
        findings.append(finding("spf-plus-all", domain=domain, term=term))
    elif qualifier not in ("-", "~"):
        detail = (
            "it ends in ?all (neutral)"
            if qualifier == "?"
            else f"no all mechanism{f' (not even through redirect={via})' if via else ''}"
        )
        findings.append(finding("spf-no-all", domain=domain, detail=detail))
    facts: dict[str, Any] = {
        "terms": [
            {
                "term": t.text,
                "kind": t.kind,
                "name": t.name,
                "qualifier": t.qualifier,
                "value": t.value,
            }
            for t in record.terms
        ],
        "lookups": count.total,
        "lookup_limit": MAX_SPF_LOOKUPS,
        "all": qualifier,
        "included": count.included,
    }
    summary = f"{count.total} DNS lookup{'s' * (count.total != 1)} of {MAX_SPF_LOOKUPS}"
    summary += f", ends in {qualifier}all" if qualifier else ", no all"
    return _check("spf", subject, findings, record=texts[0], facts=facts, summary=summary)


def _dmarc_problem(text: str) -> str:
    """Why a record starting v=DMARC1 is unusable (parse_dmarc_record gave None)."""
    tags = _tags(text)
    if not text.replace(" ", "").startswith("v=DMARC1"):
        return "it must begin with v=DMARC1 (exactly, first)"
    policy = tags.get("p", "")
    if not policy:
        return "p= is missing, and no rua= to report to"
    return f"p={policy} is not none, quarantine or reject"


def _dmarc_texts(dns: TxtResolver, name: str) -> list[str]:
    return [
        text
        for text in (r.decode("utf-8", "replace") for r in dns.txt(name))
        if text.replace(" ", "").lower().startswith("v=dmarc1")
    ]


def check_dmarc_record(dns: TxtResolver, domain: str) -> Check:
    """The DMARC record receivers find for ``domain`` (RFC 7489 6.6.3): at ``_dmarc.DOMAIN``,
    else at the organizational domain's, whose ``sp=`` then applies."""
    name = f"_dmarc.{domain}"
    organization = organizational_domain(domain)
    inherited = False
    try:
        texts = _dmarc_texts(dns, name)
        if not texts and organization != domain.lower().rstrip("."):
            name = f"_dmarc.{organization}"
            texts = _dmarc_texts(dns, name)
            inherited = bool(texts)
    except TemporaryDnsError as error:
        return _check("dmarc", name, [finding("record-temporary", name=name, detail=error)])
    if not texts:
        name = f"_dmarc.{domain}"
        return _check("dmarc", name, [finding("dmarc-none", domain=domain)], summary="no record")
    if len(texts) > 1:
        item = finding("dmarc-multiple", domain=domain, count=len(texts))
        return _check("dmarc", name, [item], record=" | ".join(texts))
    text = texts[0]
    record = parse_dmarc_record(text)
    if record is None:
        item = finding("dmarc-invalid", domain=domain, detail=_dmarc_problem(text))
        return _check("dmarc", name, [item], record=text)
    findings: list[Finding] = []
    if inherited:  # a subdomain: the organizational domain's sp= (else p=) is its policy
        record = dataclasses.replace(record, policy=record.subdomain_policy or record.policy)
    if record.policy_assumed:
        detail = "p= is missing or invalid; receivers read it as p=none"
        findings.append(finding("dmarc-invalid", domain=domain, detail=detail, severity="warn"))
    policy = record.policy
    subdomain = record.subdomain_policy or policy
    if record.pct < 100 and policy != "none":
        findings.append(finding("dmarc-partial", domain=domain, pct=record.pct, policy=policy))
    if policy == "none":
        findings.append(finding("dmarc-monitoring", domain=domain))
    if not record.rua:
        findings.append(finding("dmarc-no-reports", domain=domain))
    facts: dict[str, Any] = {
        "policy_domain": organization if inherited else domain,
        "p": policy,
        "sp": subdomain,
        "pct": record.pct,
        "rua": list(record.rua),
        "ruf": list(record.ruf),
        "adkim": record.adkim,
        "aspf": record.aspf,
    }
    summary = f"p={policy}" + (f", sp={subdomain}" if record.subdomain_policy else "")
    if inherited:
        summary = f"{policy}, from {organization}'s record (a subdomain gets sp=, else p=)"
    summary += f", pct={record.pct}" if record.pct != 100 else ""
    summary += f", reports to {', '.join(record.rua)}" if record.rua else ", no reports asked"
    return _check("dmarc", name, findings, record=text, facts=facts, summary=summary)


def _tag_record(
    dns: TxtResolver, name: str, version: str
) -> tuple[list[str], TemporaryDnsError | None]:
    try:
        raw = dns.txt(name)
    except TemporaryDnsError as error:
        return [], error
    prefix = f"v={version}".lower()
    texts = [r.decode("utf-8", "replace") for r in raw]
    return [t for t in texts if t.replace(" ", "").lower().startswith(prefix)], None


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            tags.setdefault(key.strip().lower(), value.strip())
    return tags


def check_mta_sts(dns: TxtResolver, domain: str) -> Check:
    """RFC 8461 3.1: one ``v=STSv1; id=...`` record at ``_mta-sts.DOMAIN``."""
    name = f"_mta-sts.{domain}"
    texts, error = _tag_record(dns, name, "STSv1")
    if error is not None:
        return _check("mta-sts", name, [finding("record-temporary", name=name, detail=error)])
    if not texts:
        return Check(
            name="mta-sts", subject=name, status="none", summary="not published (optional)"
        )
    if len(texts) > 1:
        detail = f"{len(texts)} records; senders ignore them all"
        return _check("mta-sts", name, [finding("mta-sts-invalid", domain=domain, detail=detail)])
    tags = _tags(texts[0])
    problem = None
    if not texts[0].startswith("v=STSv1"):
        problem = "it must begin with v=STSv1"
    elif "id" not in tags:
        problem = "id= is missing"
    elif not _STS_ID.match(tags["id"]):
        problem = f"id={tags['id']} is not 1 to 32 letters and digits"
    findings = [finding("mta-sts-invalid", domain=domain, detail=problem)] if problem else []
    summary = f"id={tags.get('id', '')} (the policy itself is not fetched here)"
    return _check(
        "mta-sts", name, findings, record=texts[0], facts={"id": tags.get("id")}, summary=summary
    )


def check_tls_rpt(dns: TxtResolver, domain: str) -> Check:
    """RFC 8460 3: one ``v=TLSRPTv1; rua=...`` record at ``_smtp._tls.DOMAIN``."""
    name = f"_smtp._tls.{domain}"
    texts, error = _tag_record(dns, name, "TLSRPTv1")
    if error is not None:
        return _check("tls-rpt", name, [finding("record-temporary", name=name, detail=error)])
    if not texts:
        return Check(
            name="tls-rpt", subject=name, status="none", summary="not published (optional)"
        )
    if len(texts) > 1:
        detail = f"{len(texts)} records; senders ignore them all"
        return _check("tls-rpt", name, [finding("tls-rpt-invalid", domain=domain, detail=detail)])
    tags = _tags(texts[0])
    rua = [uri.strip() for uri in tags.get("rua", "").split(",") if uri.strip()]
    bad = [uri for uri in rua if not uri.lower().startswith(("mailto:", "https:"))]
    problem = None
    if not texts[0].startswith("v=TLSRPTv1"):
        problem = "it must begin with v=TLSRPTv1"
    elif not rua:
        problem = "rua= is missing"
    elif bad:
        problem = f"rua {', '.join(bad)} is neither mailto: nor https:"
    findings = [finding("tls-rpt-invalid", domain=domain, detail=problem)] if problem else []
    summary = f"reports to {', '.join(rua)}" if rua else "no rua"
    return _check("tls-rpt", name, findings, record=texts[0], facts={"rua": rua}, summary=summary)


def domain_checks(dns: TxtResolver, domain: str, dkim: Callable[[str], list[Check]]) -> list[Check]:
    """Every check of ``hato test DOMAIN --dns``, in the order a receiver meets them."""
    return [
        check_spf_record(dns, domain),
        check_dmarc_record(dns, domain),
        *dkim(domain),
        check_mta_sts(dns, domain),
        check_tls_rpt(dns, domain),
    ]


def _check(
    name: str,
    subject: str,
    findings: Sequence[Finding],
    *,
    record: str | None = None,
    facts: dict[str, Any] | None = None,
    summary: str | None = None,
) -> Check:
    """A check whose status is its worst finding's severity."""
    status = status_of(findings)
    if summary is None:
        summary = findings[0].title if findings else "ok"
    return Check(
        name=name,
        subject=subject,
        status=status,
        summary=summary,
        record=record,
        facts=facts or {},
        findings=list(findings),
    )


def status_of(findings: Iterable[Finding]) -> CheckStatus:
    severities = {item.severity for item in findings}
    if "fail" in severities:
        return "fail"
    if "warn" in severities:
        return "warn"
    if "info" in severities:
        return "unknown"
    return "ok"
