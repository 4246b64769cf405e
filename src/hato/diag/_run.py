"""The whole test: which servers (DNS, or --server, or the target itself), a conversation
with each as the plan says, and, with --wait, the delivery report."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from ..config import HostPort
from ..routing import SMTP_PORT, DnsError, NoSuchDomain
from ..smtp import is_ip_address
from ._dns import RecordingResolver, lookup_domain
from ._explain import finding
from ._loop import ReportMailbox, wait_for_report
from ._probe import Plan, StepListener, probe
from ._report import Report
from ._target import Target

__all__ = ["Options", "run"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    target: Target
    plan: Plan
    server: tuple[str, int] | None = None  # --server: skip the MX lookup
    all_mx: bool = False
    nameservers: tuple[HostPort, ...] = ()  # the [dns] name servers; () for the system's
    dns_timeout: float = 5.0
    wait: float | None = None  # --wait: seconds to wait for the report
    mailbox: ReportMailbox | None = None  # where the report lands (--wait)
    message_id: str | None = None
    on_step: StepListener | None = None  # told of each step as it is taken


@dataclass(frozen=True, slots=True)
class _Candidate:
    host: str
    port: int
    preference: int | None
    addresses: tuple[str, ...]


async def run(options: Options, rng: random.Random | None = None) -> Report:
    target, plan = options.target, options.plan
    report = Report(
        target=target.text,
        kind=target.kind,
        sender=plan.sender,
        recipient=plan.recipient,
        options={
            "server": f"{options.server[0]}:{options.server[1]}" if options.server else None,
            "all_mx": options.all_mx,
            "tls": plan.tls,
            "auth_user": plan.auth_user,
            "dsn": plan.dsn,
            "send": plan.message is not None,
            "relay_test": plan.relay_test,
            "timeout": plan.timeout,
            "wait": options.wait,
        },
        message_id=options.message_id,
        envid=plan.envid if plan.dsn else None,
    )
    resolver = RecordingResolver(options.nameservers, timeout=options.dns_timeout)
    candidates = await _candidates(options, resolver, report, rng or random.Random())
    before = options.mailbox.snapshot() if options.mailbox is not None else set()
    for candidate in candidates:
        answered = await _try_host(candidate, plan, report, options.on_step)
        if answered and not options.all_mx:
            break
    _forgive_backups(report, options.all_mx)
    if options.wait is not None and options.mailbox is not None and plan.envid is not None:
        accepted = any(
            step.name == "message" and step.status == "pass"
            for host in report.hosts
            for step in host.steps
        )
        if accepted:
            report.loop = await wait_for_report(options.mailbox, plan.envid, before, options.wait)
            _judge_loop(report, options.wait)
    return report


async def _candidates(
    options: Options, resolver: RecordingResolver, report: Report, rng: random.Random
) -> list[_Candidate]:
    target = options.target
    if options.server is not None:
        host, port = options.server
    elif target.kind == "host" or target.host is not None:
        host, port = target.host or "", target.port
    else:
        assert target.domain is not None
        lookup = await lookup_domain(target.domain, resolver, rng)
        report.dns = lookup.report
        return [
            _Candidate(e.host, SMTP_PORT, e.preference, tuple(e.addresses))
            for e in lookup.exchangers
        ]
    if is_ip_address(host):
        return [_Candidate(host, port, None, (host,))]
    try:
        addresses = await resolver.addresses(host)
    except DnsError as error:
        detail = "no such name (NXDOMAIN)" if isinstance(error, NoSuchDomain) else error.detail
        report.findings.append(finding("host-not-found", host=host, detail=detail))
        return []
    return [_Candidate(host, port, None, tuple(addresses))]


async def _try_host(
    candidate: _Candidate, plan: Plan, report: Report, on_step: StepListener | None
) -> bool:
    """Each address of the host until one answers; True if one did."""
    for address in candidate.addresses:
        host_report = await probe(
            candidate.host,
            address,
            candidate.port,
            plan,
            preference=candidate.preference,
            on_step=on_step,
        )
        report.hosts.append(host_report)
        if host_report.answered:
            return True
    return False


def _forgive_backups(report: Report, all_mx: bool) -> None:
    """Without --all-mx a host that did not answer is a warning once a later one did:
    senders move on to the next MX (or address), so mail still flows."""
    if all_mx or not any(host.answered for host in report.hosts):
        return
    for host in report.hosts:
        if not host.answered:
            host.findings = [
                dataclasses.replace(item, severity="warn") if item.severity == "fail" else item
                for item in host.findings
            ]


def _judge_loop(report: Report, timeout: float) -> None:
    loop = report.loop
    assert loop is not None
    if loop.outcome == "failed":
        detail = loop.diagnostic or loop.status or "no diagnostic given"
        report.findings.append(finding("report-failed", detail=detail))
    elif loop.outcome == "delayed":
        report.findings.append(finding("report-delayed", detail=loop.diagnostic or "?"))
    elif loop.outcome == "no-report":
        report.findings.append(finding("no-report", mailbox=loop.mailbox, timeout=timeout))
