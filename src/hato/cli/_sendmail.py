"""``sendmail`` (and ``hato sendmail``): mail from local programs, into the maildrop.

The message is written whole into ``DATA/maildrop/`` (synced, then renamed in), so exit 0
means it is durable, whether a server runs or not; the running server takes it within a
second, a stopped one at its next start, through the intake like any other message. Any
user may submit (the maildrop is world-writable and sticky, the file's owner says who
submitted); only the data directory's owner reads the queue (``-bp``) or flushes it (``-q``).
Every failure is one line on stderr and a sysexits code, never a traceback.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, NoReturn

import click

from ..config import Settings, read_server_record
from ..drop import (
    MAILDROP_DIR,
    Drop,
    DropError,
    crlf,
    header_recipients,
    prepare_directories,
    write_drop,
)
from ..smtp import AddressError, parse_path
from ..spool import Recipient, SpoolError
from ._common import data_settings
from ._sendmail_args import EX_USAGE, USAGE, Options, UsageError, parse_args

__all__ = [
    "EX_CANTCREAT",
    "EX_DATAERR",
    "EX_NOPERM",
    "EX_NOUSER",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_USAGE",
    "Failure",
    "main",
    "run",
    "sendmail",
    "submit",
]

# sysexits.h
EX_DATAERR = 65  # the message cannot be taken as it is
EX_NOUSER = 67  # a recipient address that is not one
EX_SOFTWARE = 70  # our own bug
EX_CANTCREAT = 73  # the maildrop file cannot be written
EX_TEMPFAIL = 75  # try again later
EX_NOPERM = 77  # not allowed to this user
EX_CONFIG = 78  # no data directory, or a configuration with errors
SPOOL_INDEX = "spool.sqlite3"


class Failure(Exception):
    """What to say on stderr, and the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_message(stream: BinaryIO, *, dot_ends: bool, max_size: int) -> bytes:
    """The message from ``stream``: to its end, or (unless ``-i``) to a line of one dot."""
    if not dot_ends:
        data = stream.read(max_size + 1)
    else:
        lines, size = [], 0
        for line in stream:
            if line.rstrip(b"\r\n") == b".":
                break
            lines.append(line)
            size += len(line)
            if size > max_size:
                break
        data = b"".join(lines)
    if len(data) > max_size:
        raise Failure(EX_DATAERR, f"message larger than smtp.max_message_size ({max_size} bytes)")
    return crlf(data)


def _addresses(texts: Sequence[str]) -> list[str]:
    """Addresses as programs pass them: ``a@b``, ``Name <a@b>``, ``a@b, c@d``, ``user``."""
    found: list[str] = []
    for text in texts:
        parsed = [address for _, address in email.utils.getaddresses([text]) if address]
        found += parsed or ([text.strip()] if text.strip() else [])  # refused by _checked
    return found


def _checked(address: str) -> str:
    qualified = address if "@" in address else f"{address}@localhost"
    try:
        parse_path(f"<{qualified}>", utf8=True, allow_null=False)
    except AddressError as error:
        raise Failure(EX_NOUSER, f"{address}: not a valid address ({error})") from None
    return address


def submit(options: Options, settings: Settings, message: bytes) -> str:
    """Write the message into the maildrop; its file name."""
    recipients = _addresses(options.recipients)
    if options.extract:
        try:
            found, message = header_recipients(message)
        except DropError as error:
            raise Failure(EX_DATAERR, f"-t: {error}") from None
        recipients += found
        if not recipients:
            raise Failure(EX_DATAERR, "-t: no recipient addresses found in the header")
    if not recipients:
        raise Failure(
            EX_USAGE, "no recipients given (name them, or take them from the header with -t)"
        )
    if options.sender:
        _checked(options.sender)
    _known_here(settings, list(dict.fromkeys(recipients)))
    drop = Drop(
        sender=options.sender,
        recipients=tuple(
            Recipient(address=_checked(a), notify=options.notify) for a in dict.fromkeys(recipients)
        ),
        ret=options.ret,
        envid=options.envid,
        full_name=options.full_name,
    )
    return write_maildrop(settings.server.data_dir, drop, message)


def _known_here(settings: Settings, recipients: list[str]) -> None:
    """Refuse a local recipient nobody answers to, when this user may read the accounts
    (Hato's user, root); for anyone else the queue's bounce says it."""
    from ..accounts import ACCOUNTS_FILE, AccountError, AccountStore
    from ..routing import LocalRouter, Unknown

    data_dir, accounts = settings.server.data_dir, settings.accounts
    path = data_dir / ACCOUNTS_FILE
    if not _owns(data_dir) or not os.access(path, os.R_OK):
        return
    try:
        store = AccountStore(
            path,
            case_sensitive=accounts.case_sensitive_local_parts,
            config_domains=settings.server.local_domains,
        )
    except AccountError:
        return  # unreadable now: the queue decides later
    try:
        router = LocalRouter(
            store,
            config_domains=settings.server.local_domains,
            hostname=settings.server.hostname,
            delimiter=accounts.recipient_delimiter,
            case_sensitive=accounts.case_sensitive_local_parts,
            postmaster=accounts.postmaster,
        )
        for address in recipients:
            qualified = address if "@" in address else f"{address}@{settings.server.hostname}"
            with contextlib.suppress(AccountError):
                if isinstance(router.lookup(qualified), Unknown):
                    raise Failure(EX_NOUSER, f"{address}: user unknown")
    finally:
        store.close()


def write_maildrop(data_dir: Path, drop: Drop, message: bytes) -> str:
    maildrop = data_dir / MAILDROP_DIR
    try:
        try:
            return write_drop(maildrop, drop, message)
        except FileNotFoundError:
            if not _owns(data_dir):
                raise
            prepare_directories(data_dir)  # before the first hato serve made it
            return write_drop(maildrop, drop, message)
    except FileNotFoundError:
        raise Failure(EX_TEMPFAIL, f"no maildrop at {maildrop}: hato serve makes it") from None
    except PermissionError:
        raise Failure(EX_NOPERM, f"cannot write into {maildrop}: permission denied") from None
    except OSError as error:
        code = EX_TEMPFAIL if error.errno in (errno.ENOSPC, errno.EDQUOT) else EX_CANTCREAT
        raise Failure(code, f"cannot write into {maildrop}: {error.strerror}") from None


def _owns(data_dir: Path) -> bool:
    return os.geteuid() in (0, data_dir.stat().st_uid)


def _queue_readable(data_dir: Path) -> None:
    if not _owns(data_dir) or not os.access(data_dir, os.R_OK | os.X_OK):
        raise Failure(EX_NOPERM, "the queue is readable by its owner alone (permission denied)")


def _list(options: Options, settings: Settings) -> int:
    from ._queue import queue

    data_dir = settings.server.data_dir
    _queue_readable(data_dir)
    args = ["list", "--data-dir", str(data_dir)]
    if options.config is not None:
        args += ["--config", str(options.config)]
    try:
        queue.main(args, prog_name="mailq", standalone_mode=False)
    except click.ClickException as error:
        raise Failure(EX_TEMPFAIL, error.format_message()) from None
    waiting = _maildrop_files(data_dir)
    if waiting:
        click.echo(f"{waiting} in the maildrop, not yet taken by hato serve")
    return 0


def _maildrop_files(data_dir: Path) -> int:
    try:
        with os.scandir(data_dir / MAILDROP_DIR) as entries:
            return sum(1 for e in entries if not e.name.startswith(".") and e.is_file())
    except OSError:
        return 0


def _flush(settings: Settings) -> int:
    from ..spool import QueueState, flush_messages

    data_dir = settings.server.data_dir
    _queue_readable(data_dir)
    record = read_server_record(data_dir)
    if record is None or not record.running:
        raise Failure(
            EX_TEMPFAIL, f"no hato serve runs on {data_dir}: it delivers the queue when it starts"
        )
    if not (data_dir / SPOOL_INDEX).exists():
        click.echo("Mail queue is empty")
        return 0
    try:
        with QueueState(data_dir) as state:
            result = flush_messages(state, ())
    except SpoolError as error:
        raise Failure(EX_TEMPFAIL, str(error)) from None
    click.echo(f"{result.scheduled} recipients scheduled for delivery now (pid {record.pid})")
    return 0


def _run(argv: list[str], stdin: BinaryIO) -> int:
    options = parse_args(argv)
    if options.mode == "help":
        print(USAGE)
        return 0
    for warning in options.warnings:
        print(f"sendmail: warning: {warning}", file=sys.stderr)
    try:
        settings = data_settings(options.config, options.data_dir)
    except SystemExit:
        return EX_CONFIG  # the reasons are printed
    if options.mode == "newaliases":
        print("sendmail: aliases live in Hato's account store (hato alias): nothing to rebuild")
        return 0
    if options.mode == "list":
        return _list(options, settings)
    if options.mode == "flush":
        return _flush(settings)
    if options.mode == "smtp":
        from ._sendmail_smtp import smtp_session

        return smtp_session(settings, stdin, sys.stdout.buffer, options)
    message = read_message(
        stdin, dot_ends=options.dot_ends, max_size=settings.smtp.max_message_size
    )
    name = submit(options, settings, message)
    if options.verbose:
        print(
            f"sendmail: queued in {settings.server.data_dir / MAILDROP_DIR} as {name}",
            file=sys.stderr,
        )
    return 0


def run(argv: list[str], stdin: BinaryIO | None = None) -> int:
    """The exit status of ``sendmail ARGS``: 0, or a sysexits code after one stderr line."""
    try:
        return _run(argv, stdin if stdin is not None else sys.stdin.buffer)
    except UsageError as error:
        print(f"sendmail: {error}", file=sys.stderr)
        return EX_USAGE
    except Failure as error:
        print(f"sendmail: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("sendmail: interrupted: nothing was queued", file=sys.stderr)
        return EX_TEMPFAIL
    except Exception as error:  # our bug: said in one line, never a traceback
        print(f"sendmail: internal error: {error!r}", file=sys.stderr)
        return EX_SOFTWARE


def main() -> NoReturn:
    """The ``sendmail`` console script (link it as /usr/sbin/sendmail)."""
    os.umask(0o077)
    sys.exit(run(sys.argv[1:]))


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sendmail(args: tuple[str, ...]) -> None:
    """Send a message as sendmail does: sendmail [-t] [-i] [-f SENDER] [RECIPIENT...]."""
    raise SystemExit(run(list(args)))
