"""The readable report: plain text for pipes and files, colour and tables (rich) on a
terminal. Both come from the same blocks, so they never say different things."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..events import printable
from ._report import Finding, HostReport, Report, StandingReport

__all__ = ["render", "render_standing"]

_STATUS_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "warn": "yellow",
    "skip": "dim",
    "open": "bold red",
    "trusted": "yellow",
    "closed": "green",
    "inconclusive": "yellow",
    "info": "cyan",
    "ok": "green",
    "unknown": "cyan",
    "none": "dim",
}


@dataclass(slots=True)
class _Table:
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    styles: list[str | None] = field(default_factory=list)  # a style for each row

    def add(self, *cells: str, style: str | None = None) -> None:
        self.rows.append(cells)
        self.styles.append(style)


_Block = str | Text | _Table


def render(report: Report, out: TextIO, *, color: bool) -> None:
    _write(_blocks(report), out, color=color)


def render_standing(report: StandingReport, out: TextIO, *, color: bool) -> None:
    """``hato test DOMAIN --dns`` and ``hato test --self``: a table of checks, the records
    as published, then the diagnosis and the verdict, as the SMTP report ends."""
    _write(_standing_blocks(report), out, color=color)


def _write(raw: list[_Block], out: TextIO, *, color: bool) -> None:
    blocks = [_escaped(block) for block in raw]
    if color:
        console = Console(file=out, highlight=False, soft_wrap=False)
        for block in blocks:
            if isinstance(block, _Table):
                console.print(_rich_table(block))
            else:
                # Text, never a str: rich would read "[...]" in a server's banner as markup.
                console.print(Text(block) if isinstance(block, str) else block)
        return
    for block in blocks:
        if isinstance(block, _Table):
            out.write(_plain_table(block))
        else:
            out.write((block.plain if isinstance(block, Text) else block) + "\n")


def _escaped(block: _Block) -> _Block:
    """The block with every control character escaped: a remote server wrote much of it
    (banner, replies, certificate names), and it must not drive the terminal."""
    if isinstance(block, _Table):
        return _Table(
            block.columns, [tuple(printable(c) for c in row) for row in block.rows], block.styles
        )
    if isinstance(block, Text):
        return Text(printable(block.plain, lines=True), style=block.style)
    return printable(block, lines=True)


def _blocks(report: Report) -> list[_Block]:
    blocks: list[_Block] = [
        Text(f"hato test {report.target}", style="bold"),
        f"  from <{report.sender}> to <{report.recipient}>"
        + (f", ENVID {report.envid}" if report.envid else ""),
    ]
    if report.dns is not None:
        blocks += _dns_blocks(report)
    for host in report.hosts:
        blocks += _host_blocks(host)
    if report.loop is not None:
        blocks += _loop_blocks(report)
    findings = report.all_findings()
    if findings:
        blocks += ["", Text("Diagnosis", style="bold")]
        for item in findings:
            blocks += _finding_blocks(item)
    style = "bold green" if report.passed else "bold red"
    blocks += ["", Text(report.verdict, style=style)]
    return blocks


def _standing_blocks(report: StandingReport) -> list[_Block]:
    servers = ", ".join(report.nameservers) or "the system's resolver"
    if report.mode == "dns":
        title = f"hato test {report.subject} --dns"
        lines = [f"  the records receivers read about {report.subject} (asked {servers})"]
    else:
        title = f"hato test --self ({report.subject})"
        lines = [
            f"  what a receiver thinks of mail from {report.address} with HELO "
            f"{report.subject} (asked {servers})",
            f"  sending address: {report.address_source}",
        ]
    blocks: list[_Block] = [Text(title, style="bold"), *lines, ""]
    table = _Table(("", "check", "looked at", "result"))
    for check in report.checks:
        table.add(
            check.status.upper(),
            check.name,
            check.subject,
            check.summary,
            style=_STATUS_STYLE[check.status],
        )
    blocks.append(table)
    records = [check for check in report.checks if check.record]
    if records:
        blocks += ["", Text("Records", style="bold")]
        for check in records:
            blocks.append(_fill(f"{check.subject}: {check.record}", "  "))
    findings = report.all_findings()
    if findings:
        blocks += ["", Text("Diagnosis", style="bold")]
        for item in findings:
            blocks += _finding_blocks(item)
    style = "bold green" if report.passed else "bold red"
    blocks += ["", Text(report.verdict, style=style)]
    return blocks


def _dns_blocks(report: Report) -> list[_Block]:
    dns = report.dns
    assert dns is not None
    servers = ", ".join(dns.nameservers) or "the system's resolver"
    blocks: list[_Block] = [
        "",
        Text(f"DNS: {dns.domain} (asked {servers}, {dns.seconds:.3f} s)", style="bold"),
    ]
    if dns.kind == "implicit":
        blocks.append("  no MX records: the domain's own address is its mail host (implicit MX)")
    table = _Table(("", "preference", "mail exchanger", "addresses"))
    for record in dns.records:
        addresses = ", ".join(record.addresses) or f"({record.error})"
        label = "MX" if dns.kind != "implicit" else "A/AAAA"
        table.add(
            label,
            str(record.preference),
            record.host,
            addresses,
            style=None if record.addresses else "yellow",
        )
    if table.rows:
        blocks.append(table)
    elif dns.kind in ("nxdomain", "none", "temporary"):
        blocks.append(f"  {dns.kind}: see the diagnosis below")
    if dns.order:
        blocks.append(f"  tried in this order: {', '.join(dns.order)}")
    return blocks


def _host_blocks(host: HostReport) -> list[_Block]:
    via = f" (MX {host.preference})" if host.preference is not None else ""
    blocks: list[_Block] = [
        "",
        Text(f"Server {host.host} [{host.address}]:{host.port}{via}", style="bold"),
    ]
    if host.banner_host is not None:
        blocks.append(f"  banner: {host.banner_host}  {host.banner_software or ''}".rstrip())
    steps = _Table(("", "step", "at", "took", "result"))
    for step in host.steps:
        steps.add(
            step.status.upper(),
            step.name,
            f"{step.started:.3f}s",
            f"{step.duration * 1000:.0f} ms",
            step.detail,
            style=_STATUS_STYLE[step.status],
        )
    blocks.append(steps)
    if host.extensions:
        table = _Table(("extension", "parameters", "meaning"))
        for extension in host.extensions:
            table.add(extension.keyword, extension.parameters, extension.meaning)
        blocks += ["  Extensions", table]
    cert = host.certificate
    if cert is not None:
        table = _Table(("certificate", ""))
        table.add("TLS", f"{cert.tls_version}, {cert.cipher}")
        table.add("subject", cert.subject)
        table.add("names (SAN)", ", ".join(cert.names) or "(none)")
        table.add("issuer", cert.issuer + ("  (self-signed)" if cert.self_signed else ""))
        valid = f"{cert.not_before} to {cert.not_after}"
        left = (
            f"expired {-cert.days_left} days ago"
            if cert.days_left < 0
            else (f"{cert.days_left} days left")
        )
        table.add("valid", f"{valid} ({left})", style="yellow" if cert.days_left < 14 else None)
        match = "yes" if cert.name_matches else "NO"
        table.add(
            f"matches {cert.expected_name}", match, style=None if cert.name_matches else "yellow"
        )
        table.add("SHA-256", cert.fingerprint_sha256)
        blocks += ["  TLS", table]
    if host.relay_checks:
        table = _Table(("relay", "form", "recipient", "reply"))
        for check in host.relay_checks:
            table.add(
                check.verdict,
                check.form,
                check.recipient,
                check.reply,
                style=_STATUS_STYLE[check.verdict],
            )
        blocks += ["  Open relay test (no DATA is ever sent)", table]
    if host.transcript:
        blocks.append("  Transcript")
        for entry in host.transcript:
            marker = f"{entry.direction}:" if entry.direction != "*" else "* "
            style = {"C": "cyan", "S": "", "*": "dim"}[entry.direction]
            blocks.append(Text(f"    {entry.seconds:7.3f}  {marker} {entry.text}", style=style))
    return blocks


def _loop_blocks(report: Report) -> list[_Block]:
    loop = report.loop
    assert loop is not None
    blocks: list[_Block] = ["", Text("Delivery report", style="bold")]
    if loop.outcome == "no-report":
        blocks.append(f"  none reached {loop.mailbox} within {loop.waited:g} s")
        return blocks
    blocks.append(f"  {loop.outcome} after {loop.waited:g} s (report in {loop.mailbox})")
    for label, value in (
        ("recipient", loop.recipient),
        ("status", loop.status),
        ("remote MTA", loop.remote_mta),
        ("diagnostic", loop.diagnostic),
        ("file", loop.report_file),
    ):
        if value:
            blocks.append(f"  {label}: {value}")
    return blocks


def _finding_blocks(item: Finding) -> list[_Block]:
    style = _STATUS_STYLE[item.severity]
    return [
        Text(_fill(item.title, f"  {item.severity.upper()}  "), style=style),
        _fill(item.explanation, _INDENT),
        _fill(f"Next: {item.next_steps}", _INDENT),
    ]


_INDENT = " " * 8
_WIDTH = 100


def _fill(text: str, first: str) -> str:
    """Prose wrapped under its own indent; words (paths, replies) are never cut."""
    return textwrap.fill(
        text,
        _WIDTH,
        initial_indent=first,
        subsequent_indent=_INDENT,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _rich_table(table: _Table) -> Table:
    rich = Table(box=box.SIMPLE, show_header=any(table.columns), padding=(0, 1))
    for column in table.columns:
        rich.add_column(column)
    for row, style in zip(table.rows, table.styles, strict=True):
        rich.add_row(*(Text(cell) for cell in row), style=style)
    return rich


def _plain_table(table: _Table) -> str:
    widths = [len(column) for column in table.columns]
    for row in table.rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in table.rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("    " + "  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n" if lines else ""
