"""A domain's and this server's standing: ``hato test DOMAIN --dns`` and ``hato test --self``.

The checks themselves are in ``_dns_records`` (SPF, DMARC, MTA-STS, TLS-RPT) and ``_self``
(reverse DNS, blocklists, SPF for our address, the certificate); the DKIM keys Hato signs
with are checked here against the key store, since DNS cannot list a domain's selectors.
"""

from __future__ import annotations

from ..mailauth import (
    DkimKey,
    DkimKeyError,
    DkimKeys,
    TxtResolver,
    check_published,
)
from ._dns_records import _check, domain_checks
from ._explain import filled, finding
from ._report import Check, Finding, Severity, StandingReport
from ._self import SelfPlan, SpfCheck, self_checks

__all__ = ["dkim_checks", "standing_dns", "standing_self"]

# The key states a verifier may look up (DkimKeys: a retired key is no longer published).
_PUBLISHED = ("pending", "active", "retiring")


def dkim_checks(
    dns: TxtResolver, keys: DkimKeys | None, domain: str, *, hosted: bool
) -> list[Check]:
    """One check per key Hato has for ``domain`` (found and matching in DNS); for a domain
    Hato neither hosts nor has keys for, one check saying the selectors are unknown."""
    try:
        mine = [key for key in keys.keys(domain) if key.state in _PUBLISHED] if keys else []
    except DkimKeyError as error:
        item = finding("dkim-store-unreadable", domain=domain, detail=str(error))
        return [_check("dkim", domain, [item])]
    if not mine:
        if hosted:
            item = finding("dkim-no-keys", domain=domain)
            return [_check("dkim", domain, [item], summary="no key")]
        item = finding("dkim-selectors-unknown", domain=domain)
        return [_check("dkim", domain, [item], summary="selectors unknown (not hosted here)")]
    return [_key_check(dns, key) for key in mine]


def _key_check(dns: TxtResolver, key: DkimKey) -> Check:
    values: dict[str, object] = {
        "domain": key.domain,
        "selector": key.selector,
        "name": key.record_name,
    }
    facts = {"selector": key.selector, "algorithm": key.algorithm, "state": key.state}
    try:
        check = check_published(dns, key)
    except DkimKeyError as error:
        item = filled("dkim-mismatch", {**values, "detail": str(error)})
        return _check("dkim", key.record_name, [item], facts=facts)
    facts["published"] = check.state
    items: list[Finding] = []
    if check.state == "missing":
        # A pending key is made to be published: its absence is the next step, not a fault.
        severity: Severity | None = "warn" if key.state == "pending" else None
        items.append(filled("dkim-missing", {**values, "detail": check.detail}, severity=severity))
    elif check.state == "mismatch":
        items.append(filled("dkim-mismatch", {**values, "detail": check.detail}))
    elif check.state == "temperror":
        items.append(filled("dkim-temporary", {**values, "detail": check.detail}))
    summary = f"{key.selector} ({key.algorithm}, {key.state}): {check.detail}"
    return _check("dkim", key.record_name, items, facts=facts, summary=summary)


def standing_dns(
    dns: TxtResolver,
    domain: str,
    *,
    nameservers: tuple[str, ...],
    keys: DkimKeys | None,
    hosted: bool,
) -> StandingReport:
    report = StandingReport(mode="dns", subject=domain, nameservers=nameservers)

    def dkim(name: str) -> list[Check]:
        return dkim_checks(dns, keys, name, hosted=hosted)

    report.checks = domain_checks(dns, domain, dkim)
    return report


def standing_self(
    dns: TxtResolver,
    plan: SelfPlan,
    *,
    nameservers: tuple[str, ...],
    address_source: str,
    keys: DkimKeys | None,
    check_spf: SpfCheck,
) -> StandingReport:
    report = StandingReport(
        mode="self",
        subject=plan.hostname,
        nameservers=nameservers,
        address=plan.address,
        address_source=address_source,
    )

    def dkim(name: str) -> list[Check]:
        return dkim_checks(dns, keys, name, hosted=True)

    report.checks = self_checks(dns, plan, check_spf=check_spf, dkim=dkim)
    return report
