"""``hato test --self``: what a receiver will think of this server.

A receiver judges the address a message comes from and the names around it: the
address's forward-confirmed reverse DNS (and whether it is the HELO name), the DNS
blocklists it is on, each local domain's SPF for it, DKIM keys and DMARC record, and the
certificate offered with STARTTLS. Each is a :class:`Check` with the catalog's findings.

The sending address is ``--address``, else the one the kernel would choose towards the
Internet: a UDP socket ``connect()``ed to a documentation address, which sends nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from dns.reversename import from_address as reverse_name

from ..mailauth import SpfResult, TemporaryDnsError, TxtResolver
from ..policy import dnsbl_listed, dnsbl_query
from ._dns_records import _check, check_dmarc_record
from ._explain import filled, finding
from ._report import Check, Finding

__all__ = [
    "CERT_WARN_DAYS",
    "SelfPlan",
    "certificate_check",
    "dnsbl_check",
    "dnsbl_zones",
    "outgoing_address",
    "reverse_dns_check",
    "self_checks",
    "spf_check",
]

# A certificate this close to its end is a warning: time to renew, before it is an outage.
CERT_WARN_DAYS = 14
# Documentation addresses (RFC 5737, RFC 3849): routed like any public address, never
# answered; the UDP connect() only asks the kernel for a route and sends no packet.
_PROBE_ADDRESSES = (("192.0.2.1", socket.AF_INET), ("2001:db8::1", socket.AF_INET6))
# PTR names followed to their addresses: receivers look at a few, never at dozens.
_MAX_PTR_NAMES = 10

_DNSBL_REFUSALS = ipaddress.ip_network("127.255.255.0/24")

SpfCheck = Callable[[TxtResolver, str, str, str], SpfResult]


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfPlan:
    hostname: str  # server.hostname: the HELO name
    address: str
    domains: tuple[str, ...]  # the local domains to check SPF, DKIM and DMARC for
    dnsbl_zones: tuple[str, ...]
    certificate: Path
    certificate_configured: bool  # tls.certificate, rather than the self-signed one


def outgoing_address() -> tuple[str, str]:
    """The source address the kernel would use towards the Internet, and how it was found.

    Raises OSError when there is no route at all."""
    problems = []
    for probe, family in _PROBE_ADDRESSES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 25))
                address = str(sock.getsockname()[0])
        except OSError as error:
            problems.append(f"{probe}: {error.strerror or error}")
            continue
        return address, f"the kernel's choice for a route towards {probe}"
    raise OSError("; ".join(problems))


def _names(answers: Iterable[str]) -> list[str]:
    return [answer.rstrip(".").lower() for answer in answers]


def reverse_dns_check(dns: TxtResolver, address: str, hostname: str) -> Check:
    """Forward-confirmed reverse DNS of ``address``, compared with the HELO name.

    Asked of DNS even for loopback addresses: the answer a receiver gets is the point."""
    ip = ipaddress.ip_address(address)
    reverse = reverse_name(address).to_text(omit_final_dot=True)
    try:
        names = _names(dns.query(reverse, "PTR"))
    except TemporaryDnsError as error:
        return _check(
            "reverse-dns", address, [finding("record-temporary", name=reverse, detail=error)]
        )
    values: dict[str, object] = {"address": address, "hostname": hostname}
    if not names:
        item = filled("rdns-none", {**values, "detail": f" at {reverse}"})
        return _check("reverse-dns", address, [item], facts={"ptr": []})
    confirmed = None
    forward: dict[str, list[str]] = {}
    problems: list[Finding] = []
    for name in names[:_MAX_PTR_NAMES]:
        try:
            found = dns.query(name, "AAAA" if ip.version == 6 else "A")
        except TemporaryDnsError as error:
            problems.append(finding("record-temporary", name=name, detail=error))
            continue
        forward[name] = found
        if any(_same(ip, text) for text in found):
            confirmed = confirmed or name
            if name == hostname.lower().rstrip("."):
                confirmed = name
    facts = {"ptr": names, "forward": forward, "confirmed": confirmed, "helo": hostname}
    if confirmed is None:
        items = problems or [filled("rdns-unconfirmed", {**values, "names": ", ".join(names)})]
        return _check("reverse-dns", address, items, facts=facts)
    if confirmed != hostname.lower().rstrip("."):
        item = filled("rdns-helo-mismatch", {**values, "name": confirmed})
        return _check(
            "reverse-dns", address, [item], facts=facts, summary=f"{confirmed}, not HELO {hostname}"
        )
    summary = f"{address} is {confirmed} and back, the HELO name"
    return _check("reverse-dns", address, [], facts=facts, summary=summary)


def _same(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == ip
    except ValueError:
        return False


def dnsbl_check(dns: TxtResolver, address: str, zone: str) -> Check:
    """RFC 5782: ``address`` listed in ``zone`` when the query name has an A in 127/8."""
    query = dnsbl_query(address, zone)
    assert query is not None  # address is an IP address: SelfPlan says so
    values: dict[str, object] = {"address": address, "zone": zone, "query": query}
    try:
        answers = dns.query(query, "A")
    except TemporaryDnsError as error:
        return _check("dnsbl", zone, [filled("dnsbl-temporary", {**values, "detail": error})])
    listed = dnsbl_listed(answers)
    refusals = [text for text in answers if _refusal(text)]
    if listed is None and refusals:
        detail = f"it answered {', '.join(refusals)}, its code for a refused query"
        items = [filled("dnsbl-temporary", {**values, "detail": detail})]
        facts = {"query": query, "answers": answers}
        return _check("dnsbl", zone, items, facts=facts, summary="query refused")
    if listed is None:
        summary = "not listed" if not answers else f"not listed (answer {', '.join(answers)})"
        return _check(
            "dnsbl", zone, [], facts={"query": query, "answers": answers}, summary=summary
        )
    try:
        reasons = [raw.decode("utf-8", "replace") for raw in dns.txt(query)]
    except TemporaryDnsError:
        reasons = []
    detail = f": {'; '.join(reasons)}" if reasons else ""
    item = filled("dnsbl-listed", {**values, "answer": listed, "detail": detail})
    facts = {"query": query, "answers": answers, "reasons": reasons}
    return _check("dnsbl", zone, [item], facts=facts, summary=f"LISTED ({listed})")


def _refusal(text: str) -> bool:
    """An RFC 5782 2.3 error answer (127.255.255.0/24): the list refused to answer."""
    try:
        return ipaddress.ip_address(text) in _DNSBL_REFUSALS
    except ValueError:
        return False


def spf_check(
    dns: TxtResolver, check_spf: SpfCheck, address: str, domain: str, hostname: str
) -> Check:
    """What ``domain``'s SPF says of mail from ``address`` (MAIL FROM postmaster@domain)."""
    sender = f"postmaster@{domain}"
    result = check_spf(dns, address, sender, hostname)
    values: dict[str, object] = {
        "domain": domain,
        "address": address,
        "hostname": hostname,
        "result": result.result,
    }
    detail = result.explanation or f"result {result.result}"
    facts = {"result": result.result, "sender": sender, "explanation": result.explanation}
    items: list[Finding] = []
    if result.result == "pass":
        summary = f"pass: {domain} authorizes {address}"
    elif result.result in ("fail", "permerror"):
        more = (
            ", and its DMARC policy applies unless DKIM passes"
            if result.result == "fail"
            else ": the record itself is broken"
        )
        items.append(filled("spf-self-fail", {**values, "detail": detail, "more": more}))
        summary = result.result
    elif result.result == "temperror":
        items.append(finding("record-temporary", name=domain, detail=detail))
        summary = result.result
    else:  # softfail, neutral, none
        items.append(filled("spf-self-weak", {**values, "detail": detail}))
        summary = result.result
    return _check("spf", domain, items, facts=facts, summary=summary)


def certificate_check(
    path: Path, *, configured: bool, now: datetime.datetime | None = None
) -> Check:
    now = now or datetime.datetime.now(datetime.UTC)
    subject = str(path)
    if not path.exists() and not configured:
        return _check("certificate", subject, [finding("self-cert-missing", path=path)])
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as error:
        detail = f"{path}: {getattr(error, 'strerror', None) or error}"
        return _check(
            "certificate", subject, [finding("self-cert-unreadable", path=path, detail=detail)]
        )
    ends = certificate.not_valid_after_utc
    left = ends - now
    days = left.days
    date = ends.strftime("%Y-%m-%d %H:%M UTC")
    facts = {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "not_after": ends.isoformat(),
        "days_left": days,
        "self_signed": certificate.issuer == certificate.subject,
        "configured": configured,
    }
    items: list[Finding] = []
    if left.total_seconds() <= 0:
        items.append(finding("self-cert-expired", path=path, date=date))
        summary = f"expired on {date}"
    elif days < CERT_WARN_DAYS:
        items.append(finding("self-cert-expiring", path=path, days=days, date=date))
        summary = f"{days} days left (until {date})"
    else:
        summary = f"{days} days left (until {date})"
    return _check("certificate", subject, items, facts=facts, summary=summary)


def self_checks(
    dns: TxtResolver,
    plan: SelfPlan,
    *,
    check_spf: SpfCheck,
    dkim: Callable[[str], list[Check]],
) -> list[Check]:
    checks = [reverse_dns_check(dns, plan.address, plan.hostname)]
    checks += [dnsbl_check(dns, plan.address, zone) for zone in plan.dnsbl_zones]
    for domain in plan.domains:
        checks.append(spf_check(dns, check_spf, plan.address, domain, plan.hostname))
        checks += dkim(domain)
        checks.append(check_dmarc_record(dns, domain))
    checks.append(certificate_check(plan.certificate, configured=plan.certificate_configured))
    return checks


def dnsbl_zones(rule_zones: Iterable[Sequence[str]], extra: Iterable[str]) -> tuple[str, ...]:
    """The blocklists named in access rules and on the command line, each once, in order."""
    seen: dict[str, None] = {}
    for zones in (*rule_zones, tuple(extra)):
        for zone in zones:
            seen.setdefault(zone.lower().strip(".").strip(), None)
    return tuple(zone for zone in seen if zone)
