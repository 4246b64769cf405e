"""A private rspamd for tests, as an independent verifier of SPF, DKIM, DMARC and ARC.

Each instance is the Debian package's rspamd 3.4 (``/usr/bin/rspamd``) started as a child of
the test (``rspamd -f -i -c CONFIG``: in the foreground, and allowed to keep running as root,
since there is nothing to drop privileges to that could read the test's directory), with its
own configuration, state and log in a temporary directory; the system's own instance and
its configuration are never used or touched (its module defaults under ``/etc/rspamd`` are
only read).

The configuration loads only what the four checks need: the C module ``dkim`` and the Lua
plugins ``spf``, ``dmarc`` and ``arc`` with the package's defaults, their scores (the
``policies`` group) and the public suffix list rspamd ships, plus one rule of our own:
``test`` is a public suffix, as the list's implicit ``*`` rule makes it for libraries that
apply it (publicsuffixlist does; rspamd does not, and would take ``example.test`` itself for
an unknown TLD). No Redis, no fuzzy, neural, RBL or other lookups: every DNS query goes to
the test's authoritative server (``tests/dns_server.py``), and nothing else is asked.

rspamd skips SPF, DKIM and DMARC for "local" clients; ``local_addrs`` is empty and
``check_local``/``check_authed`` are on, so every client address is checked. The client
address of a scan is only data in the request (``192.0.2.10`` by default): no traffic goes
there.

A scan is one ``POST /checkv2`` to the normal worker, with the envelope in request headers
(``IP``, ``Helo``, ``From``, ``Rcpt``, ``Hostname``); the symbols found are mapped to RFC
8601 result words in ``RspamdScan``.

Start-up compiles the public suffix list into Hyperscan databases, about 20 seconds the first
time; they are kept in ``hs_cache`` (the fixture uses pytest's cache directory), which makes
later starts take well under a second. Use the module-scoped fixture, one instance for a test
module (import it explicitly, it must be in the module's namespace)::

    from dns_server import DnsServer
    from rspamd_server import RspamdServer, rspamd_fixture  # noqa: F401

    def test_something(rspamd: RspamdServer) -> None:
        rspamd.dns.add("example.test", "TXT", "v=spf1 ip4:192.0.2.10 -all")
        scan = rspamd.scan(message, mail_from="a@example.test")
        assert scan.spf == "pass", scan.explain()

The DNS server it asks is ``rspamd.dns`` (started with it; a test that wants its own passes
it to ``RspamdServer``). rspamd keeps DKIM keys and SPF records it has seen (for a day, as
the package configures it), so each test of a module uses domains of its own. Without
``/usr/bin/rspamd`` the tests skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dns_server import DnsServer

HOST = "127.0.0.1"
CLIENT_IP = "192.0.2.10"  # TEST-NET-1 (RFC 5737): not local to rspamd, and never contacted
CLIENT_HELO = "client.example.test"
SCAN_HOSTNAME = "mx.hato.test"  # the receiving host's name in rspamd's eyes
# The first start compiles the public suffix list (about 20 s); later ones take < 1 s.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
# rspamd's own limit on one message is task_timeout (8 s); the HTTP call waits a little more.
SCAN_TIMEOUT = 15.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before the worker binds it
POLL_INTERVAL = 0.05
LOG_TAIL = 60  # lines of the log shown when something goes wrong
PUBLIC_SUFFIX_LIST = Path("/usr/share/rspamd/effective_tld_names.dat")
DEBIAN_CONFIG = Path("/etc/rspamd")
PLUGINS = Path("/usr/share/rspamd/plugins")
# Extra public suffixes: the test TLDs the implicit "*" rule covers (RFC 6761 names).
EXTRA_SUFFIXES = ("test", "example", "invalid")

CONFIG = """\
# A private instance for Hato's tests; nothing here touches the system's rspamd.
options {{
  filters = "dkim";
  explicit_modules = [];
  pidfile = "{top}/rspamd.pid";
  control_socket = "{top}/rspamd.sock mode=0600";
  cache_file = "{top}/db/symbols.cache";
  hs_cache_dir = "{hs_cache}/";
  tempdir = "{top}/tmp";
  url_tld = "{top}/public_suffix_list.dat";
  # Every client is remote: rspamd skips SPF/DKIM/DMARC for local or authenticated ones.
  local_addrs = [];
  check_local = true;
  check_authed = true;
  check_all_filters = true;
  allow_raw_input = true;
  task_timeout = 8s;
  dns {{
    nameserver = ["{dns}"];
    timeout = 1s;
    retransmits = 2;
    sockets = 4;
  }}
}}
logging {{
  type = "file";
  filename = "{top}/rspamd.log";
  level = "info";
}}
worker "normal" {{
  bind_socket = "{host}:{port}";
  count = 1;
  mime = true;
}}
modules {{
  path = "{plugins}";
}}
group "policies" {{
  .include "{debian}/scores.d/policies_group.conf"
}}
.include "{debian}/modules.d/dkim.conf"
.include "{debian}/modules.d/spf.conf"
.include "{debian}/modules.d/dmarc.conf"
.include "{debian}/modules.d/arc.conf"
"""

# Milter mode (``RspamdServer(milter=True)``): the proxy worker speaks the milter protocol
# and scans the message itself (self_scan, no normal worker behind it), and milter_headers
# adds rspamd's fields to what it passes (X-Spamd-Result, X-Rspamd-Server, X-Spam-Status).
MILTER_CONFIG = """\
worker "rspamd_proxy" {{
  bind_socket = "{host}:{milter_port}";
  milter = yes;
  timeout = 120s;
  count = 1;
  upstream "local" {{
    default = yes;
    self_scan = yes;
  }}
  reject_message = "Spam message rejected";
}}
milter_headers {{
  use = ["x-spamd-result", "x-rspamd-server", "x-spam-status"];
  skip_local = false;
  skip_authenticated = false;
}}
"""

# Symbols of rspamd 3.4 and the RFC 8601 word each stands for: the C module dkim
# (librspamd-server), plugins/spf.lua, lualib/plugins/dmarc.lua, plugins/arc.lua.
SPF_SYMBOLS = {
    "R_SPF_ALLOW": "pass",
    "R_SPF_FAIL": "fail",
    "R_SPF_SOFTFAIL": "softfail",
    "R_SPF_NEUTRAL": "neutral",
    "R_SPF_NA": "none",
    "R_SPF_DNSFAIL": "temperror",
    "R_SPF_PERMFAIL": "permerror",
}
DKIM_SYMBOLS = {
    "R_DKIM_ALLOW": "pass",
    "R_DKIM_REJECT": "fail",
    "R_DKIM_TEMPFAIL": "temperror",
    "R_DKIM_PERMFAIL": "permerror",
    "R_DKIM_NA": "none",
}
DMARC_SYMBOLS = {
    "DMARC_POLICY_ALLOW": "pass",
    "DMARC_POLICY_ALLOW_WITH_FAILURES": "pass",  # passed; pct= spared a failing part
    "DMARC_POLICY_REJECT": "fail",
    "DMARC_POLICY_QUARANTINE": "fail",
    "DMARC_POLICY_SOFTFAIL": "fail",  # failed under p=none (or pct= sampled it out)
    "DMARC_NA": "none",
    "DMARC_BAD_POLICY": "permerror",
    "DMARC_DNSFAIL": "temperror",
}
ARC_SYMBOLS = {
    "ARC_ALLOW": "pass",
    "ARC_REJECT": "fail",
    "ARC_INVALID": "fail",
    "ARC_NA": "none",
    "ARC_DNSFAIL": "temperror",
}
# The DMARC disposition each DMARC symbol reports.
DMARC_DISPOSITIONS = {
    "DMARC_POLICY_REJECT": "reject",
    "DMARC_POLICY_QUARANTINE": "quarantine",
    "DMARC_POLICY_SOFTFAIL": "none",
}
# DKIM_TRACE options end in one character per signature (dkim_check.c; read by dmarc.lua).
DKIM_TRACE_WORDS = {"+": "pass", "-": "fail", "?": "temperror", "~": "permerror"}
# When several signatures disagree, the summary is the best one (as DMARC takes any pass).
DKIM_ORDER = ("pass", "fail", "temperror", "permerror", "none")


class RspamdError(Exception):
    """rspamd did not start, or did not answer a scan; the message holds its log's tail."""


@dataclass(frozen=True, slots=True)
class RspamdScan:
    """What rspamd found in one message: its symbols (name -> options) and the RFC 8601
    word for each method (None: rspamd inserted none of that method's symbols)."""

    symbols: Mapping[str, tuple[str, ...]]
    spf: str | None
    dkim: str | None
    dmarc: str | None
    arc: str | None
    # (d=, word) for each DKIM signature, in rspamd's order (DKIM_TRACE).
    dkim_signatures: tuple[tuple[str, str], ...] = ()
    # The DMARC disposition ("reject", "quarantine", "none") when DMARC failed.
    dmarc_policy: str | None = None
    action: str = ""
    elapsed: float = 0.0  # seconds the HTTP round trip took
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def has(self, symbol: str) -> bool:
        return symbol in self.symbols

    def explain(self) -> str:
        """The words and every symbol with its options, for an assertion message."""
        lines = [f"spf={self.spf} dkim={self.dkim} dmarc={self.dmarc} arc={self.arc}"]
        lines += [f"  {name} {list(options)}" for name, options in sorted(self.symbols.items())]
        return "\n".join(lines)


def parse_scan(reply: Mapping[str, Any], elapsed: float = 0.0) -> RspamdScan:
    """The ``RspamdScan`` of one ``/checkv2`` JSON reply."""
    symbols: dict[str, tuple[str, ...]] = {}
    for name, entry in (reply.get("symbols") or {}).items():
        options = entry.get("options") or [] if isinstance(entry, dict) else []
        symbols[name] = tuple(str(option) for option in options)
    signatures = tuple(
        (option[:-2].lower(), DKIM_TRACE_WORDS.get(option[-1], "permerror"))
        for option in symbols.get("DKIM_TRACE", ())
        if len(option) >= 2
    )
    dkim_words = {DKIM_SYMBOLS[name] for name in symbols if name in DKIM_SYMBOLS}
    dkim = next((word for word in DKIM_ORDER if word in dkim_words), None)
    dmarc_symbol = next((name for name in DMARC_SYMBOLS if name in symbols), None)
    return RspamdScan(
        symbols=symbols,
        spf=_word(symbols, SPF_SYMBOLS),
        dkim=dkim,
        dmarc=None if dmarc_symbol is None else DMARC_SYMBOLS[dmarc_symbol],
        arc=_word(symbols, ARC_SYMBOLS),
        dkim_signatures=signatures,
        dmarc_policy=DMARC_DISPOSITIONS.get(dmarc_symbol or ""),
        action=str(reply.get("action", "")),
        elapsed=elapsed,
        raw=reply,
    )


def _word(symbols: Mapping[str, tuple[str, ...]], table: Mapping[str, str]) -> str | None:
    words = [word for name, word in table.items() if name in symbols]
    if len(set(words)) > 1:
        raise RspamdError(f"rspamd reported contradicting symbols: {sorted(symbols)}")
    return words[0] if words else None


def find_rspamd() -> str:
    """The rspamd command, or skip the test saying how to install it."""
    binary = shutil.which("rspamd", path=os.pathsep.join((os.environ.get("PATH", ""), "/usr/bin")))
    if binary is None:
        pytest.skip("rspamd is not installed (Debian: apt-get install rspamd)")
    return binary


class RspamdServer:
    """A private rspamd in ``directory``, asking ``dns`` (a started ``DnsServer``; one is
    started and stopped with it when not given). ``start()`` it, ``stop()`` it."""

    def __init__(
        self,
        directory: Path,
        dns: DnsServer | None = None,
        hs_cache: Path | None = None,
        *,
        milter: bool = False,
    ) -> None:
        self.directory = directory
        self.milter = milter
        self.milter_port = 0  # the proxy worker's, in milter mode
        self._own_dns = dns is None
        self.dns = dns if dns is not None else DnsServer()
        self.hs_cache = hs_cache if hs_cache is not None else directory / "hs"
        self.port = 0
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    # -- running ------------------------------------------------------------------------

    def start(self) -> None:
        binary = find_rspamd()
        if self._own_dns:
            self.dns.start()
        for path in (self.directory / "db", self.directory / "tmp", self.directory / "local"):
            path.mkdir(parents=True, exist_ok=True)
        self.hs_cache.mkdir(parents=True, exist_ok=True)
        suffixes = PUBLIC_SUFFIX_LIST.read_text(encoding="utf-8")
        extra = "".join(f"{suffix}\n" for suffix in EXTRA_SUFFIXES)
        (self.directory / "public_suffix_list.dat").write_text(
            suffixes + "\n// Hato's tests: the implicit '*' rule for RFC 6761 TLDs\n" + extra,
            encoding="utf-8",
        )
        started = time.monotonic()
        for attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            self.milter_port = _free_port() if self.milter else 0
            self.config_path.write_text(self._config(), encoding="utf-8")
            self._process = self._spawn(binary)
            if self._wait_ready():
                self.startup_seconds = time.monotonic() - started
                return
            self._terminate()
            if attempt == START_ATTEMPTS - 1:
                self.stop()
                raise RspamdError(f"rspamd did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        self._terminate()
        if self._own_dns:
            self.dns.stop()

    def __enter__(self) -> RspamdServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def config_path(self) -> Path:
        return self.directory / "rspamd.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "rspamd.log"

    def log(self) -> str:
        """rspamd's log so far, and what it wrote to stdout/stderr."""
        parts = []
        for path in (self.log_path, self.directory / "rspamd.out"):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _config(self) -> str:
        text = CONFIG.format(
            top=self.directory,
            hs_cache=self.hs_cache,
            dns=f"{self.dns.host}:{self.dns.port}",
            host=HOST,
            port=self.port,
            plugins=PLUGINS,
            debian=DEBIAN_CONFIG,
        )
        if self.milter:
            text += MILTER_CONFIG.format(host=HOST, milter_port=self.milter_port)
        return text

    def _spawn(self, binary: str) -> subprocess.Popen[bytes]:
        command = [binary, "-f", "-c", str(self.config_path)]
        if os.geteuid() == 0:
            command.append("-i")  # workers as root: allowed for this private instance
        # The package's module defaults include local files from these places: ours.
        for name, value in (
            ("LOCAL_CONFDIR", self.directory / "local"),
            ("DBDIR", self.directory / "db"),
            ("RUNDIR", self.directory),
            ("LOGDIR", self.directory),
        ):
            command.append(f"--var={name}={value}")
        with open(self.directory / "rspamd.out", "ab") as output:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _wait_ready(self) -> bool:
        """Whether the normal worker answers ``/ping`` before the time limit."""
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # exited: its port was taken, or the configuration is wrong
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection(HOST, self.port, timeout=1.0)
                try:
                    connection.request("GET", "/ping")
                    pong = connection.getresponse().read().strip() == b"pong"
                    if pong and (not self.milter or _accepts(self.milter_port)):
                        return True
                finally:
                    connection.close()
            time.sleep(POLL_INTERVAL)
        return False

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the main process stops its workers
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
        # Whatever is left of the session rspamd was started in (workers, helpers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    # -- scanning -----------------------------------------------------------------------

    def scan(
        self,
        message: bytes,
        *,
        ip: str = CLIENT_IP,
        helo: str = CLIENT_HELO,
        mail_from: str = "",
        rcpt: str = "postmaster@hato.test",
        hostname: str | None = None,
    ) -> RspamdScan:
        """rspamd's verdict on ``message`` as received from ``ip`` (``mail_from`` "" is the
        null reverse-path; ``hostname`` the client's name, "unknown" without one)."""
        headers = {
            "IP": ip,
            "Helo": helo,
            "From": mail_from or "<>",
            "Rcpt": rcpt,
            "Hostname": hostname or "unknown",
            "MTA-Name": SCAN_HOSTNAME,
            "Pass": "all",
            "Content-Type": "message/rfc822",
        }
        started = time.monotonic()
        connection = http.client.HTTPConnection(HOST, self.port, timeout=SCAN_TIMEOUT)
        try:
            connection.request("POST", "/checkv2", body=message, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise RspamdError(f"scan failed: {error!r}\n{self.log_tail()}") from error
        finally:
            connection.close()
        elapsed = time.monotonic() - started
        if response.status != 200:
            raise RspamdError(f"scan answered {response.status}: {body[:500]!r}\n{self.log_tail()}")
        try:
            reply = json.loads(body)
        except ValueError as error:
            raise RspamdError(f"scan answered no JSON: {body[:500]!r}") from error
        return parse_scan(reply, elapsed)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM when the test process dies (PR_SET_PDEATHSIG), so an
    interrupted run leaves no rspamd behind."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _hs_cache(request: pytest.FixtureRequest, fallback: Path) -> Path:
    """pytest's cache directory keeps the compiled suffix list between runs, when enabled."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return fallback
    return Path(cache.mkdir("rspamd-hs"))


@pytest.fixture(name="rspamd", scope="module")
def rspamd_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RspamdServer]:
    yield from _module_rspamd(request, tmp_path_factory, milter=False)


@pytest.fixture(name="rspamd_milter", scope="module")
def rspamd_milter_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RspamdServer]:
    """As ``rspamd``, with the proxy worker in milter mode at ``milter_port``."""
    yield from _module_rspamd(request, tmp_path_factory, milter=True)


def _module_rspamd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, *, milter: bool
) -> Iterator[RspamdServer]:
    """A started ``RspamdServer`` for the whole module, with its own ``DnsServer``
    (``rspamd.dns``). Its directory, log included, stays in pytest's base temporary
    directory after the run, and when a test of the module failed the log's tail is shown
    at the end; a DNS query the test server failed on fails the module."""
    find_rspamd()
    directory = tmp_path_factory.mktemp("rspamd")
    server = RspamdServer(directory, hs_cache=_hs_cache(request, directory / "hs"), milter=milter)
    failed_before = request.session.testsfailed
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed > failed_before:
            _show_log(request, server)
    assert not server.dns.errors, "the test DNS server failed:\n" + "\n".join(server.dns.errors)


def _show_log(request: pytest.FixtureRequest, server: RspamdServer) -> None:
    """After a failure in the module, rspamd's log tail on the terminal (the directory it is
    in may be pruned by later runs before anyone looks)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"\n--- rspamd log ({server.log_path}), last {LOG_TAIL} lines ---")
        reporter.write_line(server.log_tail())
