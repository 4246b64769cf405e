"""A private Dovecot IMAP server for tests, and its ``dovecot`` fixture.

Each instance has its own configuration file, directories, log and loopback port, runs in
the foreground as a child of the test (``dovecot -F -c CONF``) and is stopped at teardown;
the system's own Dovecot service is never started, stopped or read. Every ``user@domain``
logs in with ``PASSWORD`` and finds its INBOX in ``mailboxes/<domain>/<local part>``
(Dovecot's ``%d/%n``), the layout ``MaildirAgent`` writes.

Dovecot refuses to serve mail as root ("userdb returned 0 as uid"), so when the tests run
as root its mail processes run as ``nobody``; the mail tree then lives in a temporary
directory that user can reach, and files Hato wrote as root must be handed over with
``adopt()`` before Dovecot can read them. Without root, Dovecot serves mail as the
current user and ``adopt()`` does nothing.

Use it by importing the fixture explicitly (it must be in the test module's namespace);
its function is ``dovecot_fixture``, the name tests ask for is ``dovecot``::

    from dovecot_server import Dovecot, dovecot_fixture  # noqa: F401

    def test_something(dovecot: Dovecot) -> None:
        agent = MaildirAgent(dovecot.mailboxes, hostname="mx.test")
        ...
        dovecot.adopt()
        imap = dovecot.imap("bob@example.com")

For a whole ``hato serve``, use ``dovecot.data_dir`` as its data directory: its
``mailboxes/`` is what Dovecot serves.

``Dovecot(binary, workdir, lmtp=True)`` also runs Dovecot's LMTP server, on the unix socket
``lmtp_socket`` and on ``127.0.0.1:lmtp_port``, with the quota plugin: every mailbox may
hold ``QUOTA`` and a delivery over it is refused with 452 (``quota_full_tempfail``).
``users=(...)`` makes only those users exist (a passwd-file passdb and userdb, each with
``PASSWORD``) instead of everyone; ``checkpassword=COMMAND`` has Dovecot ask that program
for passwords. The auth service's ``auth_userdb`` and ``auth_client`` sockets are open to
every local user (mode 0666), for Hato's RCPT and AUTH checks.
``start_dovecot(workdir, ...)`` is the context manager for module-scoped fixtures.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "secret"  # every user@domain logs in with it (passdb static)
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
IMAP_TIMEOUT = 10.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before Dovecot binds it
SUPPORTED_VERSION = "2.3."  # 2.4 changed the configuration syntax
QUOTA = "1M"  # what each mailbox may hold when LMTP is on (the quota plugin's storage rule)

STATIC_DATABASES = """\
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={homes}/%d/%n
}}
"""
# Only the users listed exist (a lookup of anyone else is NOTFOUND).
PASSWD_FILE_DATABASES = """\
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
"""
# Dovecot asks another program for passwords (the checkpassword interface).
CHECKPASSWORD_DATABASES = """\
passdb {{
  driver = checkpassword
  args = {checkpassword}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={homes}/%d/%n
}}
"""

LMTP_CONFIG = """\
protocols = imap lmtp
mail_plugins = $mail_plugins quota
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage={quota}
}}
# A setting of LMTP and the LDA, not of the plugin: over quota is 452, not 552.
quota_full_tempfail = yes
service lmtp {{
  unix_listener {lmtp_socket_name} {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""

CONFIG = """\
# A private instance for Hato's tests; nothing here touches the system's Dovecot.
base_dir = {base_dir}
state_dir = {state_dir}
log_path = {log}
info_log_path = {log}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
# Tests fail passwords on purpose; Dovecot's growing penalty per client IP stays on.
auth_failure_delay = 0
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:{mailboxes}/%d/%n
{databases}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
  unix_listener auth-client {{
    mode = 0666
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def find_dovecot() -> str:
    """The dovecot binary, or skip the test saying how to install it."""
    binary = shutil.which("dovecot")
    if binary is None and os.access("/usr/sbin/dovecot", os.X_OK):
        binary = "/usr/sbin/dovecot"
    if binary is None:
        pytest.skip("dovecot-imapd is not installed: run make system-deps as root")
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    if not version.startswith(SUPPORTED_VERSION):
        pytest.skip(f"Dovecot {version or '(unknown version)'}: this fixture writes 2.3 config")
    return binary


def _mail_owner() -> tuple[int, int]:
    """Who Dovecot serves mail as: ourselves, or ``nobody`` when we are root."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return nobody.pw_uid, nobody.pw_gid


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Dovecot:
    """One private Dovecot: ``start()``, ``imap(address)``, ``adopt()``, ``close()``."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        lmtp: bool = False,
        users: tuple[str, ...] | None = None,
        checkpassword: str | None = None,
    ) -> None:
        self.binary = binary
        self.lmtp = lmtp
        self.users = users  # None: everyone exists (static); else only these
        self.checkpassword = checkpassword  # the passdb's program, instead of a password
        self.workdir = workdir  # config, state and log (the test's tmp_path)
        self.uid, self.gid = _mail_owner()
        # Socket paths must stay under 108 bytes and the mail tree reachable by the mail
        # user, so both live in a short directory of their own rather than in tmp_path.
        self.top = Path(tempfile.mkdtemp(prefix="hato-dovecot-"))
        os.chmod(self.top, 0o711)
        self.base_dir = self.top / "run"
        self.data_dir = self.top / "data"  # a Hato data directory
        self.mailboxes = self.data_dir / "mailboxes"  # MaildirAgent's root
        self.config = workdir / "dovecot.conf"
        self.log_path = workdir / "dovecot.log"
        self.port = 0
        self.lmtp_socket = self.base_dir / "hato-lmtp"
        self.auth_userdb = self.base_dir / "auth-userdb"
        self.auth_client = self.base_dir / "auth-client"
        self.lmtp_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._output = workdir / "dovecot.out"
        self._sessions: list[imaplib.IMAP4] = []

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "state").mkdir(exist_ok=True)
        self.mailboxes.mkdir(parents=True, exist_ok=True)
        (self.top / "homes").mkdir(exist_ok=True)
        self.adopt(self.data_dir)
        self.adopt(self.top / "homes")
        for attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            self.lmtp_port = _free_port() if self.lmtp else 0
            self._write_config()
            if self._launch():
                return
            if attempt + 1 == START_ATTEMPTS or "Address already in use" not in self.log():
                raise AssertionError(f"dovecot did not start:\n{self.log()}")

    def _write_config(self) -> None:
        extra = ""
        if self.lmtp:
            extra = LMTP_CONFIG.format(
                quota=QUOTA, lmtp_socket_name=self.lmtp_socket.name, lmtp_port=self.lmtp_port
            )
        self.config.write_text(
            CONFIG.format(
                mechanisms="plain login",
                databases=self._databases(),
                base_dir=self.base_dir,
                state_dir=self.workdir / "state",
                log=self.log_path,
                uid=self.uid,
                gid=self.gid,
                mailboxes=self.mailboxes,
                homes=self.top / "homes",
                password=PASSWORD,
                port=self.port,
            )
            + extra
        )

    def _databases(self) -> str:
        fields = {"uid": self.uid, "gid": self.gid, "homes": self.top / "homes"}
        if self.checkpassword is not None:
            return CHECKPASSWORD_DATABASES.format(checkpassword=self.checkpassword, **fields)
        if self.users is None:
            return STATIC_DATABASES.format(password=PASSWORD, **fields)
        passwd = self.top / "users.passwd"  # the auth process (user dovecot) reads it
        homes = self.top / "homes"
        passwd.write_text(
            "".join(
                f"{user}:{PASSWORD}:{self.uid}:{self.gid}::{homes}/{user}::\n"
                for user in self.users
            )
        )
        os.chmod(passwd, 0o644)
        return PASSWD_FILE_DATABASES.format(passwd=passwd)

    def _launch(self) -> bool:
        """Run dovecot in the foreground; True once it greets on its port."""
        with open(self._output, "ab") as output:
            self._proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            listening = self._greets() and self.auth_client.exists()
            if listening and (not self.lmtp or self._lmtp_listens()):
                return True
            time.sleep(0.05)
        self.close()
        raise AssertionError(f"dovecot did not listen within {START_TIMEOUT} s:\n{self.log()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as conn:
                return conn.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def _lmtp_listens(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.lmtp_port), timeout=1.0) as conn:
                return conn.recv(64).startswith(b"220") and self.lmtp_socket.exists()
        except OSError:
            return False

    def close(self) -> None:
        """Log out every session, stop the server (ours only, by its PID), remove its files."""
        try:
            for session in self._sessions:
                if session.state != "LOGOUT":
                    with contextlib.suppress(OSError, imaplib.IMAP4.error):
                        session.logout()
            self._sessions.clear()
        finally:
            self._stop()
            shutil.rmtree(self.top, ignore_errors=True)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # the master stops its own children
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- use ------------------------------------------------------------------------------

    def imap(self, address: str, password: str = PASSWORD) -> imaplib.IMAP4:
        """A session logged in as ``address``; logged out at teardown."""
        session = imaplib.IMAP4("127.0.0.1", self.port, timeout=IMAP_TIMEOUT)
        self._sessions.append(session)
        session.login(address, password)
        return session

    def adopt(self, path: Path | None = None) -> None:
        """Hand ``path`` (default: the whole mail tree) to Dovecot's mail user.

        Needed only when the tests run as root: files Hato wrote then belong to root and
        are private (0600), which Dovecot's unprivileged mail processes cannot read.
        """
        if os.geteuid() != 0 or self.uid == 0:
            return
        top = path or self.mailboxes
        os.chown(top, self.uid, self.gid)
        for directory, subdirs, files in os.walk(top):
            for name in subdirs + files:
                os.chown(os.path.join(directory, name), self.uid, self.gid, follow_symlinks=False)

    def log(self) -> str:
        """What Dovecot logged, for failure messages."""
        parts = []
        for path in (self.log_path, self._output):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_text("utf-8", errors="replace"))
        return "".join(parts)


@contextlib.contextmanager
def start_dovecot(
    workdir: Path,
    *,
    lmtp: bool = False,
    users: tuple[str, ...] | None = None,
    checkpassword: str | None = None,
) -> Iterator[Dovecot]:
    """A started private Dovecot, stopped on exit (skips when Dovecot is not installed)."""
    binary = find_dovecot()
    if lmtp and not os.access("/usr/lib/dovecot/lmtp", os.X_OK):
        pytest.skip("dovecot-lmtpd is not installed: run make system-deps as root")
    server = Dovecot(binary, workdir, lmtp=lmtp, users=users, checkpassword=checkpassword)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(name="dovecot")
def dovecot_fixture(tmp_path: Path) -> Iterator[Dovecot]:
    """A started private Dovecot (skips when Dovecot is not installed)."""
    with start_dovecot(tmp_path / "dovecot") as server:
        yield server
