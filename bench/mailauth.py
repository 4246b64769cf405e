"""What mail authentication costs Hato per message: DKIM signing and inbound checks.

Hato in several configurations, each a fresh ``hato serve`` on loopback started once and
kept for the whole run, gets the same 1 KB message from ``loadgen.py`` (pipelining,
persistent connections, 1 and 10 sessions), delivered to a local Maildir:

- ``plain``: a trusted client (127.0.0.1 is in ``relay.trusted_networks``),
  ``dkim.sign = false``, ``mailauth.check = false``.
- ``submit``: the submission listener, ``AUTH PLAIN``, no signing: what submission itself
  costs, so that the next two show the signature's own share.
- ``sign-rsa``, ``sign-ed25519``: submission: the submission listener, ``AUTH PLAIN`` as
  ``alice@sender.test`` once per connection (``auth.allow_plaintext``: no TLS, so what
  differs from ``plain`` is the login and the signature), ``sender.test`` a local domain
  with one rsa-2048 or one ed25519 key, ``dkim.sign = true``.
- ``verify-rsa``, ``verify-ed25519``: a client from outside (``relay.trusted_networks =
  []``), ``mailauth.check = true``; the message was signed once, before the run, with
  dkimpy (rsa-2048 by ``sender.test``, ed25519 by ``sender-ed.test``), so every copy carries
  a valid signature; ``dns.nameservers`` is an authoritative DNS server on loopback
  (``tests/dns_server.py``) that serves the key, SPF (``ip4:127.0.0.1 -all``) and DMARC
  (``p=reject``) of both domains, and the signing configurations' keys.

For each repetition and each session count the configurations run in turn, round-robin,
the order rotated every repetition. Per run: accepted msgs/s, end-to-end msgs/s (the
newest Maildir file), server CPU ms per message (``procstat``, the whole process tree), and
checks: every ``X-Bench-Token`` 1..M in the Maildir exactly once; ``sign-*``: every stored
message has our DKIM-Signature, and a sample verifies with dkimpy against the DNS server;
``verify-*``: every stored message's ``Authentication-Results`` says ``dkim=pass`` and
``dmarc=pass``. The report gives medians (min-max) and, per repetition, the ratio to the
``plain`` run next to it, whose median is shown.

    .venv/bin/python bench/mailauth.py                 # 3 repetitions, 300 / 600 messages
    .venv/bin/python bench/mailauth.py --quick         # 3 repetitions, 1/10 of the messages
    make bench                                         # also runs it (bench/run.py)
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import dns.exception
import dns.resolver
import procstat
from loadgen import LINE
from servers import DOMAIN, RECIPIENT, Hato, Unavailable

BENCH = Path(__file__).resolve().parent
TESTS = BENCH.parent / "tests"
SESSIONS = (1, 10)
MESSAGES = {1: 300, 10: 600}  # signing rsa-2048 runs at ~10/s here: kept small
PASSWORD = "bench-password-1"
SIGNER = "sender.test"  # the rsa-signed messages' domain, and the submitting user's
SIGNER_ED = "sender-ed.test"  # the ed25519-signed messages' domain
USER = f"alice@{SIGNER}"
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"]
SIGNED_HEADERS += [b"content-type", b"content-transfer-encoding"]
TOKEN = re.compile(rb"X-Bench-Token: (\d+)")
SAMPLE = 10  # stored messages per sign-* run whose signature dkimpy verifies
STALL_TIMEOUT = 60.0
SETTLE = 0.5


@dataclass(frozen=True)
class Config:
    name: str
    description: str
    sender_domain: str
    submission: bool = False  # AUTH on the submission listener
    sign: str | None = None  # the key algorithm Hato signs with
    verify: str | None = None  # the algorithm the messages were signed with beforehand

    @property
    def sender(self) -> str:
        return f"alice@{self.sender_domain}"


CONFIGS = [
    Config("plain", "plain: trusted client, no signing, no checks", SIGNER),
    Config(
        "submit",
        "submission, AUTH PLAIN, no signing",
        SIGNER,
        submission=True,
    ),
    Config(
        "sign-rsa",
        "DKIM signing, rsa-2048 (submission, AUTH PLAIN)",
        SIGNER,
        submission=True,
        sign="rsa-sha256",
    ),
    Config(
        "sign-ed25519",
        "DKIM signing, ed25519 (submission, AUTH PLAIN)",
        SIGNER,
        submission=True,
        sign="ed25519-sha256",
    ),
    Config(
        "verify-rsa",
        "inbound checks, rsa-2048 signature (DKIM, ARC, DMARC)",
        SIGNER,
        verify="rsa-sha256",
    ),
    Config(
        "verify-ed25519",
        "inbound checks, ed25519 signature (DKIM, ARC, DMARC)",
        SIGNER_ED,
        verify="ed25519-sha256",
    ),
]


class RunFailed(Exception):
    pass


def message(sender: str) -> bytes:
    """The 1 KB message every configuration gets (loadgen.py adds X-Bench-Token on top)."""
    head = (
        f"From: Alice <{sender}>\r\nTo: <{RECIPIENT}>\r\nSubject: mail authentication bench\r\n"
        "Date: Wed, 02 Dec 2026 04:00:00 +0000\r\n"
        f"Message-ID: <mailauth-bench@{sender.rpartition('@')[2]}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    )
    return head.encode() + LINE * 12


class World:
    """The DNS server and the keys of the domains outside: the messages are signed here."""

    def __init__(self, top: Path) -> None:
        sys.path.insert(0, str(TESTS))
        try:
            import dkim_test_keys
            from dns_server import DnsServer
        except ImportError as exc:
            raise Unavailable(f"tests/dns_server.py could not be imported: {exc}") from exc
        finally:
            sys.path.remove(str(TESTS))
        self.keys = dkim_test_keys
        self.dns = DnsServer()
        self.dns.start()
        self.top = top
        self.files: dict[str, Path] = {}
        for domain, key in (
            (SIGNER, dkim_test_keys.rsa_key(SIGNER, "bench")),
            (SIGNER_ED, dkim_test_keys.ed25519_key(SIGNER_ED, "bench")),
        ):
            dkim_test_keys.publish(self.dns, key)
            self.dns.add(domain, "TXT", '"v=spf1 ip4:127.0.0.1 -all"')
            self.dns.add(f"_dmarc.{domain}", "TXT", '"v=DMARC1; p=reject"')
            plain = message(f"alice@{domain}")
            signature = dkim.sign(
                plain,
                b"bench",
                domain.encode(),
                key.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=SIGNED_HEADERS,
                signature_algorithm=key.algorithm.encode(),
            )
            self.files[f"plain-{domain}"] = self._write(f"plain-{domain}.eml", plain)
            self.files[key.algorithm] = self._write(f"signed-{domain}.eml", signature + plain)
            if not dkim.verify(signature + plain, dnsfunc=self.txt):
                raise Unavailable(f"the message signed for {domain} does not verify")

    def _write(self, name: str, data: bytes) -> Path:
        path = self.top / name
        path.write_bytes(data)
        return path

    def publish(self, zone_line: str) -> None:
        """A record as ``hato dkim dns`` prints it: ``zone: NAME. IN TXT ( "..." ... )``."""
        found = re.match(r"zone:\s+(\S+)\s+IN\s+TXT\s+\(\s*(.*?)\s*\)\s*$", zone_line)
        if found is None:
            raise Unavailable(f"cannot read hato dkim dns: {zone_line!r}")
        self.dns.add(found.group(1).rstrip("."), "TXT", found.group(2))

    def txt(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's DNS lookup, against the bench's DNS server."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.dns.host]
        resolver.port = self.dns.port
        try:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as exc:
            raise dkim.DnsTimeoutError(str(exc)) from exc
        return b"".join(answer[0].strings)  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.dns.stop()


class ConfiguredHato(Hato):
    """``hato serve`` in one of the configurations above."""

    def __init__(self, top: Path, config: Config, world: World) -> None:
        self.name = f"hato-{config.name}"  # type: ignore[misc]
        super().__init__(top)
        self.config = config
        self.world = world

    def start(self) -> None:
        config = self.config
        self.data_dir.mkdir(parents=True)
        self._hato("domain", "add", DOMAIN, "--no-dkim")
        self._hato("user", "add", RECIPIENT)
        options = [
            "server.reverse_dns=false",
            # The HTTP service runs, as deployed, on a port of its own (8025 may be taken).
            'web.listen=["127.0.0.1:0"]',
            "server.implicit_tls_listen=[]",
            f'dns.nameservers=["{self.world.dns.address}"]',
            f"dkim.sign={'true' if config.sign else 'false'}",
            f"mailauth.check={'true' if config.verify else 'false'}",
        ]
        if config.submission:
            self._hato("domain", "add", SIGNER, "--no-dkim")
            self._hato("user", "add", USER, "--password", PASSWORD)
        if config.sign:
            selector = f"hato-{config.name}"
            self._hato("dkim", "keygen", SIGNER, "--selector", selector, "--algorithm", config.sign)
            for line in self._output("dkim", "dns", SIGNER).splitlines():
                if line.startswith("zone:"):
                    self.world.publish(line)  # before the start: its key check finds it
        if config.submission:
            options += ['server.submission_listen=["127.0.0.1:0"]', "auth.allow_plaintext=true"]
        else:
            options.append("server.submission_listen=[]")
        if config.verify:
            options.append("relay.trusted_networks=[]")
        options += self.extra_options
        args = [str(self.hato), "serve", "--data-dir", str(self.data_dir)]
        args += ["--listen", f"{self.host}:0", "--hostname", "hato.bench.test"]
        args += [arg for option in options for arg in ("-o", option)]
        self._spawn(args)
        events = self.data_dir / "log" / "events.jsonl"
        deadline = time.monotonic() + 30
        which = "submission" if config.submission else "listen"
        while not self.port and time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                for line in events.read_text().splitlines():
                    record = json.loads(line)
                    if record.get("event") == "server_started":
                        self.port = int(record[which][0].rpartition(":")[2])
            time.sleep(0.05)
        self._wait_greeting()

    def _output(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.hato), *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise Unavailable(f"hato {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def stored(maildir: Path) -> Iterator[os.DirEntry[str]]:
    with contextlib.suppress(FileNotFoundError):
        yield from os.scandir(maildir / "new")


def wait_stored(maildir: Path, messages: int) -> None:
    last, last_change = -1, time.monotonic()
    while (now := sum(1 for _ in stored(maildir))) < messages:
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT:
            raise RunFailed(f"only {now} of {messages} messages reached the Maildir")
        time.sleep(0.05)


def check_stored(server: ConfiguredHato, messages: int) -> tuple[float, str]:
    """Every token once, and what the configuration must have done to each message;
    returns the newest file's ctime and what was checked."""
    config, world = server.config, server.world
    seen: Counter[int] = Counter()
    newest = 0
    problems: list[str] = []
    sample: list[bytes] = []
    entries = sorted(stored(server.maildir), key=lambda entry: entry.name)
    every = max(1, len(entries) // SAMPLE)
    for index, entry in enumerate(entries):
        newest = max(newest, entry.stat().st_ctime_ns)
        data = Path(entry.path).read_bytes()
        found = TOKEN.search(data)
        if found is None:
            problems.append(f"{entry.name}: no token")
            continue
        seen[int(found.group(1))] += 1
        head = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            data, headersonly=True
        )
        if config.sign:
            signatures = [str(s) for s in head.get_all("DKIM-Signature", [])]
            if not any(f"a={config.sign}" in s and f"d={SIGNER}" in s for s in signatures):
                problems.append(f"{entry.name}: no {config.sign} DKIM-Signature by {SIGNER}")
            elif index % every == 0 and len(sample) < SAMPLE:
                sample.append(data)
        if config.verify:
            ours = [
                " ".join(str(f).split())
                for f in head.get_all("Authentication-Results", [])
                if str(f).strip().startswith("hato.bench.test;")
            ]
            if len(ours) != 1 or "dkim=pass" not in ours[0] or "dmarc=pass" not in ours[0]:
                problems.append(f"{entry.name}: Authentication-Results {ours}")
    missing = [n for n in range(1, messages + 1) if n not in seen]
    doubled = [n for n, times in seen.items() if times > 1]
    if missing or doubled or len(seen) != messages:
        problems.append(f"{len(missing)} missing {missing[:5]}, {len(doubled)} duplicated")
    for data in sample:
        if not dkim.verify(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), dnsfunc=world.txt):
            problems.append("a stored signature does not verify with dkimpy")
            break
    if problems:
        raise RunFailed(f"{len(problems)} problems: {'; '.join(problems[:3])}")
    checked = f"{messages} files, every token once"
    if config.sign:
        checked += f", all signed, {len(sample)} verified by dkimpy"
    if config.verify:
        checked += ", all dkim=pass dmarc=pass"
    return newest / 1e9, checked


def drive(server: ConfiguredHato, sessions: int, messages: int) -> dict[str, Any]:
    config, world = server.config, server.world
    template = world.files[config.verify] if config.verify else world.files[f"plain-{SIGNER}"]
    args = [sys.executable, str(BENCH / "loadgen.py"), "--host", server.host]
    args += ["--port", str(server.port), "--sessions", str(sessions), "--messages", str(messages)]
    args += ["--mode", "persistent", "--rcpt", RECIPIENT, "--sender", config.sender]
    args += ["--message", str(template)]
    if config.submission:
        args += ["--auth", f"{USER}:{PASSWORD}"]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise RunFailed(f"loadgen: {done.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["error_count"] or result["accepted"] != messages:
        raise RunFailed(f"loadgen: {result['accepted']}/{messages} accepted, {result['errors']}")
    return result


def one_run(server: ConfiguredHato, sessions: int, messages: int, rep: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "config": server.config.name,
        "sessions": sessions,
        "rep": rep,
        "messages": messages,
    }
    server.clear()
    cpu_before = procstat.cpu_seconds(server.pid)
    try:
        sent = drive(server, sessions, messages)
        wait_stored(server.maildir, messages)
        time.sleep(SETTLE)
        newest, checked = check_stored(server, messages)
    except (RunFailed, subprocess.TimeoutExpired) as exc:
        record.update(ok=False, error=str(exc))
        return record
    cpu = procstat.cpu_seconds(server.pid) - cpu_before
    record.update(
        ok=True,
        checked=checked,
        accepted_per_s=messages / (sent["end"] - sent["start"]),
        end_to_end_per_s=messages / (max(sent["end"], newest) - sent["start"]),
        cpu_ms_per_msg=cpu * 1000 / messages,
        latency_p50_ms=sent["latency_p50_ms"],
        latency_p99_ms=sent["latency_p99_ms"],
    )
    return record


def line(record: dict[str, Any]) -> str:
    head = f"mailauth {record['config']:<15} {record['sessions']:>2} sessions rep {record['rep']}"
    if not record["ok"]:
        return f"{head}  FAILED: {record['error']}"
    return (
        f"{head}  accepted {record['accepted_per_s']:6.0f}/s  end to end "
        f"{record['end_to_end_per_s']:6.0f}/s  CPU {record['cpu_ms_per_msg']:.2f} ms/msg"
        f"  ({record['checked']})"
    )


def run(
    top: Path,
    reps: int = 3,
    factor: float = 1.0,
    configs: list[Config] | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start the configurations, run them round-robin, stop them; the results."""
    configs = configs or CONFIGS
    result: dict[str, Any] = {
        "reps": reps,
        "configs": [{"name": c.name, "description": c.description} for c in configs],
        "messages": {str(s): max(20, round(MESSAGES[s] * factor)) for s in SESSIONS},
        "runs": [],
    }
    servers: list[ConfiguredHato] = []
    world: World | None = None
    try:
        world = World(top)
        for config in configs:
            server = ConfiguredHato(top, config, world)
            servers.append(server)
            server.start()
            progress(f"mailauth {config.name}: listening on {server.host}:{server.port}")
        for rep in range(reps):
            turn = rep % len(servers)
            order = servers[turn:] + servers[:turn]
            for sessions in SESSIONS:
                for server in order:
                    record = one_run(server, sessions, result["messages"][str(sessions)], rep)
                    result["runs"].append(record)
                    progress(line(record))
    except Unavailable as exc:
        result["unavailable"] = str(exc)
        progress(f"mailauth: unavailable: {exc}")
    finally:
        for server in servers:
            server.stop()
        if world is not None:
            world.stop()
            if world.dns.errors:
                result["dns_errors"] = world.dns.errors[:3]
    return result


# -- the report -------------------------------------------------------------------------


def _values(runs: list[dict[str, Any]], config: str, sessions: int, field: str) -> list[float]:
    return [
        r[field] for r in runs if r["ok"] and r["config"] == config and r["sessions"] == sessions
    ]


def _ratios(runs: list[dict[str, Any]], config: str, sessions: int, field: str) -> list[float]:
    """Per repetition: this configuration's figure over plain's in the same round."""
    plain = {
        r["rep"]: r[field]
        for r in runs
        if r["ok"] and r["config"] == "plain" and r["sessions"] == sessions
    }
    return [
        r[field] / plain[r["rep"]]
        for r in runs
        if r["ok"] and r["config"] == config and r["sessions"] == sessions and plain.get(r["rep"])
    ]


def _cell(values: list[float], fmt: str, ratios: list[float] | None = None) -> str:
    if not values:
        return "-"
    text = format(statistics.median(values), fmt)
    if len(values) > 1:
        text += f" ({format(min(values), fmt)}-{format(max(values), fmt)})"
    if ratios:
        text += f" **{statistics.median(ratios):.2f}x**"
    return text


def markdown(result: dict[str, Any]) -> list[str]:
    """The section of the benchmark report (lines)."""
    out = [
        "## Mail authentication: what signing and checking cost per message",
        "",
        "Hato only, pipelining generator, 1 KB, persistent connections; "
        f"{result['reps']} repetition(s), configurations round-robin; messages per run: "
        + ", ".join(f"{m} at {s} session(s)" for s, m in result["messages"].items())
        + ". Cells: median (min-max); **Nx**: median over the repetitions of the ratio to "
        "the plain run of the same round. Extra CPU: median CPU ms/msg minus plain's (for "
        "signing also minus submit's: the signature's own cost, the login and the "
        "submission rules taken out).",
        "",
    ]
    if "unavailable" in result:
        out += [f"Not measured: {result['unavailable']}", ""]
    runs = result["runs"]
    if not runs:
        return out
    out += [
        "| configuration | sessions | accepted msgs/s | end to end msgs/s "
        "| server CPU ms/msg | extra CPU ms/msg |",
        "|---|---|---|---|---|---|",
    ]
    for sessions in SESSIONS:
        plain_cpu = _values(runs, "plain", sessions, "cpu_ms_per_msg")
        submit_cpu = _values(runs, "submit", sessions, "cpu_ms_per_msg")
        for config in result["configs"]:
            name = config["name"]
            cells = []
            for field, fmt in (
                ("accepted_per_s", ",.0f"),
                ("end_to_end_per_s", ",.0f"),
                ("cpu_ms_per_msg", ".2f"),
            ):
                ratios = None if name == "plain" else _ratios(runs, name, sessions, field)
                cells.append(_cell(_values(runs, name, sessions, field), fmt, ratios))
            cpu = _values(runs, name, sessions, "cpu_ms_per_msg")
            extra = "-"
            if name != "plain" and cpu and plain_cpu:
                extra = f"{statistics.median(cpu) - statistics.median(plain_cpu):+.2f}"
                if name.startswith("sign-") and submit_cpu:
                    extra += f" ({statistics.median(cpu) - statistics.median(submit_cpu):+.2f}"
                    extra += " over submit)"
            failed = sum(
                1 for r in runs if not r["ok"] and r["config"] == name and r["sessions"] == sessions
            )
            if failed:
                cells[0] += f" FAILED x{failed}"
            out.append(
                f"| {config['description']} | {sessions} | " + " | ".join(cells) + f" | {extra} |"
            )
    checked = {r["config"]: r["checked"] for r in runs if r["ok"]}
    out += ["", "Checked in every run:", ""]
    out += [f"- {name}: {text}" for name, text in checked.items()]
    failures = [r for r in runs if not r["ok"]]
    if failures:
        out += ["", "Failed runs:", ""]
        out += [
            f"- {r['config']} {r['sessions']} sessions rep {r['rep']}: {r['error']}"
            for r in failures
        ]
    out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1/10 of the messages")
    parser.add_argument("--scale-messages", type=float, help="message counts times this")
    names = ",".join(c.name for c in CONFIGS)
    parser.add_argument("--configs", help=f"comma-separated, plain first; default {names}")
    parser.add_argument("--json", type=Path, help="write the runs here too")
    args = parser.parse_args()
    factor = args.scale_messages or (0.1 if args.quick else 1.0)
    wanted = (args.configs or names).split(",")
    configs = [c for c in CONFIGS if c.name in wanted]
    if len(configs) != len(wanted) or configs[0].name != "plain":
        raise SystemExit(f"unknown configuration in {wanted}, or plain missing")
    top = Path(tempfile.mkdtemp(prefix="hato-bench-mailauth-"))
    try:
        result = run(top, args.reps, factor, configs, lambda text: print(text, flush=True))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print("\n".join(markdown(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if "unavailable" in result or any(not r["ok"] for r in result["runs"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
