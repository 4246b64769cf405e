"""``sendmail`` against a real ``hato serve``: options, exit codes, ``-bs``, real callers
(``mail(1)`` from bsd-mailx, ``git send-email``), a stopped server, and an unprivileged user.

One server serves the module; its data directory lies outside pytest's private temporary
directory, so the unprivileged user (``nobody``) can reach the maildrop as on a real host.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import HatoProcess
from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.mailauth import MailDns, verify_dkim

if TYPE_CHECKING:
    from collections.abc import Callable

SENDMAIL = Path(sys.executable).with_name("sendmail")
USER = "bob@localhost"


@pytest.fixture(scope="module")
def top() -> Iterator[Path]:
    # Searchable by everyone (as /var/lib is), unlike pytest's 0700 temporary directories.
    path = Path(tempfile.mkdtemp(prefix="hato-sendmail-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(top: Path) -> Iterator[HatoProcess]:
    process = HatoProcess(top / "data")
    process.add_user(USER)
    process.add_user("alice@localhost")
    process.start()
    try:
        yield process
    finally:
        process.close()


def sendmail(
    hato: HatoProcess, *args: str, stdin: bytes = b"", prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[bytes]:
    command = [*prefix, str(SENDMAIL), "--data-dir", str(hato.data_dir), *args]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=60, check=False)


def inbox(hato: HatoProcess, address: str = USER) -> Path:
    local, _, domain = address.partition("@")
    return hato.data_dir / "mailboxes" / domain / local / "new"


def messages(hato: HatoProcess, address: str = USER) -> list[email.message.EmailMessage]:
    folder = inbox(hato, address)
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        found.append(parsed)
    return found


def arrived(hato: HatoProcess, subject: str, address: str = USER) -> email.message.EmailMessage:
    def find() -> email.message.EmailMessage | None:
        matching = [m for m in messages(hato, address) if m["Subject"] == subject]
        assert len(matching) <= 1, f"{subject!r} delivered {len(matching)} times"
        return matching[0] if matching else None

    found: email.message.EmailMessage = hato.poll(find, what=f"{subject!r} in {address}")
    return found


def test_a_message_arrives_with_the_fields_of_a_local_submission(server: HatoProcess) -> None:
    done = sendmail(
        server, "-oi", "-F", "Cron Daemon", USER, stdin=b"Subject: basic\n\nfirst line\n.\nlast\n"
    )
    assert done.returncode == 0, done.stderr
    message = arrived(server, "basic")
    received = message.get_all("Received")[0]
    assert "from userid 0 (root)" in received and server.hostname in received
    assert message["From"] == f"Cron Daemon <root@{server.hostname}>"
    assert message["Date"] and message["Message-ID"]
    assert message["X-Authentication-Warning"] is None  # root may set any sender
    # -oi: a line of a single dot is text, not the end of the message.
    assert message.get_content().splitlines() == ["first line", ".", "last"]
    taken = server.wait_for_event("drop_taken", directory="maildrop")
    assert taken["user"] == "0 root"


def test_without_i_a_single_dot_ends_the_message(server: HatoProcess) -> None:
    stdin = b"Subject: dot\n\nbefore\n.\nafter the end\n"
    assert sendmail(server, "-f", "sender@example.org", USER, stdin=stdin).returncode == 0
    message = arrived(server, "dot")
    assert message.get_content().splitlines() == ["before"]
    assert message["Return-Path"] in (None, "<sender@example.org>")


def test_t_takes_to_cc_and_bcc_and_removes_bcc(server: HatoProcess) -> None:
    stdin = (
        b"From: Robot <robot@localhost>\nTo: bob@localhost\nBcc: alice@localhost\n"
        b"Subject: extracted\n\nhello\n"
    )
    assert sendmail(server, "-t", "-i", stdin=stdin).returncode == 0
    for address in (USER, "alice@localhost"):
        message = arrived(server, "extracted", address)
        assert message["Bcc"] is None
        assert message["From"] == "Robot <robot@localhost>"


def test_dsn_options_are_kept_on_the_envelope(server: HatoProcess) -> None:
    # A recipient at the held domain stays queued, so its envelope can be read.
    stdin = b"Subject: dsn\n\nx\n"
    done = sendmail(
        server,
        "-N",
        "failure,delay",
        "-R",
        "hdrs",
        "-V",
        "env-1",
        "x@relay.test.example",
        stdin=stdin,
    )
    assert done.returncode == 0, done.stderr

    def queued() -> list[object]:
        return [m for m in server.queue() if m.envelope.envid == "env-1"]

    (message,) = server.poll(queued, what="the DSN message queued")
    assert message.envelope.ret == "HDRS"  # type: ignore[attr-defined]
    assert message.envelope.recipients[0].notify == ("FAILURE", "DELAY")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "stdin", "code", "words"),
    [
        ((), b"Subject: x\n\n", 64, "no recipients"),
        (("-t",), b"Subject: x\n\n", 65, "no recipient addresses"),
        (("not an address@@",), b"x\n", 67, "not a valid address"),
        (("-bz", USER), b"", 64, "-bz"),
        (("-N", "sometimes", USER), b"", 64, "-N"),
        (("-f",), b"", 64, "-f needs a value"),
    ],
)
def test_errors_are_one_line_and_a_sysexits_code(
    server: HatoProcess, args: tuple[str, ...], stdin: bytes, code: int, words: str
) -> None:
    done = sendmail(server, *args, stdin=stdin)
    assert done.returncode == code, done.stderr
    assert words in done.stderr.decode()
    assert b"Traceback" not in done.stderr


def test_too_large_is_a_data_error(server: HatoProcess) -> None:
    stdin = b"Subject: big\n\n" + b"y" * (64 * 1024 * 1024 + 10)  # smtp.max_message_size
    big = sendmail(server, USER, stdin=stdin)
    assert big.returncode == 65, big.stderr
    assert b"larger than smtp.max_message_size" in big.stderr


def test_hato_sendmail_is_the_same_command(server: HatoProcess) -> None:
    done = subprocess.run(
        [
            str(SENDMAIL.with_name("hato")),
            "sendmail",
            "--data-dir",
            str(server.data_dir),
            "-i",
            USER,
        ],
        input=b"Subject: subcommand\n\n.\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert arrived(server, "subcommand").get_content().strip() == "."


def test_unknown_options_are_ignored_with_a_warning(server: HatoProcess) -> None:
    done = sendmail(server, "-x", "-oQ/tmp", "-odb", USER, stdin=b"Subject: unknown\n\nx\n")
    assert done.returncode == 0, done.stderr
    assert b"warning: -x" in done.stderr
    arrived(server, "unknown")


def test_bs_runs_an_smtp_dialog_on_stdin(server: HatoProcess) -> None:
    dialog = (
        b"EHLO client\r\nMAIL FROM:<bs@localhost>\r\nRCPT TO:<bob@localhost>\r\n"
        b"RCPT TO:<broken\r\nDATA\r\nSubject: bs\r\n\r\n..dotted\r\n.\r\nQUIT\r\n"
    )
    done = sendmail(server, "-bs", stdin=dialog)
    assert done.returncode == 0, done.stderr
    codes = [line[:4] for line in done.stdout.decode().splitlines()]
    assert codes[0] == "220 " and "250 " in codes
    assert any(code.startswith("501") for code in codes)  # the engine's syntax error
    assert b"354 " in done.stdout and b"queued as" in done.stdout and codes[-1] == "221 "
    message = arrived(server, "bs")
    assert message.get_content().strip() == ".dotted"  # dot-unstuffed


def test_bp_lists_and_q_flushes(server: HatoProcess) -> None:
    listed = sendmail(server, "-bp")
    assert listed.returncode == 0, listed.stderr
    assert b"Mail queue is empty" in listed.stdout or b"relay.test.example" in listed.stdout
    flushed = sendmail(server, "-q")
    assert flushed.returncode == 0, flushed.stderr
    assert b"scheduled for delivery now" in flushed.stdout


def test_mail_1_from_bsd_mailx(server: HatoProcess, tmp_path: Path) -> None:
    mail = shutil.which("bsd-mailx") or shutil.which("mail")
    if mail is None:
        pytest.skip("mail(1) is not installed (Debian package bsd-mailx)")
    wrapper = tmp_path / "sendmail-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {SENDMAIL} --data-dir {server.data_dir} "$@"\n')
    wrapper.chmod(0o755)
    mailrc = tmp_path / "mailrc"
    mailrc.write_text(f"set sendmail={wrapper}\n")
    env = {**os.environ, "MAILRC": str(mailrc), "HOME": str(tmp_path)}
    done = subprocess.run(
        [mail, "-s", "from mailx", USER],
        input=b"written by mail(1)\n",
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    message = arrived(server, "from mailx")
    assert "written by mail(1)" in message.get_content()


def test_git_send_email(server: HatoProcess, tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    exec_path = subprocess.run([git, "--exec-path"], capture_output=True, text=True, check=True)
    if not (Path(exec_path.stdout.strip()) / "git-send-email").exists():
        pytest.skip("git send-email is not installed (Debian package git-email)")
    if subprocess.run(["perl", "-MMail::Address", "-e1"], capture_output=True).returncode:
        pytest.skip(
            "git send-email needs the Perl module Mail::Address, which is not installed"
            " (Debian package libmailtools-perl, recommended by git-email)"
        )
    repo = tmp_path / "repo"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "GIT_AUTHOR_NAME": "Ann Author",
        "GIT_AUTHOR_EMAIL": "ann@localhost",
        "GIT_COMMITTER_NAME": "Ann Author",
        "GIT_COMMITTER_EMAIL": "ann@localhost",
    }

    def run(*args: str, cwd: Path = repo) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([git, *args], cwd=cwd, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done

    run("init", "-q", str(repo), cwd=tmp_path)
    (repo / "file.txt").write_text("hello\n")
    run("add", "file.txt")
    run("commit", "-q", "-m", "Add a file for the patch mail")
    command = f"{SENDMAIL} --data-dir {server.data_dir}"
    run(
        "send-email",
        "--confirm=never",
        "--quiet",
        f"--sendmail-cmd={command}",
        "--to",
        USER,
        "--from",
        "Ann Author <ann@localhost>",
        "-1",
    )
    message = arrived(server, "[PATCH] Add a file for the patch mail")
    assert message["From"] == "Ann Author <ann@localhost>"
    assert "+hello" in message.get_content()


def test_a_user_submits_but_reads_neither_spool_nor_mailboxes(server: HatoProcess) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    done = sendmail(server, USER, stdin=b"Subject: from nobody\n\nunprivileged\n", prefix=nobody)
    assert done.returncode == 0, done.stderr
    message = arrived(server, "from nobody")
    assert "(nobody)" in message.get_all("Received")[0]
    assert message["From"] == f"nobody <nobody@{server.hostname}>" or "nobody@" in message["From"]
    # -f by a user who is not the server's: accepted, and said so.
    forged = sendmail(
        server, "-f", "ceo@localhost", USER, stdin=b"Subject: forged\n\nx\n", prefix=nobody
    )
    assert forged.returncode == 0, forged.stderr
    warning = arrived(server, "forged")["X-Authentication-Warning"]
    assert warning == f"{server.hostname}: nobody set sender to ceo@localhost using -f"
    # Reading the spool, a mailbox, the maildrop's listing: refused by the kernel.
    for command, path in [
        ("cat", "spool.sqlite3"),
        ("ls", "spool"),
        ("ls", "mailboxes/localhost/bob/new"),
        ("ls", "maildrop"),
        ("ls", "."),
    ]:
        read = subprocess.run(
            [*nobody, command, str(server.data_dir / path)], capture_output=True, check=False
        )
        assert read.returncode != 0, (command, path)
        assert b"Permission denied" in read.stderr, (path, read.stderr)
    listed = sendmail(server, "-bp", prefix=nobody)
    assert listed.returncode == 77, listed.stderr
    assert stat.S_IMODE((server.data_dir / "maildrop").stat().st_mode) == 0o3733


def test_submitted_while_stopped_is_delivered_once_at_start(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = hato_factory()
    hato.add_user(USER)
    hato.start()
    hato.stop()
    done = sendmail(hato, USER, stdin=b"Subject: while stopped\n\nwaiting\n")
    assert done.returncode == 0, done.stderr
    assert not inbox(hato, USER).is_dir() or not any(inbox(hato, USER).iterdir())
    listed = sendmail(hato, "-bp")
    assert b"1 in the maildrop, not yet taken by hato serve" in listed.stdout, listed
    flushed = sendmail(hato, "-q")
    assert flushed.returncode == 75
    assert b"no hato serve runs on" in flushed.stderr
    # What a sendmail killed mid-write leaves: removed once a day old, never taken.
    stale, fresh = hato.data_dir / "maildrop" / ".OLD.1", hato.data_dir / "maildrop" / ".NEW.2"
    for partial in (stale, fresh):
        partial.write_bytes(b"HATO-MAILDROP 1\n")
    os.utime(stale, (1_700_000_000, 1_700_000_000))
    hato.start()
    arrived(hato, "while stopped")
    assert not stale.exists() and fresh.exists()
    hato.stop()
    hato.start()  # a second start finds nothing left to take
    assert len(messages(hato)) == 1
    assert len(hato.events("drop_taken")) == 1


def test_mail_from_a_local_domain_is_dkim_signed(
    hato_factory: Callable[..., HatoProcess], dns_server: DnsServer
) -> None:
    domain = "signer.test"
    options = (f'dns.nameservers=["{dns_server.address}"]', "dns.timeout=2")
    hato = hato_factory(extra_args=tuple(a for o in options for a in ("-o", o)))
    hato.add_user(USER)
    added = hato.cli("domain", "add", domain)  # with its DKIM key
    assert added.returncode == 0, added.stderr
    records = hato.cli("dkim", "dns", domain)
    for line in records.stdout.splitlines():
        if line.startswith("zone:"):
            owner, _, rest = line.removeprefix("zone:").strip().partition(" IN TXT ")
            dns_server.add(owner.removesuffix("."), "TXT", rest.strip()[1:-1].strip())
    hato.start()
    stdin = f"From: Ops <ops@{domain}>\nSubject: signed\n\nsigned by Hato\n".encode()
    assert sendmail(hato, "-f", f"ops@{domain}", USER, stdin=stdin).returncode == 0
    arrived(hato, "signed")
    (path,) = inbox(hato).iterdir()
    stored = path.read_bytes()
    signed = b"DKIM-Signature:" + stored.split(b"DKIM-Signature:", 1)[1]
    (result,) = verify_dkim(MailDns([dns_server.nameserver], 2.0), signed)
    assert (result.result, result.domain) == ("pass", domain)
    # The signature covers the fields the intake added for a local submission.
    assert signed.index(b"DKIM-Signature:") < signed.index(b"Received: by")


def test_an_unknown_local_user_is_refused_when_the_accounts_are_readable(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = hato_factory(accept_all=False)
    hato.add_user(USER)  # the data directory and its accounts, no server needed
    unknown = sendmail(hato, "nosuchuser@localhost", stdin=b"Subject: x\n\nx\n")
    assert unknown.returncode == 67, unknown.stderr
    assert unknown.stderr == b"sendmail: nosuchuser@localhost: user unknown\n"
    maildrop = hato.data_dir / "maildrop"
    assert not maildrop.exists()  # nothing written (the first submission makes it)
    assert sendmail(hato, "bob", "someone@example.net", stdin=b"x\n").returncode == 0
    assert len([p for p in maildrop.iterdir() if p.is_file()]) == 1
