"""The DNS step: a domain's MX records with preferences, each host's addresses, and the
order to try them, through the same resolver and MX selection the relay uses."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import HostPort
from ..routing import (
    NO_ROUTE,
    NO_SUCH_DOMAIN,
    NULL_MX,
    DnsError,
    DnspythonResolver,
    Exchanger,
    MxRecord,
    RouteError,
    mail_exchangers,
)
from ._explain import finding
from ._report import DnsReport, Finding, MxHost

__all__ = ["RecordingResolver", "lookup_domain"]


class RecordingResolver(DnspythonResolver):
    """The relay's resolver, keeping every MX and address answer (or error) for the report."""

    def __init__(self, nameservers: Sequence[HostPort] = (), timeout: float = 5.0) -> None:
        super().__init__(nameservers, timeout=timeout)
        self.nameservers = tuple(nameservers)
        self.mx_answer: list[MxRecord] | DnsError | None = None
        self.address_answers: dict[str, list[str] | DnsError] = {}

    async def mx(self, domain: str) -> list[MxRecord]:
        try:
            self.mx_answer = await super().mx(domain)
        except DnsError as error:
            self.mx_answer = error
            raise
        return self.mx_answer

    async def addresses(self, host: str) -> list[str]:
        try:
            found = await super().addresses(host)
        except DnsError as error:
            self.address_answers[host] = error
            raise
        self.address_answers[host] = found
        return found


@dataclass(frozen=True, slots=True)
class Lookup:
    report: DnsReport
    exchangers: list[Exchanger]


async def lookup_domain(domain: str, recording: RecordingResolver, rng: random.Random) -> Lookup:
    """What DNS says of ``domain`` and the exchangers to try, best first."""
    recording.mx_answer = None
    recording.address_answers.clear()
    started = time.monotonic()
    servers = tuple(str(server) for server in recording.nameservers)
    report = DnsReport(domain=domain, nameservers=servers, kind="mx")
    exchangers: list[Exchanger] = []
    try:
        exchangers = await mail_exchangers(domain, recording, rng)
    except RouteError as error:
        report.kind, failure = _route_failure(domain, error)
        report.findings.append(failure)
    report.seconds = round(time.monotonic() - started, 3)
    answer = recording.mx_answer
    if isinstance(answer, list) and answer:
        for record in sorted(answer, key=lambda r: (r.preference, r.exchange)):
            report.records.append(_mx_host(record, recording.address_answers))
        if all(record.exchange == "." for record in answer):
            report.kind = "null"
    elif report.kind == "mx":
        report.kind = "implicit"
        report.records.append(_mx_host(MxRecord(0, domain), recording.address_answers))
        report.findings.append(finding("implicit-mx", domain=domain))
    for host in report.records:
        if host.error is not None and host.host != "." and report.kind == "mx":
            report.findings.append(finding("mx-host-no-address", mx=host.host, detail=host.error))
    report.order = [exchanger.host for exchanger in exchangers]
    return Lookup(report, exchangers)


def _mx_host(record: MxRecord, answers: dict[str, list[str] | DnsError]) -> MxHost:
    answer = answers.get(record.exchange)
    if isinstance(answer, list):
        return MxHost(preference=record.preference, host=record.exchange, addresses=tuple(answer))
    error = answer.detail if isinstance(answer, DnsError) else None
    if record.exchange == ".":
        error = "null MX: the domain accepts no mail"
    elif answer is None:
        error = "not looked up"
    return MxHost(preference=record.preference, host=record.exchange, addresses=(), error=error)


def _route_failure(domain: str, error: RouteError) -> tuple[str, Finding]:
    """The report's ``kind`` for a failed MX selection, and the finding that explains it."""
    if error.status == NO_SUCH_DOMAIN:
        return "nxdomain", finding("nxdomain", domain=domain)
    if error.status == NULL_MX:
        return "null", finding("null-mx", domain=domain)
    if error.transient:
        return "temporary", finding("dns-temporary", domain=domain, detail=error.detail)
    kind = "none" if error.status == NO_ROUTE else "mx"
    if "no MX host" in error.detail:
        return kind, finding("mx-no-address", domain=domain, detail=error.detail)
    if error.status == NO_ROUTE:
        return kind, finding("no-mx-no-address", domain=domain)
    # 5.4.6: with no local-host matcher given this cannot happen; report it as it is.
    return kind, finding("dns-temporary", domain=domain, detail=error.detail, severity="fail")
