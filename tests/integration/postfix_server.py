"""A private Postfix for tests, and its ``postfix`` fixture.

Each instance has its own configuration, queue and data directories, mail log and loopback
address (``HOST``, on a free port), and its master runs as a child of the test
(``master -c CONFDIR -s``, in the foreground) that is stopped at teardown together with
every daemon it started; the system's own Postfix is never started, stopped or reloaded,
and nothing is written to its configuration (``/etc/postfix``) or queue
(``/var/spool/postfix``). Postfix's master must run as root (it runs its daemons as the
``postfix`` user), so without root the tests skip.

What it serves:

- ``user@pf.test`` for each user in ``USERS``, as a Maildir under ``mail/pf.test/user/``
  (the ``virtual`` delivery agent, as ``nobody``: Postfix will not deliver as root). Any
  other address at pf.test is refused at RCPT with 550 5.1.1.
- Relaying for clients in 127.0.0.0/8 (``mynetworks``), with no DNS: mail for
  ``PEER_DOMAIN`` goes to ``[PEER_HOST]:peer_port``, a free port the fixture picks so that
  the test can start Hato there (``hato_factory(listen=postfix.peer_listen)``).

Use it by importing the fixture explicitly (it must be in the test module's namespace)::

    from postfix_server import Postfix, postfix_fixture  # noqa: F401

    def test_something(postfix: Postfix) -> None:
        ...
        postfix.mailbox("bob")  # -> [bytes, ...]

The mail log (``log()``) needs Postfix 3.4 or later (``maillog_file``); older versions skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.6"  # Postfix's own loopback address: its SMTP service and its client side
PEER_HOST = "127.0.0.7"  # where the test's Hato listens
DOMAIN = "pf.test"  # Postfix's virtual mailbox domain
PEER_DOMAIN = "hato.test"  # routed to the peer by the transport map
USERS = ("bob", "dave")  # the mailboxes of DOMAIN; everyone else is unknown
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0
WAIT_TIMEOUT = 20.0  # for a message to cross one hop; a healthy run takes well under a second
# The master exits by itself after this many seconds, should teardown never run.
EXIT_TIME = 900
START_ATTEMPTS = 3  # a free port can be taken by someone else before the master binds it
POLL_INTERVAL = 0.05
MINIMUM_VERSION = (3, 4)  # maillog_file and postlogd
# Newest compatibility level the version understands: 3.6 from Postfix 3.6 on.
COMPATIBILITY_LEVEL = {(3, 6): "3.6"}

MAIN_CF = """\
# A private instance for Hato's tests; nothing here touches the system's Postfix.
compatibility_level = {compatibility_level}
queue_directory = {top}/queue
data_directory = {top}/data
mail_owner = postfix
syslog_name = postfix-hato-test
maillog_file = {top}/maillog
maillog_file_prefixes = {top}
myhostname = {domain}
mydomain = {domain}
myorigin = {domain}
mydestination =
relay_domains =
# Postfix accepts only addresses configured on an interface here, which 127.0.0.6 is not
# (only its 127.0.0.0/8 route is); the SMTP service in master.cf names its address instead.
inet_interfaces = all
inet_protocols = ipv4
smtp_bind_address = {host}
mynetworks = 127.0.0.0/8
# Every client is a remote one: Postfix completes no headers (Date, Message-Id) for them.
local_header_rewrite_clients =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtputf8_enable = yes
# A strict peer: a UTF-8 address without the SMTPUTF8 parameter is refused (RFC 6531 3.4).
strict_smtputf8 = yes
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
biff = no
transport_maps = texthash:{top}/transport
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {top}/mail
virtual_mailbox_maps = texthash:{top}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
# Retry soon: a test waits for a message with timeouts of its own.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
in_flow_delay = 0
smtp_connect_timeout = 5s
delay_warning_time = 0
"""

# No chroot: the daemons read the test's temporary directory like any other path.
MASTER_CF = """\
# service  type  private unpriv chroot wakeup maxproc command
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
proxywrite unix  -       -      n      -      1       proxymap
smtp       unix  -       -      n      -      -       smtp
relay      unix  -       -      n      -      -       smtp
showq      unix  n       -      n      -      -       showq
error      unix  -       -      n      -      -       error
retry      unix  -       -      n      -      -       error
discard    unix  -       -      n      -      -       discard
local      unix  -       n      n      -      -       local
virtual    unix  -       n      n      -      -       virtual
lmtp       unix  -       -      n      -      -       lmtp
anvil      unix  -       -      n      -      1       anvil
scache     unix  -       -      n      -      1       scache
postlog    unix-dgram n  -      n      -      1       postlogd
"""


def find_postfix() -> tuple[str, str]:
    """The postfix and postconf commands, or skip the test saying how to install them."""
    found = []
    for name in ("postfix", "postconf"):
        binary = shutil.which(name)
        if binary is None and os.access(f"/usr/sbin/{name}", os.X_OK):
            binary = f"/usr/sbin/{name}"
        if binary is None:
            pytest.skip("postfix is not installed: run make system-deps as root")
        found.append(binary)
    if os.geteuid() != 0:
        pytest.skip("a private Postfix needs root: its master runs daemons as the postfix user")
    return found[0], found[1]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _mail_owner() -> tuple[int, int]:
    """Who the virtual agent delivers as: ``nobody`` (Postfix refuses root)."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return nobody.pw_uid, nobody.pw_gid


class Postfix:
    """One private Postfix: ``start()``, ``mailbox(user)``, ``log()``, ``queue()``, ``close()``."""

    def __init__(self, postfix: str, postconf: str) -> None:
        self.postfix = postfix
        self.postconf = postconf
        self.version = self._postconf("mail_version")
        numbers = tuple(int(n) for n in re.findall(r"\d+", self.version)[:2])
        if numbers < MINIMUM_VERSION:
            pytest.skip(f"Postfix {self.version}: this fixture needs 3.4 or later (maillog_file)")
        self.daemon_directory = Path(self._postconf("daemon_directory"))
        self.uid, self.gid = _mail_owner()
        # The daemons run as the postfix user and must reach every directory below this
        # one, which pytest's tmp_path (mode 0700) does not allow; so it is a directory of
        # its own, removed at close().
        self.top = Path(tempfile.mkdtemp(prefix="hato-postfix-"))
        os.chmod(self.top, 0o755)
        self.config_dir = self.top / "etc"
        self.mail = self.top / "mail"
        self.log_path = self.top / "maillog"
        self.host = HOST
        self.port = 0
        self.peer_host = PEER_HOST
        self.peer_port = _free_port(PEER_HOST)
        self._output = self.top / "master.out"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def peer_listen(self) -> str:
        """Where the peer must listen for Postfix to reach it: ``"127.0.0.7:PORT"``."""
        return f"{self.peer_host}:{self.peer_port}"

    def _postconf(self, name: str) -> str:
        """A built-in default of this Postfix (its version, where its daemons live)."""
        shown = subprocess.run(
            [self.postconf, "-dh", name],  # compiled-in: the system's main.cf is not read
            capture_output=True,
            text=True,
            check=True,
            timeout=COMMAND_TIMEOUT,
        )
        return shown.stdout.strip()

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.config_dir.mkdir()
        # The queue directory belongs to root; "postfix check" makes what is inside it.
        (self.top / "queue").mkdir()
        self.mail.mkdir()
        os.chown(self.mail, self.uid, self.gid)
        (self.top / "vmailbox").write_text(
            "".join(f"{user}@{DOMAIN} {DOMAIN}/{user}/\n" for user in USERS)
        )
        (self.top / "transport").write_text(
            f"{PEER_DOMAIN} smtp:[{self.peer_host}]:{self.peer_port}\n"
        )
        for attempt in range(START_ATTEMPTS):
            self.port = _free_port(self.host)
            self._write_config()
            if attempt == 0:
                self._run(self.postfix, "-c", str(self.config_dir), "check")
            if self._launch():
                return
            if attempt + 1 == START_ATTEMPTS or "Address already in use" not in self.log():
                raise AssertionError(f"postfix did not start:\n{self.log()}")

    def _write_config(self) -> None:
        numbers = tuple(int(n) for n in re.findall(r"\d+", self.version)[:2])
        level = next(
            (level for since, level in COMPATIBILITY_LEVEL.items() if numbers >= since), "2"
        )
        (self.config_dir / "main.cf").write_text(
            MAIN_CF.format(
                compatibility_level=level,
                top=self.top,
                domain=DOMAIN,
                host=self.host,
                uid=self.uid,
                gid=self.gid,
            )
        )
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(host=self.host, port=self.port))

    def _launch(self) -> bool:
        """Run the master in the foreground; True once Postfix greets on its port."""
        with open(self._output, "ab") as output:
            self._proc = subprocess.Popen(
                [
                    str(self.daemon_directory / "master"),
                    "-c",
                    str(self.config_dir),
                    "-s",  # stay a child of the test (no -w), output to master.out
                    "-e",  # a last resort should the test runner itself be killed
                    str(EXIT_TIME),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MAIL_CONFIG": str(self.config_dir)},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if self._greets():
                return True
            time.sleep(POLL_INTERVAL)
        self._stop()
        raise AssertionError(f"postfix did not listen within {START_TIMEOUT} s:\n{self.log()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as conn:
                return conn.recv(64).startswith(b"220 ")
        except OSError:
            return False

    def close(self) -> None:
        """Stop the master and every daemon it started (ours only), remove the files."""
        try:
            self._stop()
        finally:
            shutil.rmtree(self.top, ignore_errors=True)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # what "postfix stop" does: the master stops its daemons
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # The master leads a process group of its own (setsid); a daemon still finishing a
        # request would outlive it, so the group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT
        while survivors := self._survivors(proc.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix processes outlived their master: {survivors}")
            time.sleep(POLL_INTERVAL)

    def _survivors(self, group: int) -> list[str]:
        """Live processes of the master's group or naming this instance's configuration."""
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                # Fields after the command name, which is in parentheses and may hold spaces.
                state, _, pgrp = entry.joinpath("stat").read_text().rpartition(")")[2].split()[:3]
                cmdline = entry.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
                ours = int(pgrp) == group or str(self.config_dir) in cmdline
                if ours and state != "Z":  # a zombie is dead, waiting for init to reap it
                    found.append(f"{entry.name} {cmdline.strip()}")
        return found

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            timeout=COMMAND_TIMEOUT,
            env={**os.environ, "MAIL_CONFIG": str(self.config_dir)},
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    # -- use ------------------------------------------------------------------------------

    def maildir(self, user: str) -> Path:
        return self.mail / DOMAIN / user

    def mailbox(self, user: str) -> list[bytes]:
        """The messages delivered to ``user@pf.test``, oldest first ([] before the first)."""
        found = []
        for folder in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                found += [p for p in (self.maildir(user) / folder).iterdir() if p.is_file()]
        found.sort(key=lambda p: (p.stat().st_mtime, p.name))
        return [p.read_bytes() for p in found]

    def log(self) -> str:
        """What Postfix logged (and what the master printed), for assertions and failures."""
        parts = []
        for path in (self.log_path, self._output):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_text("utf-8", errors="replace"))
        return "".join(parts)

    def queue(self) -> list[dict[str, Any]]:
        """The messages in Postfix's queue (``postqueue -j``), one dict per message."""
        postqueue = Path(self.postfix).with_name("postqueue")
        listed = self._run(str(postqueue), "-c", str(self.config_dir), "-j")
        return [json.loads(line) for line in listed.splitlines() if line.strip()]

    # -- waiting --------------------------------------------------------------------------

    def wait_for_mailbox(self, user: str, count: int = 1) -> list[bytes]:
        """``user``'s messages once there are ``count`` of them."""
        found: list[bytes] = _poll(
            lambda: len(messages := self.mailbox(user)) >= count and messages,
            what=f"{count} message(s) for {user}@{DOMAIN}",
            log=self.log,
        )
        return found

    def wait_for_log(self, pattern: str) -> re.Match[str]:
        """The first match of the regular expression ``pattern`` in the mail log."""
        found: re.Match[str] = _poll(
            lambda: re.search(pattern, self.log()), what=f"{pattern!r} in the log", log=self.log
        )
        return found

    def wait_for_empty_queue(self) -> None:
        _poll(lambda: not self.queue(), what="an empty queue", log=self.log)


def _poll(condition: Callable[[], Any], *, what: str, log: Callable[[], str]) -> Any:
    """Call ``condition`` until it returns something truthy; fail with the log after a while."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_TIMEOUT} s waiting for {what}:\n{log()}")
        time.sleep(POLL_INTERVAL)
    return result


@pytest.fixture(name="postfix")
def postfix_fixture() -> Iterator[Postfix]:
    """A started private Postfix (skips when Postfix is not installed)."""
    server = Postfix(*find_postfix())
    try:
        server.start()
        yield server
    finally:
        server.close()
