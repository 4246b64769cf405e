"""Hato side by side with Postfix, Haraka and aiosmtpd: ``make bench``.

Starts every server once (private instances on loopback ports, see ``servers.py``), then
for each repetition, each workload and each server in turn (round-robin, the order rotated
every repetition) sends the workload's messages and measures:

- accepted msgs/s: messages / time until the generator had every ``250``;
- end to end msgs/s: messages / time until the last file was in the Maildir (its ctime,
  and never before the last ``250``);
- p50/p99 latency from the end of DATA to the ``250`` (``loadgen.py`` workloads only);
- server CPU seconds per 1,000 messages (``/proc``, the whole process tree, exited
  children included, read after the queue is empty);
- peak RSS and PSS summed over the server's processes (sampled every 0.25 s).

Then ``mailauth.py``: Hato plain, DKIM-signing and checking inbound mail, side by side
(3 repetitions unless ``--reps``, also with ``--quick``; the same message factor).

Every run checks its result: each message carries a number (smtp-source ``-N`` puts it in
the recipient, ``loadgen.py`` in ``X-Bench-Token``), and every number from 1 to M must be
in the Maildir exactly once, else the run is marked failed and left out of the medians.
The ceilings (aiosmtpd-discard, smtp-sink) store nothing and are checked only by their
``250``s. Then the scale test holds 10,000 idle connections against Hato.

Results go to ``bench/results/<date>-<host>.md`` and ``.json``.

    make bench                                       # everything, 3 repetitions
    make bench ARGS="--quick"                        # 1 repetition, 1/10 of the messages
    make bench ARGS="--servers hato,postfix --workloads src-10-new,pipe-10-keep --reps 1"
    make bench ARGS="--quick --mailauth only"        # the mail authentication costs alone
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mailauth
import procstat
import report
import scale
from servers import RECIPIENT, SERVERS, Hato, Server, Unavailable, find_command

BENCH = Path(__file__).resolve().parent
TOKEN = re.compile(rb"X-Bench-Token: (\d+)|[<\s](\d+)user@bench\.test")
HEAD = 16384  # the token is in the header section: read this much first
STALL_TIMEOUT = 60.0  # no new Maildir file for this long ends the wait: the run failed
SETTLE = 0.5  # after the last file, before reading CPU: let the queue finish its books


@dataclass(frozen=True)
class Workload:
    name: str
    tool: str  # "smtp-source" or "loadgen"
    size: int  # payload bytes
    sessions: int
    persistent: bool
    messages: int

    def describe(self) -> str:
        size = f"{self.size // 1024} KB"
        conn = "persistent connections" if self.persistent else "new connection per message"
        if self.persistent and self.sessions == 1:
            conn = "one connection"
        tool = "smtp-source" if self.tool == "smtp-source" else "pipelining"
        plural = "s" if self.sessions > 1 else ""
        return f"{tool}, {size}, {self.sessions} session{plural}, {conn}"


WORKLOADS = [
    Workload("src-1-new", "smtp-source", 1024, 1, False, 500),
    Workload("src-10-new", "smtp-source", 1024, 10, False, 1000),
    Workload("src-50-new", "smtp-source", 1024, 50, False, 1000),
    Workload("src-1-keep", "smtp-source", 1024, 1, True, 500),
    Workload("src-10-keep", "smtp-source", 1024, 10, True, 1000),
    Workload("src-10-new-100k", "smtp-source", 102400, 10, False, 300),
    Workload("pipe-1-keep", "loadgen", 1024, 1, True, 500),
    Workload("pipe-10-keep", "loadgen", 1024, 10, True, 1000),
    Workload("pipe-50-keep", "loadgen", 1024, 50, True, 1000),
    Workload("pipe-50-new", "loadgen", 1024, 50, False, 1000),
    Workload("pipe-10-keep-100k", "loadgen", 102400, 10, True, 300),
]


class RunFailed(Exception):
    pass


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, soft), max(wanted, hard)))
        return max(wanted, soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def smtp_source() -> str:
    found = find_command("smtp-source")
    if found is None:
        raise SystemExit("smtp-source is missing: apt-get install postfix (make bench does)")
    return found


def drive(server: Server, workload: Workload, messages: int, run_id: str) -> dict[str, Any]:
    """Send the workload; return the generator's view (wall-clock start/end, latencies)."""
    if workload.tool == "smtp-source":
        args = [smtp_source(), "-N", "-s", str(workload.sessions), "-m", str(messages)]
        args += ["-l", str(workload.size), "-f", "bench@client.test", "-t", RECIPIENT]
        args += ["-M", "client.test", *(["-d"] if workload.persistent else [])]
        args.append(f"{server.host}:{server.port}")
        start = time.time()
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)
        end = time.time()
        if done.returncode != 0:
            raise RunFailed(f"smtp-source: {(done.stderr or done.stdout).strip()[-300:]}")
        return {"start": start, "end": end, "accepted": messages}
    args = [sys.executable, str(BENCH / "loadgen.py"), "--host", server.host]
    args += ["--port", str(server.port), "--sessions", str(workload.sessions)]
    args += ["--messages", str(messages), "--size", str(workload.size), "--run", run_id]
    args += ["--mode", "persistent" if workload.persistent else "new", "--rcpt", RECIPIENT]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise RunFailed(f"loadgen: {done.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["error_count"] or result["accepted"] != messages:
        raise RunFailed(f"loadgen: {result['accepted']}/{messages} accepted, {result['errors']}")
    return result


def count_files(maildir: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        return sum(1 for _ in os.scandir(maildir / "new"))
    return 0


def wait_stored(maildir: Path, messages: int) -> None:
    last, last_change = -1, time.monotonic()
    while (now := count_files(maildir)) < messages:
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT:
            raise RunFailed(f"only {now} of {messages} messages reached the Maildir")
        time.sleep(0.05)


def verify(maildir: Path, messages: int) -> float:
    """Every number 1..messages exactly once; returns the newest file's ctime (seconds)."""
    seen: Counter[int] = Counter()
    strays = 0
    newest = 0
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(maildir / sub):
                newest = max(newest, entry.stat().st_ctime_ns)
                with open(entry.path, "rb") as file:
                    found = TOKEN.search(file.read(HEAD)) or TOKEN.search(file.read())
                if found is None:
                    strays += 1
                else:
                    seen[int(found.group(1) or found.group(2))] += 1
    missing = [n for n in range(1, messages + 1) if n not in seen]
    doubled = [n for n, times in seen.items() if times > 1]
    foreign = [n for n in seen if not 1 <= n <= messages]
    if missing or doubled or foreign or strays:
        raise RunFailed(
            f"Maildir check: {len(missing)} missing {missing[:5]}, {len(doubled)} duplicated "
            f"{doubled[:5]}, {len(foreign)} unknown numbers, {strays} files without a number"
        )
    return newest / 1e9


def one_run(
    server: Server, workload: Workload, messages: int, rep: int, run_id: str
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "server": server.name,
        "workload": workload.name,
        "rep": rep,
        "messages": messages,
    }
    server.clear()
    cpu_before = procstat.cpu_seconds(server.pid)
    try:
        with procstat.PeakSampler(server.pid) as sampler:
            sent = drive(server, workload, messages, run_id)
            end_to_end = sent["end"]
            if server.maildir is not None:
                wait_stored(server.maildir, messages)
                time.sleep(SETTLE)
        if server.maildir is not None:
            end_to_end = max(end_to_end, verify(server.maildir, messages))
    except (RunFailed, subprocess.TimeoutExpired) as exc:
        record.update(ok=False, error=str(exc))
        return record
    cpu = procstat.cpu_seconds(server.pid) - cpu_before
    record.update(
        ok=True,
        verified=server.maildir is not None,
        accepted_per_s=messages / (sent["end"] - sent["start"]),
        end_to_end_per_s=messages / (end_to_end - sent["start"]),
        latency_p50_ms=sent.get("latency_p50_ms"),
        latency_p99_ms=sent.get("latency_p99_ms"),
        pipelined=sent.get("pipelined"),
        cpu_s_per_1000=cpu * 1000 / messages,
        peak_rss_mb=sampler.peak.rss_bytes / 2**20,
        peak_pss_mb=sampler.peak.pss_bytes / 2**20,
        processes=sampler.peak.processes,
    )
    return record


def scale_test(hato: Server, count: int) -> dict[str, Any]:
    def measure() -> dict[str, Any]:
        memory = procstat.memory(hato.pid)
        return {"rss_mb": memory.rss_bytes / 2**20, "pss_mb": memory.pss_bytes / 2**20}

    hato.clear()
    result = asyncio.run(scale.run(hato.host, hato.port, count, RECIPIENT, measure))
    if hato.maildir is not None and "error" not in result["probe"]:
        try:
            wait_stored(hato.maildir, 1)
            verify(hato.maildir, 1)
            result["probe"]["stored"] = True
        except RunFailed as exc:
            result["probe"]["error"] = str(exc)
    hato.clear()
    return result


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError, ValueError):
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])

    def output(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=BENCH)
            return done.stdout.strip()
        return "?"

    haraka = "?"
    with contextlib.suppress(OSError, ValueError, KeyError):
        package = BENCH / ".cache/haraka/node_modules/Haraka/package.json"
        haraka = json.loads(package.read_text())["version"]
    aiosmtpd = "?"
    with contextlib.suppress(ImportError):
        import aiosmtpd as module

        aiosmtpd = module.__version__
    return {
        "host": socket.gethostname(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hato": output("git", "rev-parse", "--short", "HEAD")
        + (
            " + uncommitted changes in src/"
            if output("git", "status", "--porcelain", "../src")
            else ""
        ),
        "postfix": output("postconf", "-dh", "mail_version"),
        "haraka": haraka,
        "node": output("node", "--version"),
        "aiosmtpd": aiosmtpd,
        "filesystem": output("stat", "-f", "-c", "%T", tempfile.gettempdir()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", help=f"comma-separated; default {','.join(SERVERS)}")
    names = ",".join(w.name for w in WORKLOADS)
    parser.add_argument("--workloads", help=f"comma-separated; default {names}")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; --quick: 1)")
    parser.add_argument("--scale-messages", type=float, help="message counts times this")
    parser.add_argument("--idle", type=int, help="idle connections for the scale test (0: none)")
    parser.add_argument("--quick", action="store_true", help="1 rep, 1/10 of the messages")
    parser.add_argument("--output", type=Path, help="results stem (default bench/results/...)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument(
        "--mailauth",
        choices=["yes", "no", "only"],
        default="yes",
        help="also measure DKIM signing and inbound checks (mailauth.py); only: nothing else",
    )
    parser.add_argument(
        "--hato-option", action="append", default=[], help="-o KEY=VALUE for hato serve"
    )
    args = parser.parse_args()
    Hato.extra_options = args.hato_option
    reps = args.reps or (1 if args.quick else 3)
    factor = args.scale_messages or (0.1 if args.quick else 1.0)
    idle = args.idle if args.idle is not None else (0 if args.quick else 10_000)
    chosen = (args.servers or ",".join(SERVERS)).split(",") if args.mailauth != "only" else []
    if args.mailauth == "only":
        idle = 0
    unknown = [name for name in chosen if name not in SERVERS]
    wanted = (args.workloads or names).split(",")
    workloads = [w for w in WORKLOADS if w.name in wanted]
    if unknown or len(workloads) != len(wanted):
        raise SystemExit(f"unknown server or workload in {chosen} / {wanted}")
    raise_fd_limit(2 * idle + 1024)

    top = Path(tempfile.mkdtemp(prefix="hato-bench-"))
    os.chmod(top, 0o755)  # Postfix's daemons run as postfix and must reach below it
    servers: list[Server] = []
    unavailable: dict[str, str] = {}
    runs: list[dict[str, Any]] = []
    scale_result: dict[str, Any] | None = None
    mailauth_result: dict[str, Any] | None = None
    started = datetime.now(UTC)
    try:
        for name in chosen:
            server = SERVERS[name](top)
            try:
                server.start()
                servers.append(server)
                print(f"{name}: listening on {server.host}:{server.port}", flush=True)
            except Unavailable as exc:
                server.stop()
                unavailable[name] = str(exc)
                print(f"{name}: unavailable: {exc}", flush=True)
        for rep in range(reps):
            order = servers[rep % len(servers) :] + servers[: rep % len(servers)] if servers else []
            for workload in workloads:
                messages = max(20, round(workload.messages * factor))
                for server in order:
                    run_id = f"{rep}-{workload.name}-{server.name}"
                    record = one_run(server, workload, messages, rep, run_id)
                    runs.append(record)
                    print(report.line(record), flush=True)
        if args.mailauth != "no":  # the servers above stay up, idle
            mailauth_result = mailauth.run(
                top, args.reps or 3, factor, progress=lambda text: print(text, flush=True)
            )
        hato = next((s for s in servers if s.name == "hato"), None)
        if idle and hato is not None:
            print(f"scale: {idle} idle connections against hato ...", flush=True)
            try:
                scale_result = scale_test(hato, idle)
            except (OSError, RuntimeError) as exc:
                scale_result = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(scale_result), flush=True)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(top, ignore_errors=True)

    results = {
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds()),
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "machine": machine(),
        "reps": reps,
        "workloads": [asdict(w) | {"description": w.describe()} for w in workloads],
        "servers": [s.name for s in servers],
        "unavailable": unavailable,
        "runs": runs,
        "scale": scale_result,
        "mailauth": mailauth_result,
    }
    markdown = report.markdown(results)
    print(markdown)
    if args.no_write:
        return
    stem = args.output or BENCH / "results" / (
        f"{started:%Y-%m-%d}-{results['machine']['host']}{'-quick' if args.quick else ''}"
    )
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(f"written {stem}.md and .json")
    mailauth_failed = mailauth_result is not None and (
        "unavailable" in mailauth_result or any(not r["ok"] for r in mailauth_result["runs"])
    )
    if any(not r["ok"] for r in runs) or mailauth_failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
