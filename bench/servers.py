"""The servers under test, each a private instance on a loopback port.

Every durable server does the same work: accept mail for ``bench.test`` (any local part,
since ``smtp-source -N`` numbers its recipients, so ``17user@bench.test`` must land in
``user``'s mailbox) and store each message in one Maildir, with fsync, before or after the
``250`` as the server's own design decides. The ceilings store nothing.

- ``hato``: ``hato serve`` with a fresh data directory, reverse DNS off (as Postfix's
  ``smtpd_peername_lookup = no`` below), a user and a catch-all alias.
- ``postfix``: a private master (``master -c DIR``) with its own main.cf/master.cf, queue,
  log file and Maildir base; the ``virtual`` agent delivers. Needs root (the master runs its
  daemons as ``postfix``); the system's own instance is never touched.
- ``haraka``: Haraka from npm (installed under ``bench/.cache/haraka``) with
  ``rcpt_to.in_host_list`` and the small ``bench/haraka/bench_maildir.js`` queue plugin.
- ``aiosmtpd``: ``bench/peer_aiosmtpd.py``, a handler that stores into the Maildir.
- ``aiosmtpd-discard`` and ``smtp-sink``: answer 250 and store nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
DOMAIN = "bench.test"
USER = "user"
RECIPIENT = f"{USER}@{DOMAIN}"
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
HARAKA_DIR = BENCH / ".cache" / "haraka"


class Unavailable(Exception):
    """The server cannot run here; the message says why (shown in the table)."""


def free_port(host: str = HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def greets(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2) as conn:
        return conn.recv(64).startswith(b"220")
    return False


class Server:
    name: ClassVar[str]
    durable: ClassVar[bool] = True

    def __init__(self, top: Path) -> None:
        self.top = top / self.name
        self.host = HOST
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.top / "server.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def maildir(self) -> Path | None:
        return None

    def start(self) -> None:
        raise NotImplementedError

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # a process group of its own, stopped as one
            )

    def _wait_greeting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Unavailable(f"{self.name} exited at start: {self.log_tail()}")
            if self.port and greets(self.host, self.port):
                return
            time.sleep(0.1)
        raise Unavailable(f"{self.name} did not greet within {START_TIMEOUT} s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it started, in its own group

    def clear(self) -> None:
        """Empty the Maildir between runs."""
        if self.maildir is None:
            return
        for sub in ("new", "cur", "tmp"):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self.maildir / sub):
                    os.unlink(entry.path)


class Hato(Server):
    name = "hato"
    # More "-o KEY=VALUE" settings for every Hato started (run.py --hato-option), to compare
    # configurations side by side.
    extra_options: ClassVar[list[str]] = []

    def __init__(self, top: Path) -> None:
        super().__init__(top)
        self.data_dir = self.top / "data"
        self.hato = VENV_BIN / "hato"

    @property
    def maildir(self) -> Path:
        return self.data_dir / "mailboxes" / DOMAIN / USER

    def _hato(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.hato), *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise Unavailable(f"hato {' '.join(args)}: {done.stderr.strip()}")

    def start(self) -> None:
        self.data_dir.mkdir(parents=True)  # the CLI refuses a data directory that is not there
        self._hato("domain", "add", DOMAIN)
        self._hato("user", "add", RECIPIENT)
        self._hato("alias", "add", f"@{DOMAIN}", RECIPIENT)  # smtp-source -N's 17user@
        options = [
            "server.reverse_dns=false",
            # The HTTP service runs, as deployed, on a port of its own (8025 may be taken).
            'web.listen=["127.0.0.1:0"]',
            "server.implicit_tls_listen=[]",
            "server.submission_listen=[]",
            'dns.nameservers=["127.0.0.1:9"]',  # nothing here needs DNS; never ask outside
            *self.extra_options,
        ]
        args = [str(self.hato), "serve", "--data-dir", str(self.data_dir)]
        args += ["--listen", f"{self.host}:0", "--hostname", "hato.bench.test"]
        args += [arg for option in options for arg in ("-o", option)]
        self._spawn(args)
        events = self.data_dir / "log" / "events.jsonl"
        deadline = time.monotonic() + START_TIMEOUT
        while not self.port and time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                for line in events.read_text().splitlines():
                    record = json.loads(line)
                    if record.get("event") == "server_started":
                        self.port = int(record["listen"][0].rpartition(":")[2])
            time.sleep(0.05)
        self._wait_greeting()


POSTFIX_MAIN_CF = """\
# A private instance for Hato's benchmark; the system's Postfix is never touched.
compatibility_level = 3.6
queue_directory = {top}/queue
data_directory = {top}/data
mail_owner = postfix
syslog_name = postfix-hato-bench
maillog_file = {top}/maillog
maillog_file_prefixes = {top}
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = bench.test
mydestination =
relay_domains =
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# No DNS in the SMTP path, as Hato runs with server.reverse_dns=false.
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtpd_tls_security_level = none
alias_maps =
alias_database =
biff = no
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {top}/mail
# Any local part with smtp-source -N's number in front goes to the one Maildir.
virtual_mailbox_maps = regexp:{top}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
# Accept as fast as the queue takes it: no back-pressure delay on smtpd.
in_flow_delay = 0
"""

# No chroot: the daemons read the run's temporary directory like any other path.
POSTFIX_MASTER_CF = """\
{host}:{port} inet n  -      n      -      -       smtpd
pickup     unix  n       -      n      60     1       pickup
cleanup    unix  n       -      n      -      0       cleanup
qmgr       unix  n       -      n      300    1       qmgr
rewrite    unix  -       -      n      -      -       trivial-rewrite
bounce     unix  -       -      n      -      0       bounce
defer      unix  -       -      n      -      0       bounce
trace      unix  -       -      n      -      0       bounce
verify     unix  -       -      n      -      1       verify
flush      unix  n       -      n      1000?  0       flush
proxymap   unix  -       -      n      -      -       proxymap
showq      unix  n       -      n      -      -       showq
error      unix  -       -      n      -      -       error
retry      unix  -       -      n      -      -       error
discard    unix  -       -      n      -      -       discard
virtual    unix  -       n      n      -      -       virtual
anvil      unix  -       -      n      -      1       anvil
scache     unix  -       -      n      -      1       scache
postlog    unix-dgram n  -      n      -      1       postlogd
"""


def find_command(name: str) -> str | None:
    """A Postfix tool on PATH or in /usr/sbin (often not on a user's PATH), else None."""
    found = shutil.which(name)
    if found is None and os.access(f"/usr/sbin/{name}", os.X_OK):
        found = f"/usr/sbin/{name}"
    return found


class Postfix(Server):
    name = "postfix"

    @property
    def maildir(self) -> Path:
        return self.top / "mail" / DOMAIN / USER

    def start(self) -> None:
        postfix, postconf = find_command("postfix"), find_command("postconf")
        if postfix is None or postconf is None:
            raise Unavailable("postfix is not installed (apt-get install postfix)")
        if os.geteuid() != 0:
            raise Unavailable("a private Postfix needs root (its master runs daemons as postfix)")
        daemons = subprocess.run(
            [postconf, "-dh", "daemon_directory"], capture_output=True, text=True, check=True
        ).stdout.strip()
        try:
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        except KeyError:
            uid = gid = 65534
        self.top.mkdir(parents=True)
        config = self.top / "etc"
        config.mkdir()
        (self.top / "queue").mkdir()
        (self.top / "mail").mkdir()
        os.chown(self.top / "mail", uid, gid)
        (self.top / "vmailbox").write_text(
            f"/^[0-9]*{USER}@{DOMAIN.replace('.', '[.]')}$/ {DOMAIN}/{USER}/\n"
        )
        self.port = free_port(self.host)
        (config / "main.cf").write_text(
            POSTFIX_MAIN_CF.format(top=self.top, domain=DOMAIN, uid=uid, gid=gid)
        )
        (config / "master.cf").write_text(POSTFIX_MASTER_CF.format(host=self.host, port=self.port))
        env = {"MAIL_CONFIG": str(config)}
        checked = subprocess.run(
            [postfix, "-c", str(config), "check"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
        )
        if checked.returncode != 0:
            raise Unavailable(f"postfix check failed: {checked.stderr.strip()}")
        # -s: stay in the foreground as our child; -e: exit by itself after an hour.
        self._spawn([f"{daemons}/master", "-c", str(config), "-s", "-e", "3600"], env)
        self._wait_greeting()

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            text = (self.top / "maillog").read_text(errors="replace")
            return " | ".join(text.splitlines()[-lines:])
        return super().log_tail(lines)


class Aiosmtpd(Server):
    name = "aiosmtpd"

    @property
    def maildir(self) -> Path:
        return self.top / "Maildir"

    def start(self) -> None:
        try:
            import aiosmtpd  # noqa: F401
        except ImportError as exc:
            raise Unavailable("aiosmtpd is not installed (pip install -e '.[bench]')") from exc
        self.top.mkdir(parents=True)
        self.port = free_port(self.host)
        args = [sys.executable, str(BENCH / "peer_aiosmtpd.py")]
        args += ["--listen", f"{self.host}:{self.port}", "--domain", DOMAIN]
        args += self._store_args()
        self._spawn(args)
        self._wait_greeting()

    def _store_args(self) -> list[str]:
        return ["--maildir", str(self.maildir)]


class AiosmtpdDiscard(Aiosmtpd):
    name = "aiosmtpd-discard"
    durable = False

    @property
    def maildir(self) -> None:  # type: ignore[override]
        return None

    def _store_args(self) -> list[str]:
        return ["--discard"]


class SmtpSink(Server):
    name = "smtp-sink"
    durable = False

    def start(self) -> None:
        sink = find_command("smtp-sink")
        if sink is None:
            raise Unavailable("smtp-sink is not installed (apt-get install postfix)")
        self.top.mkdir(parents=True)
        self.port = free_port(self.host)
        args = [sink]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]  # it refuses to run as root
        self._spawn([*args, f"{self.host}:{self.port}", "1024"])
        self._wait_greeting()


class Haraka(Server):
    name = "haraka"

    @property
    def maildir(self) -> Path:
        return self.top / "Maildir"

    def start(self) -> None:
        haraka = HARAKA_DIR / "node_modules" / ".bin" / "haraka"
        if not haraka.exists():
            raise Unavailable(
                "Haraka is not installed: npm install --prefix bench/.cache/haraka Haraka@3"
            )
        # A service directory as "haraka -i" makes it (its stock connection.ini and all),
        # then only what this benchmark needs changed.
        made = subprocess.run(
            [str(haraka), "-i", str(self.top)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            raise Unavailable(f"haraka -i failed: {made.stderr.strip()[-300:]}")
        for sub in ("tmp", "new", "cur"):
            (self.maildir / sub).mkdir(parents=True)
        config = self.top / "config"
        plugins = self.top / "plugins"
        plugins.mkdir(exist_ok=True)
        shutil.copy(BENCH / "haraka" / "bench_maildir.js", plugins / "bench_maildir.js")
        self.port = free_port(self.host)
        (config / "smtp.ini").write_text(f"listen={self.host}:{self.port}\n")
        (config / "me").write_text("haraka.bench.test\n")
        (config / "host_list").write_text(f"{DOMAIN}\n")
        (config / "plugins").write_text("rcpt_to.in_host_list\nbench_maildir\n")
        (config / "log.ini").write_text("[main]\nlevel=info\n")
        self._spawn([str(haraka), "-c", str(self.top)], {"BENCH_MAILDIR": str(self.maildir)})
        self._wait_greeting()


SERVERS: dict[str, type[Server]] = {
    cls.name: cls for cls in (Hato, Postfix, Haraka, Aiosmtpd, AiosmtpdDiscard, SmtpSink)
}
