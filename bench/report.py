"""Tables from the runner's records: medians of the runs that passed, min-max, x Postfix."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import mailauth

BASELINE = "postfix"

# Issue 7's targets on end-to-end rate: (what, least ratio to Postfix, which workloads).
RATE_TARGETS: list[tuple[str, float, Callable[[dict[str, Any]], bool]]] = [
    (
        "end to end, 10 and 50 sessions, 1 KB: at least 3x Postfix",
        3.0,
        lambda w: w["size"] == 1024 and w["sessions"] in (10, 50),
    ),
    (
        "1 session, new connection per message: at least 1.5x Postfix",
        1.5,
        lambda w: w["size"] == 1024 and w["sessions"] == 1 and not w["persistent"],
    ),
    ("100 KB messages: at least 2x Postfix", 2.0, lambda w: w["size"] == 102400),
]


def line(record: dict[str, Any]) -> str:
    head = f"{record['workload']:<18} {record['server']:<17} rep {record['rep']}"
    if not record["ok"]:
        return f"{head}  FAILED: {record['error']}"
    latency = ""
    if record.get("latency_p50_ms") is not None:
        latency = f", p50/p99 {record['latency_p50_ms']:.1f}/{record['latency_p99_ms']:.1f} ms"
    return (
        f"{head}  accepted {record['accepted_per_s']:7.0f}/s  end to end "
        f"{record['end_to_end_per_s']:7.0f}/s  CPU {record['cpu_s_per_1000']:.2f} s/1000"
        f"  RSS {record['peak_rss_mb']:.0f} MB  PSS {record['peak_pss_mb']:.0f} MB{latency}"
    )


class Summary:
    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.servers: list[str] = results["servers"] + list(results["unavailable"])
        self.workloads: list[dict[str, Any]] = results["workloads"]
        self.cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.failed: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in results["runs"]:
            key = (record["workload"], record["server"])
            (self.cells if record["ok"] else self.failed).setdefault(key, []).append(record)

    def values(self, workload: str, server: str, field: str) -> list[float]:
        return [
            r[field] for r in self.cells.get((workload, server), []) if r.get(field) is not None
        ]

    def median(self, workload: str, server: str, field: str) -> float | None:
        values = self.values(workload, server, field)
        return statistics.median(values) if values else None

    def ratio(self, workload: str, server: str, field: str) -> float | None:
        mine, base = self.median(workload, server, field), self.median(workload, BASELINE, field)
        if mine is None or not base:
            return None
        return mine / base

    def cell(
        self,
        workload: str,
        server: str,
        field: str,
        fmt: Callable[[float], str],
        ratio: bool = False,
        spread: bool = True,
    ) -> str:
        if server in self.results["unavailable"]:
            return "n/a"
        failed = len(self.failed.get((workload, server), []))
        values = self.values(workload, server, field)
        if not values:
            return f"FAILED x{failed}" if failed else "-"
        text = fmt(statistics.median(values))
        if spread and len(values) > 1:
            text += f" ({fmt(min(values))}-{fmt(max(values))})"
        if ratio and server != BASELINE and (r := self.ratio(workload, server, field)):
            text += f" **{r:.2f}x**"
        if failed:
            text += f" FAILED x{failed}"
        return text

    def table(
        self,
        field: str,
        fmt: Callable[[float], str],
        *,
        ratio: bool = False,
        spread: bool = True,
        only: Callable[[dict[str, Any]], bool] = lambda w: True,
    ) -> list[str]:
        rows = [
            "| workload | " + " | ".join(self.servers) + " |",
            "|---|" + "---|" * len(self.servers),
        ]
        for workload in self.workloads:
            if not only(workload):
                continue
            cells = [
                self.cell(workload["name"], s, field, fmt, ratio, spread) for s in self.servers
            ]
            rows.append(f"| {workload['description']} | " + " | ".join(cells) + " |")
        return rows


def rate(value: float) -> str:
    return f"{value:,.0f}"


def one_decimal(value: float) -> str:
    return f"{value:.1f}"


def two_decimals(value: float) -> str:
    return f"{value:.2f}"


def targets(summary: Summary) -> list[str]:
    rows = ["| target | measured (Hato / Postfix, medians) | met |", "|---|---|---|"]
    names = [w["name"] for w in summary.workloads]
    for text, least, belongs in RATE_TARGETS:
        found = []
        for workload in summary.workloads:
            r = summary.ratio(workload["name"], "hato", "end_to_end_per_s")
            if belongs(workload) and r is not None:
                found.append((workload["name"], r))
        if found:
            shown = ", ".join(f"{name} {r:.2f}x" for name, r in found)
            met = "yes" if all(r >= least for _, r in found) else "no"
            rows.append(f"| {text} | {shown} | {met} |")
        else:
            rows.append(f"| {text} | not measured | - |")
    cpu = [(name, r) for name in names if (r := summary.ratio(name, "hato", "cpu_s_per_1000"))]
    if cpu:
        shown = ", ".join(f"{name} {r:.2f}x" for name, r in cpu)
        met = "yes" if all(r <= 0.5 for _, r in cpu) else "no"
        rows.append(f"| CPU per 1,000 messages: at most half of Postfix's | {shown} | {met} |")
    busy = [
        (name, value)
        for name in names
        if "-50-" in name and (value := summary.median(name, "hato", "peak_rss_mb"))
    ]
    if busy:
        shown = ", ".join(f"{name} {value:.0f} MB" for name, value in busy)
        met = "yes" if all(value < 80 for _, value in busy) else "no"
        rows.append(f"| under 80 MB RSS at 50 busy sessions | {shown} | {met} |")
    scale = summary.results.get("scale")
    if scale and "error" not in scale:
        rss = scale["during"]["rss_mb"]
        ok = scale["held"] == scale["requested"] and "error" not in scale["probe"]
        met = "yes" if ok and rss < 400 else "no"
        rows.append(
            f"| under 400 MB RSS with {scale['requested']:,} idle connections | "
            f"{rss:.0f} MB with {scale['held']:,} held | {met} |"
        )
    hato_runs = [r for r in summary.results["runs"] if r["server"] == "hato"]
    failed = [r for r in hato_runs if not r["ok"]]
    rows.append(
        f"| no lost or duplicated message in any run | {len(hato_runs) - len(failed)} of "
        f"{len(hato_runs)} Hato runs verified | {'yes' if not failed else 'no'} |"
    )
    return rows


def markdown(results: dict[str, Any]) -> str:
    summary = Summary(results)
    m = results["machine"]
    out = [
        f"# Benchmark {results['date'][:10]} on {m['host']}",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux "
        f"{m['kernel']}, {m['filesystem']}; load generators on the same cores.",
        f"- Software: Hato {m['hato']} (Python {m['python']}), Postfix {m['postfix']}, "
        f"Haraka {m['haraka']} (Node {m['node']}), aiosmtpd {m['aiosmtpd']}.",
        f"- Command: `{results['command']}`; {results['reps']} repetition(s), servers "
        f"round-robin within each workload; took {results['duration_s']} s.",
        "- Cells: median (min-max) of the runs that passed; **Nx** is the ratio to Postfix's "
        "median in this run. FAILED xN: runs whose Maildir check failed (left out).",
    ]
    for name, why in results["unavailable"].items():
        out.append(f"- {name}: not measured ({why})")
    if not results["runs"] and results.get("mailauth"):  # --mailauth only
        return "\n".join([*out, "", *mailauth.markdown(results["mailauth"])])
    out += [
        "",
        "## End to end, messages/s (accepted and stored in the Maildir, fsync included)",
        "",
        "The ceilings (aiosmtpd-discard, smtp-sink) store nothing: their figure is the "
        "accepted rate.",
        "",
        *summary.table("end_to_end_per_s", rate, ratio=True),
        "",
        "## Accepted, messages/s (every 250 received)",
        "",
        *summary.table("accepted_per_s", rate, ratio=True),
        "",
        "## Latency from the end of DATA to the 250, p50 / p99 in ms (pipelining generator)",
        "",
        *summary.table(
            "latency_p50_ms", one_decimal, spread=False, only=lambda w: w["tool"] == "loadgen"
        )[:2],
    ]
    for workload in results["workloads"]:
        if workload["tool"] != "loadgen":
            continue
        cells = []
        for server in summary.servers:
            p50 = summary.median(workload["name"], server, "latency_p50_ms")
            p99 = summary.median(workload["name"], server, "latency_p99_ms")
            cells.append("-" if p50 is None or p99 is None else f"{p50:.1f} / {p99:.1f}")
        out.append(f"| {workload['description']} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Server CPU seconds per 1,000 messages (whole process tree)",
        "",
        *summary.table("cpu_s_per_1000", two_decimals, ratio=True),
        "",
        "## Peak memory, MB: RSS summed over the server's processes",
        "",
        *summary.table("peak_rss_mb", rate, spread=False),
        "",
        "## Peak memory, MB: PSS summed (shared pages counted once)",
        "",
        *summary.table("peak_pss_mb", rate, spread=False),
        "",
    ]
    scale = results.get("scale")
    if scale and "error" in scale:
        out += ["## Scale: idle connections held open against Hato", "", scale["error"], ""]
    elif scale:
        probe = scale["probe"]
        probe_text = (
            f"error: {probe['error']}"
            if "error" in probe
            else f"banner after {probe['banner_ms']:.1f} ms, message accepted after "
            f"{probe['message_ms']:.1f} ms, stored: {probe.get('stored', False)}"
        )
        grown = scale["during"]["rss_mb"] - scale["before"]["rss_mb"]
        per_connection = grown * 1024 / max(1, scale["held"])
        out += [
            "## Scale: idle connections held open against Hato",
            "",
            f"- {scale['held']:,} of {scale['requested']:,} connections held "
            f"(opened in {scale['open_seconds']:.1f} s, {scale['failed']} failed"
            + (f": {'; '.join(scale['failures'])}" if scale["failures"] else "")
            + ")",
            f"- A new client meanwhile: {probe_text}",
            f"- Hato's memory: RSS {scale['before']['rss_mb']:.0f} MB before, "
            f"{scale['during']['rss_mb']:.0f} MB with them open "
            f"(PSS {scale['during']['pss_mb']:.0f} MB); about "
            f"{per_connection:.1f} KB per connection",
            "",
        ]
    if results.get("mailauth"):
        out += mailauth.markdown(results["mailauth"])
    if "hato" in results["servers"] and BASELINE in results["servers"]:
        out += ["## Issue 7's targets", "", *targets(summary), ""]
    failures = [r for r in results["runs"] if not r["ok"]]
    if failures:
        out += ["## Failed runs", ""]
        out += [f"- {r['workload']} / {r['server']} rep {r['rep']}: {r['error']}" for r in failures]
        out.append("")
    return "\n".join(out)
