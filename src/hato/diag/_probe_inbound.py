"""What a message that reached a test address says about the system that sent it.

``hato test --receive`` makes an address (``_probe_store``); the server accepts mail for it
at RCPT, and :class:`InboundProbe`, a message filter, analyses each message and discards
it (``Verdict.discard``: ``250``, stored nowhere). The analysis is plain data (JSON in the
address's record), in the words of the diagnosis catalog:

- the SMTP session: client address and name, HELO, TLS version and cipher, AUTH, when the
  transaction began and how long until the end of the data (the flight recorder's lines,
  read when the analysis is shown, add each command's timing);
- the client's forward-confirmed reverse DNS and the ``[policy]`` blocklists it is on;
- SPF, DKIM, DMARC and ARC as ``hato.mailauth`` finds them (in a thread, through MailDns);
- each ``Received:`` hop with the delay since the one before;
- header problems: no ``Date:``, no ``Message-ID:``, no single ``From:``, a ``From:``
  domain that neither the DKIM ``d=`` nor the SPF domain aligns with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import itertools
import re
import time
from collections.abc import Sequence
from typing import Any, ClassVar, TextIO

from .. import mailauth
from ..events import printable
from ..mailauth import TxtResolver
from ..pipeline import ACCEPT, Message, Stage, Verdict
from ..pipeline._mailauth import header_domain
from ..spool import Envelope, Origin
from ._dns_records import _check
from ._probe_store import ProbeStore, split_probe
from ._report import Check, Finding
from ._self import dnsbl_check, reverse_dns_check

__all__ = ["InboundProbe", "analyse", "render_analysis", "session_timings"]

# What the analysis finds, in the catalog's three parts (title, meaning, what to check).
_FINDINGS: dict[str, tuple[str, str, str, str]] = {
    "probe-no-tls": (
        "warn",
        "the message came without TLS",
        "The sending server did not use STARTTLS, so the message crossed the network in the "
        "clear; receivers that require TLS would refuse it, and anyone on the path could "
        "read it.",
        'Turn on opportunistic TLS in the sending server (Hato: relay.tls = "may" or '
        "stricter; Postfix: smtp_tls_security_level = may).",
    ),
    "probe-helo-mismatch": (
        "warn",
        "{address} is {name} in DNS, but the client said HELO {helo}",
        "Receivers compare the HELO name with the address's confirmed name; a mismatch is a "
        "common spam sign and costs reputation at strict receivers.",
        "Make the sending server say HELO {name}, or set the PTR of {address} to {helo} "
        "(with an A/AAAA record of {helo} pointing back).",
    ),
    "probe-spf": (
        "{severity}",
        "SPF for {domain}: {result}{detail}",
        "{meaning}",
        "Publish (or fix) the TXT record of {domain} so that it authorizes {address}, e.g. "
        "v=spf1 ip4:{address} -all, or include your provider's record.",
    ),
    "probe-dkim-none": (
        "warn",
        "the message has no DKIM signature",
        "Without a signature nothing ties the message to its From domain but SPF, which "
        "breaks as soon as the message is forwarded; DMARC then fails.",
        "Sign outgoing mail with a key of the From domain (Hato: hato dkim add DOMAIN, then "
        "publish the record it prints).",
    ),
    "probe-dkim-fail": (
        "fail",
        "DKIM signature of {domain} (s={selector}) did not verify: {result}{detail}",
        "Receivers ignore a signature that does not verify; if it was the only one, DMARC "
        "can rely only on SPF.",
        "Check that the key published at {selector}._domainkey.{domain} matches the signing "
        "key, and that nothing after signing (a footer, a list manager) changes the message.",
    ),
    "probe-dmarc": (
        "{severity}",
        "DMARC for {domain}: {result}{detail}",
        "{meaning}",
        "Make the From domain align: sign with a key of {domain} (DKIM d={domain}) or send "
        "with a MAIL FROM in {domain} that SPF authorizes; publish _dmarc.{domain} if there "
        "is none.",
    ),
    "probe-arc-fail": (
        "warn",
        "the ARC chain does not validate{detail}",
        "A forwarder's ARC set is broken; receivers will not trust what it vouched for.",
        "Check the forwarding system's ARC sealing.",
    ),
    "probe-no-date": (
        "warn",
        "the message has no Date: field",
        "RFC 5322 requires one; many filters score a message without it as spam.",
        "Have the sending program (or the submission server) add Date:.",
    ),
    "probe-no-message-id": (
        "warn",
        "the message has no Message-ID: field",
        "Replies, threading and duplicate detection rely on it; filters score its absence.",
        "Have the sending program (or the submission server) add Message-ID:.",
    ),
    "probe-no-from": (
        "fail",
        "the message has no single From: address",
        "RFC 5322 requires a From: field; DMARC cannot be evaluated without exactly one "
        "author domain, and large receivers refuse such mail.",
        "Give the message one From: address.",
    ),
    "probe-unaligned": (
        "warn",
        "the From: domain {domain} aligns with neither DKIM nor SPF",
        "Neither a DKIM d= ({dkim}) nor the SPF domain ({spf}) is in {domain}'s "
        "organizational domain, so DMARC fails whatever else passes.",
        "Sign with a key of {domain}, or send with a MAIL FROM in {domain}.",
    ),
    "probe-hop-delay": (
        "warn",
        "{delay} between {before} and {after}",
        "The message waited at a hop: a queue, a retry after a temporary failure, or clocks "
        "that disagree.",
        "Look at the queue and the logs of {before} for this message.",
    ),
}
# A hop slower than this is worth a word.
SLOW_HOP = 300.0
_SPF_MEANING = {
    "pass": "The domain authorizes the client's address.",
    "fail": "The domain says the client may not send its mail; receivers refuse or junk it.",
    "softfail": "The domain says the client is probably not allowed; receivers score it down.",
    "neutral": "The domain's record says nothing about the client.",
    "none": "The domain publishes no SPF record, so nothing vouches for the client.",
    "temperror": "DNS gave no usable answer; receivers may defer the message.",
    "permerror": "The domain's SPF record is broken; receivers treat it as a failure.",
}
_DMARC_MEANING = {
    "pass": "The From domain is aligned with a passing SPF or DKIM result.",
    "fail": "Neither SPF nor DKIM passed aligned with the From domain; the domain's policy "
    "(p=) tells receivers what to do with such mail.",
    "none": "The From domain publishes no DMARC record.",
    "temperror": "DNS gave no usable answer for the DMARC record.",
    "permerror": "The DMARC record cannot be parsed.",
}


def _finding(code: str, **values: object) -> Finding:
    severity, title, explanation, next_steps = _FINDINGS[code]

    class _Blank(dict[str, object]):
        def __missing__(self, key: str) -> str:
            return ""

    filled = _Blank(values)
    return Finding(
        severity=severity.format_map(filled),  # type: ignore[arg-type]
        code=code,
        title=title.format_map(filled),
        explanation=explanation.format_map(filled),
        next_steps=next_steps.format_map(filled),
    )


# -- the analysis, in a thread ---------------------------------------------------------------


def analyse(
    dns: TxtResolver,
    message: Message,
    data: bytes,
    *,
    hostname: str,
    zones: Sequence[str] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """Everything the message and its session say, as JSON-ready data."""
    now = time.time() if now is None else now
    envelope = message.envelope
    header = message.header
    checks: list[Check] = [_session_check(envelope)]
    if envelope.client_ip:
        checks.append(_reverse_dns(dns, envelope.client_ip, envelope.helo))
        checks += [dnsbl_check(dns, envelope.client_ip, zone) for zone in zones]
    spf = message.annotations.get("spf")
    if not isinstance(spf, mailauth.SpfResult):
        spf = mailauth.check_spf(dns, envelope.client_ip, envelope.reverse_path, envelope.helo)
    dkim = mailauth.verify_dkim(dns, data)
    arc = mailauth.verify_arc(dns, data)
    dmarc = mailauth.check_dmarc(dns, header.get("From"), spf, dkim)
    checks.append(_spf_check(spf, envelope.client_ip))
    checks += _dkim_checks(dkim)
    checks.append(_dmarc_check(dmarc))
    if arc.result != "none":
        items = [_finding("probe-arc-fail", detail=f": {arc.reason}" if arc.reason else "")]
        checks.append(
            _check(
                "arc",
                f"i={arc.instance}",
                items if arc.result == "fail" else [],
                facts=dataclasses.asdict(arc),
                summary=f"{arc.result} ({', '.join(arc.sealers)})",
            )
        )
    hops = received_hops(header.fields, hostname=hostname, arrival=now)
    checks.append(_hops_check(hops))
    checks.append(_header_check(header.get, header.fields, spf, dkim))
    return {
        "queue_id": message.queue_id,
        "analysed": now,
        "envelope": {
            "sender": envelope.reverse_path,
            "recipients": [r.address for r in envelope.recipients],
            "size": message.size,
            "subject": _text(header.get("Subject")),
            "message_id": _text(header.get("Message-ID")),
        },
        "session": _session_facts(envelope, now),
        "hops": hops,
        "checks": [dataclasses.asdict(check) for check in checks],
    }


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")[:300]


def _session_facts(envelope: Envelope, now: float) -> dict[str, Any]:
    version, _, cipher = (envelope.tls or "").partition(" ")
    return {
        "id": envelope.session_id,
        "client_ip": envelope.client_ip,
        "client_name": envelope.client_name,
        "helo": envelope.helo,
        "protocol": envelope.protocol,
        "tls_version": version or None,
        "tls_cipher": cipher or None,
        "auth": envelope.auth,
        "transaction_began": envelope.arrival,
        "data_ended": now,
        "seconds": round(now - envelope.arrival, 3) if envelope.arrival else None,
    }


def _session_check(envelope: Envelope) -> Check:
    name = f" ({envelope.client_name})" if envelope.client_name else ""
    tls = envelope.tls or "no TLS"
    summary = f"[{envelope.client_ip}]{name} HELO {envelope.helo or '(none)'}, {tls}"
    items = [] if envelope.tls else [_finding("probe-no-tls")]
    return _check("session", envelope.client_ip or "?", items, summary=summary)


def _reverse_dns(dns: TxtResolver, address: str, helo: str) -> Check:
    check = reverse_dns_check(dns, address, helo)
    # The catalog's entry speaks of this server's own HELO; here it is the client's.
    items = [
        _finding(
            "probe-helo-mismatch", address=address, name=check.facts.get("confirmed"), helo=helo
        )
        if item.code == "rdns-helo-mismatch"
        else item
        for item in check.findings
    ]
    return dataclasses.replace(check, findings=items)


def _spf_check(spf: mailauth.SpfResult, address: str) -> Check:
    severity = {"pass": None, "fail": "fail", "permerror": "fail"}.get(spf.result, "warn")
    detail = f" ({spf.explanation})" if spf.explanation else ""
    items = []
    if severity is not None:
        items.append(
            _finding(
                "probe-spf",
                severity=severity,
                domain=spf.domain or "(none)",
                result=spf.result,
                detail=detail,
                meaning=_SPF_MEANING.get(spf.result, ""),
                address=address,
            )
        )
    summary = f"{spf.result}: {spf.identity} {spf.sender}"
    return _check(
        "spf", spf.domain or "(none)", items, facts=dataclasses.asdict(spf), summary=summary
    )


def _dkim_checks(results: Sequence[mailauth.DkimResult]) -> list[Check]:
    if not results:
        return [_check("dkim", "(none)", [_finding("probe-dkim-none")], summary="no signature")]
    checks = []
    for found in results:
        items = []
        if found.result != "pass":
            detail = f" ({found.reason})" if found.reason else ""
            items.append(
                _finding(
                    "probe-dkim-fail",
                    domain=found.domain,
                    selector=found.selector,
                    result=found.result,
                    detail=detail,
                )
            )
        summary = f"{found.result}: d={found.domain} s={found.selector} {found.algorithm}"
        checks.append(
            _check(
                "dkim",
                f"{found.selector}._domainkey.{found.domain}",
                items,
                facts=dataclasses.asdict(found),
                summary=summary.strip(),
            )
        )
    return checks


def _dmarc_check(dmarc: mailauth.DmarcResult) -> Check:
    items = []
    if dmarc.result != "pass" and dmarc.from_domain:
        detail = f" (p={dmarc.published})" if dmarc.published else ""
        items.append(
            _finding(
                "probe-dmarc",
                severity="fail" if dmarc.result == "fail" else "warn",
                domain=dmarc.from_domain,
                result=dmarc.result,
                detail=detail,
                meaning=_DMARC_MEANING.get(dmarc.result, dmarc.reason),
            )
        )
    summary = f"{dmarc.result}" + (f" (policy {dmarc.policy})" if dmarc.published else "")
    return _check(
        "dmarc",
        dmarc.from_domain or "(no From domain)",
        items,
        facts=dataclasses.asdict(dmarc),
        summary=summary,
    )


def _header_check(
    get: Any,
    fields: Sequence[tuple[str, bytes]],
    spf: mailauth.SpfResult,
    dkim: Sequence[mailauth.DkimResult],
) -> Check:
    items = []
    if get("Date") is None:
        items.append(_finding("probe-no-date"))
    if get("Message-ID") is None:
        items.append(_finding("probe-no-message-id"))
    froms = [body for name, body in fields if name.lower() == "from"]
    domain = header_domain(froms[0]) if len(froms) == 1 else None
    if domain is None:
        items.append(_finding("probe-no-from"))
    else:
        org = mailauth.organizational_domain(domain)
        signed = [d.domain.lower() for d in dkim if d.domain]
        aligned = [d for d in signed if mailauth.organizational_domain(d) == org]
        spf_domain = (spf.domain or "").lower()
        spf_aligned = bool(spf_domain) and mailauth.organizational_domain(spf_domain) == org
        if not aligned and not spf_aligned:
            items.append(
                _finding(
                    "probe-unaligned",
                    domain=domain,
                    dkim=", ".join(signed) or "no signature",
                    spf=spf_domain or "none",
                )
            )
    summary = f"From {domain}" if domain else "no single From address"
    return _check("header", "header section", items, facts={"from_domain": domain}, summary=summary)


# -- Received hops ---------------------------------------------------------------------------

_FROM_RE = re.compile(r"\bfrom\s+(\S+)", re.IGNORECASE)
_BY_RE = re.compile(r"\bby\s+(\S+)", re.IGNORECASE)
_WITH_RE = re.compile(r"\bwith\s+(\S+)", re.IGNORECASE)


def received_hops(
    fields: Sequence[tuple[str, bytes]], *, hostname: str, arrival: float
) -> list[dict[str, Any]]:
    """Each hop, oldest first: who handed the message to whom, when, and the wait since
    the hop before. The last hop is the one into this server, at ``arrival``."""
    hops: list[dict[str, Any]] = []
    for name, body in reversed(fields):
        if name.lower() != "received":
            continue
        text = body.decode("utf-8", "replace")
        routing, _, stamp = text.rpartition(";")
        when = None
        try:
            parsed = email.utils.parsedate_to_datetime(stamp.strip())
            when = parsed.timestamp() if parsed.tzinfo is not None else None
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
        hops.append(
            {
                "from": _match(_FROM_RE, routing or text),
                "by": _match(_BY_RE, routing or text),
                "with": _match(_WITH_RE, routing or text),
                "date": when,
                "text": text[:500],
            }
        )
    hops.append(
        {"from": None, "by": hostname, "with": None, "date": arrival, "text": "(this server)"}
    )
    previous = None
    for hop in hops:
        date = hop["date"]
        hop["delay"] = (
            round(date - previous, 3) if date is not None and previous is not None else None
        )
        previous = date if date is not None else previous
    return hops


def _match(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(1).rstrip(";") if found else None


def _hops_check(hops: list[dict[str, Any]]) -> Check:
    items = []
    for before, after in itertools.pairwise(hops):
        delay = after.get("delay")
        if delay is not None and delay > SLOW_HOP:
            items.append(
                _finding(
                    "probe-hop-delay",
                    delay=_seconds(delay),
                    before=before.get("by") or "?",
                    after=after.get("by") or "?",
                )
            )
    delays = [hop["delay"] for hop in hops if hop.get("delay") is not None]
    summary = f"{len(hops)} hop{'s' * (len(hops) != 1)}"
    if delays:
        summary += f", {_seconds(sum(delays))} in transit"
    return _check("received", "Received fields", items, facts={"hops": len(hops)}, summary=summary)


def _seconds(value: float) -> str:
    if abs(value) < 120:
        return f"{value:.1f} s"
    if abs(value) < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


# -- the session's lines, from the flight recorder ------------------------------------------


def session_timings(session: dict[str, Any]) -> list[dict[str, Any]]:
    """Each command the client sent, when (seconds since it connected) and how long the
    reply took, from a ``TraceStore.session`` story."""
    start = session.get("ts") or 0.0
    lines = session.get("transcript") or []
    timings: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    for line in lines:
        if line.get("direction") == "C":
            pending = {
                "command": str(line.get("text", ""))[:80],
                "at": round(line["ts"] - start, 4),
            }
            timings.append(pending)
        elif line.get("direction") == "S" and pending is not None and "took" not in pending:
            pending["took"] = round(line["ts"] - start - pending["at"], 4)
            pending["reply"] = str(line.get("text", ""))[:120]
    banner = next((line for line in lines if line.get("direction") == "S"), None)
    if banner is not None:
        timings.insert(
            0,
            {
                "command": "(connect)",
                "at": 0.0,
                "took": round(banner["ts"] - start, 4),
                "reply": str(banner.get("text", ""))[:120],
            },
        )
    return timings


# -- the filter ------------------------------------------------------------------------------


class InboundProbe:
    """Analyses a message to a live test address, keeps the analysis, discards the message.

    It runs first among the end filters (before the checks, which might refuse it), for
    mail from clients and submission alike. Messages to no test address pass untouched
    (a string test per recipient, no I/O)."""

    name: ClassVar[str] = "test-address"
    stages: ClassVar[Stage] = Stage.END

    def __init__(
        self,
        *,
        store: ProbeStore,
        dns: mailauth.MailDns,
        hostname: str,
        zones: Sequence[str] = (),
    ) -> None:
        self.store, self.dns, self.hostname, self.zones = store, dns, hostname, tuple(zones)

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        recipients = [r.address for r in message.envelope.recipients]
        if not any(split_probe(address) is not None for address in recipients):
            return ACCEPT
        return await asyncio.to_thread(self._take, message, recipients)

    def _take(self, message: Message, recipients: list[str]) -> Verdict:
        probes = [address for address in recipients if self.store.check(address)]
        if not probes:
            return ACCEPT  # expired since RCPT: delivered as the router says now
        analysis = analyse(
            self.dns.for_message(),
            message,
            message.read_all(),
            hostname=self.hostname,
            zones=self.zones,
        )
        for address in probes:
            self.store.record(address, {"address": address, **analysis})
        if len(probes) < len(recipients):
            return Verdict.accept(reason=f"analysed for {', '.join(probes)}")
        return Verdict.discard(f"test address {', '.join(probes)}: analysed, not delivered")


# -- showing it ------------------------------------------------------------------------------


def render_analysis(record: dict[str, Any], out: TextIO) -> None:
    """An address's record in plain text: each analysis, its checks and their findings."""
    write = out.write
    write(f"Test address {record['address']}\n")
    expires = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(record["expires"]))
    live = "takes mail until" if record["expires"] > time.time() else "expired"
    write(f"  {live} {expires}\n")
    analyses = record.get("analyses") or []
    if not analyses:
        write("  no message has arrived yet\n")
        return
    for analysis in analyses:
        write("\n")
        _render_one(analysis, write)


def _render_one(analysis: dict[str, Any], write: Any) -> None:
    envelope, session = analysis.get("envelope", {}), analysis.get("session", {})
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(analysis.get("analysed", 0)))
    write(f"Message {analysis.get('queue_id')} at {when}\n")
    write(f"  from <{printable(envelope.get('sender') or '')}>, {envelope.get('size')} octets")
    if envelope.get("subject"):
        write(f", Subject: {printable(envelope['subject'])}")
    write("\n\nSession\n")
    write(
        f"  client      [{session.get('client_ip')}]"
        + (f" {printable(session['client_name'])}" if session.get("client_name") else "")
        + "\n"
    )
    write(f"  HELO        {printable(session.get('helo') or '(none)')}\n")
    tls = session.get("tls_version")
    write(f"  TLS         {tls} {session.get('tls_cipher')}\n" if tls else "  TLS         none\n")
    write(f"  protocol    {session.get('protocol')}\n")
    if session.get("auth"):
        write(f"  AUTH        {printable(session['auth'])}\n")
    if session.get("seconds") is not None:
        write(f"  MAIL to end of data: {session['seconds']:.3f} s\n")
    for timing in analysis.get("timings") or []:
        took = timing.get("took")
        took_text = f"{took * 1000:8.1f} ms" if took is not None else "        -"
        write(f"    {timing['at']:8.3f} s {took_text}  {printable(timing['command'])}\n")
    write("\nHops (oldest first)\n")
    for hop in analysis.get("hops") or []:
        delay = hop.get("delay")
        delay_text = f"+{_seconds(delay)}" if delay is not None else "?"
        source = printable(hop.get("from") or "-")
        write(
            f"  {delay_text:>10}  {source} -> {printable(hop.get('by') or '?')}"
            + (f" with {printable(hop['with'])}" if hop.get("with") else "")
            + "\n"
        )
    write("\nChecks\n")
    findings: list[dict[str, Any]] = []
    for check in analysis.get("checks") or []:
        mark = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}.get(
            check.get("status"), check.get("status")
        )
        write(f"  {mark:<5} {check.get('name'):<12} {printable(str(check.get('summary')))}\n")
        findings += check.get("findings") or []
    if findings:
        write("\nFindings\n")
        for item in findings:
            write(f"  {item['severity'].upper()}: {printable(item['title'])}\n")
            write(f"    {item['explanation']}\n")
            write(f"    Next: {item['next_steps']}\n")
    else:
        write("\nNo problems found.\n")
