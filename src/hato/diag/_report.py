"""What ``hato test`` found, as plain data: the text report and ``--json`` are two views of it.

Every problem is a :class:`Finding` that says what happened in plain words and what to check
next; a :class:`Step` is one timed stage of the conversation; a :class:`HostReport` is one
server tried; the :class:`Report` holds them all and the verdict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Certificate",
    "Check",
    "CheckStatus",
    "DnsReport",
    "Extension",
    "Finding",
    "HostReport",
    "LoopOutcome",
    "MxHost",
    "RelayCheck",
    "Report",
    "Severity",
    "StandingReport",
    "Step",
    "StepStatus",
    "TranscriptEntry",
]

# fail: the target failed a step (exit 1); warn: worth fixing, not a failure; info: a fact
# worth knowing that needs no fixing (e.g. DKIM selectors nobody can list).
Severity = Literal["fail", "warn", "info"]
StepStatus = Literal["pass", "fail", "warn", "skip"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A problem (or a fact worth knowing), its meaning, and what to look at next."""

    severity: Severity
    code: str  # stable name of the failure class, e.g. "connection-refused"
    title: str  # one line: what happened
    explanation: str  # what it means, in plain words
    next_steps: str  # what to check next
    host: str | None = None  # the server it concerns, when it concerns one


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One stage: connect, banner, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET, QUIT."""

    name: str
    status: StepStatus
    started: float  # seconds since the connection attempt began
    duration: float  # seconds this step took
    detail: str  # the reply, or what went wrong


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    seconds: float  # since the connection attempt began
    direction: str  # "C" (us), "S" (the server), or "*" (a note: TLS started, closed)
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    keyword: str
    parameters: str
    meaning: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """The server's certificate and the TLS session, as a verifying client would judge it."""

    tls_version: str | None
    cipher: str | None
    subject: str
    issuer: str
    names: tuple[str, ...]  # subjectAltName DNS names and IP addresses
    not_before: str  # ISO 8601, UTC
    not_after: str
    days_left: int  # until not_after (negative: expired)
    self_signed: bool
    expected_name: str  # the name it was checked against
    name_matches: bool
    fingerprint_sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayCheck:
    """One open-relay form tried: the recipient sent and what the server said."""

    form: str  # "foreign recipient", "percent hack", ...
    recipient: str
    reply: str
    # "trusted": relayed, for a client this server trusts (its own networks, or AUTH).
    verdict: Literal["open", "trusted", "closed", "inconclusive"]


@dataclass(slots=True, kw_only=True)
class HostReport:
    """One server tried: how the conversation went, step by step."""

    host: str  # as named (MX host, --server, the target)
    address: str  # the IP address connected to (or tried last)
    port: int
    preference: int | None = None  # its MX preference, when it came from MX records
    client_address: str | None = None  # our address on the connection, as the server sees it
    steps: list[Step] = field(default_factory=list)
    transcript: list[TranscriptEntry] = field(default_factory=list)
    banner_host: str | None = None  # the name the server gave in its banner
    banner_software: str | None = None  # the rest of the banner line
    extensions: list[Extension] = field(default_factory=list)
    certificate: Certificate | None = None
    relay_checks: list[RelayCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    queue_id: str | None = None  # from the 250 to the message, when it says one

    @property
    def answered(self) -> bool:
        """The server sent a banner (any banner): it is there and speaking."""
        return any(step.name == "banner" for step in self.steps)

    @property
    def failed(self) -> bool:
        return any(finding.severity == "fail" for finding in self.findings)


@dataclass(frozen=True, slots=True, kw_only=True)
class MxHost:
    preference: int
    host: str
    addresses: tuple[str, ...]
    error: str | None = None  # why its addresses could not be found


@dataclass(slots=True, kw_only=True)
class DnsReport:
    """What DNS says about the destination domain."""

    domain: str
    nameservers: tuple[str, ...]  # () for the system's
    # "mx": MX records; "implicit": no MX, the domain's own addresses; "null": null MX;
    # "nxdomain"; "none": neither MX nor addresses; "temporary": no answer to rely on.
    kind: str
    records: list[MxHost] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # hosts in the order they will be tried
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopOutcome:
    """Closing the loop: the delivery report for our test message, or its absence."""

    outcome: Literal["delivered", "relayed", "expanded", "delayed", "failed", "no-report"]
    envid: str
    mailbox: str
    waited: float
    recipient: str | None = None
    status: str | None = None  # the report's Status: field
    remote_mta: str | None = None
    diagnostic: str | None = None  # the remote server's reply, as the report quotes it
    report_file: str | None = None


@dataclass(slots=True, kw_only=True)
class Report:
    target: str
    kind: str  # "address", "domain", "host"
    sender: str
    recipient: str
    options: dict[str, Any] = field(default_factory=dict)
    dns: DnsReport | None = None
    hosts: list[HostReport] = field(default_factory=list)
    loop: LoopOutcome | None = None
    findings: list[Finding] = field(default_factory=list)  # those of no single host
    message_id: str | None = None
    envid: str | None = None

    def all_findings(self) -> list[Finding]:
        found = list(self.dns.findings) if self.dns is not None else []
        for host in self.hosts:
            found.extend(host.findings)
        return found + self.findings

    @property
    def passed(self) -> bool:
        return not any(finding.severity == "fail" for finding in self.all_findings())

    @property
    def verdict(self) -> str:
        """One line: PASS or FAIL and why, as the report ends."""
        findings = self.all_findings()
        failures = [f for f in findings if f.severity == "fail"]
        warnings = [f for f in findings if f.severity == "warn"]
        if failures:
            return f"FAIL: {failures[0].title}" + (
                f" (and {len(failures) - 1} more problem{'s' * (len(failures) > 2)})"
                if len(failures) > 1
                else ""
            )
        done = "message accepted" if self.options.get("send") else "every step passed"
        if self.loop is not None:
            done = f"report received: {self.loop.outcome}"
        if warnings:
            return f"PASS: {done}, with {len(warnings)} warning{'s' * (len(warnings) > 1)}"
        return f"PASS: {done}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["passed"] = self.passed
        data["verdict"] = self.verdict
        return data


# ok: as it should be; warn, fail: see its findings; unknown: cannot be told from here;
# none: an optional record that is not published.
CheckStatus = Literal["ok", "warn", "fail", "unknown", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One thing looked at for ``hato test --dns`` or ``--self``: a record, a list, a key."""

    name: str  # "spf", "dmarc", "dkim", "mta-sts", "tls-rpt", "reverse-dns", "dnsbl", ...
    subject: str  # what was looked at: a DNS name, a blocklist zone, a file
    status: CheckStatus
    summary: str  # one line, in plain words
    record: str | None = None  # the published text, when there is one
    facts: dict[str, Any] = field(default_factory=dict)  # parsed values, for --json
    findings: list[Finding] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class StandingReport:
    """``hato test DOMAIN --dns`` (a domain's published records) or ``hato test --self``
    (what a receiver will think of this server): the checks, each with its findings."""

    mode: Literal["dns", "self"]
    subject: str  # the domain, or this server's hostname
    nameservers: tuple[str, ...]  # () for the system's
    address: str | None = None  # --self: the sending address judged
    address_source: str | None = None  # how it was found
    checks: list[Check] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # those of no single check

    def all_findings(self) -> list[Finding]:
        found = [item for check in self.checks for item in check.findings]
        return found + self.findings

    @property
    def passed(self) -> bool:
        return not any(finding.severity == "fail" for finding in self.all_findings())

    @property
    def verdict(self) -> str:
        findings = self.all_findings()
        failures = [f for f in findings if f.severity == "fail"]
        warnings = [f for f in findings if f.severity == "warn"]
        if failures:
            more = len(failures) - 1
            return f"FAIL: {failures[0].title}" + (
                f" (and {more} more problem{'s' * (more > 1)})" if more else ""
            )
        if warnings:
            return f"PASS, with {len(warnings)} warning{'s' * (len(warnings) > 1)}"
        return "PASS: every check is ok"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["passed"] = self.passed
        data["verdict"] = self.verdict
        return data
