"""``hato mailbox list|show``: read what local delivery stored, without an IMAP client.

Only reads: files are never moved or flagged, so an IMAP server beside us sees the
mailbox unchanged. A mailbox that does not exist exits with 1, malformed input with 2.
"""

from __future__ import annotations

import json
import os
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

import click

from ..accounts import InvalidInput, parse_address
from ..delivery import MaildirAgent, MaildirMessage
from ..events import printable
from ._common import config_options, data_settings

__all__ = ["mailbox"]

# Column widths of `mailbox list`: long values are cut, the full ones are in --json.
_FROM_WIDTH = 28
_SUBJECT_WIDTH = 40
_RAW_CHUNK = 256 * 1024  # --raw copies a message in pieces, whatever its size


@click.group()
def mailbox() -> None:
    """Read the mail stored in local mailboxes (DATA/mailboxes)."""


class _Mailbox:
    """One address's mailbox: the agent that knows its layout, and its name parts."""

    def __init__(self, address: str, config_path: Path | None, data_dir: Path | None) -> None:
        settings = data_settings(config_path, data_dir)
        try:
            parsed = parse_address(address)
        except InvalidInput as exc:
            raise click.UsageError(str(exc)) from None
        case_sensitive = settings.accounts.case_sensitive_local_parts
        self.address = address
        self.domain = parsed.domain
        self.local_part = parsed.local_part if case_sensitive else parsed.local_part.lower()
        self.agent = MaildirAgent(
            settings.server.data_dir / "mailboxes", hostname=settings.server.hostname
        )
        try:
            directory = self.agent.mailbox_dir(self.domain, self.local_part)
        except ValueError as exc:
            raise click.UsageError(f"{address}: {exc}") from None
        if not directory.is_dir() and not case_sensitive:
            self.local_part = _stored_spelling(directory) or self.local_part

    def messages(self) -> list[MaildirMessage]:
        """The messages, oldest first; exit 1 if there is no such mailbox."""
        if not self.agent.mailbox_dir(self.domain, self.local_part).is_dir():
            click.echo(f"no mail for {self.address}", err=True)
            raise SystemExit(1)
        return self.agent.messages(self.domain, self.local_part)


def _stored_spelling(directory: Path) -> str | None:
    """The local part of a mailbox directory that differs from ``directory`` only in case.

    The account store keeps local parts as they were written ("Alice"), and delivery names
    the directory after that spelling; with case-insensitive local parts any spelling of
    the address must find it. Directory names decode back with ``unquote`` because every
    "%" in them is an escape.
    """
    wanted = directory.name.casefold()
    try:
        with os.scandir(directory.parent) as entries:
            names = sorted(e.name for e in entries if e.is_dir() and e.name.casefold() == wanted)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return unquote(names[0], errors="surrogatepass") if names else None


def _as_dict(number: int, message: MaildirMessage) -> dict[str, object]:
    return {
        "number": number,
        "date": message.date,
        "from": message.from_,
        "subject": message.subject,
        "message_id": message.message_id,
        "size": message.size,
        "folder": message.folder,
        "flags": message.flags,
        "name": message.name,
        "path": str(message.path),
        "mtime": message.mtime,
    }


def _short_date(message: MaildirMessage) -> str:
    try:
        moment = parsedate_to_datetime(message.date).astimezone()
    except (TypeError, ValueError, IndexError):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(message.mtime))
    return moment.strftime("%Y-%m-%d %H:%M")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@mailbox.command("list")
@config_options
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of messages.")
def list_(config_path: Path | None, data_dir: Path | None, address: str, as_json: bool) -> None:
    """List the messages of ADDRESS (local@domain), oldest first."""
    messages = _Mailbox(address, config_path, data_dir).messages()
    if as_json:
        click.echo(json.dumps([_as_dict(n, m) for n, m in enumerate(messages, 1)], indent=2))
        return
    if not messages:
        click.echo(f"no mail for {address}")
        return
    click.echo(
        f"{'#':>4}  {'Date':<16}  {'From':<{_FROM_WIDTH}}  {'Subject':<{_SUBJECT_WIDTH}}"
        f"  {'Size':>9}  Folder"
    )
    for number, message in enumerate(messages, 1):
        click.echo(
            f"{number:>4}  {_short_date(message):<16}"
            f"  {_cut(printable(message.from_), _FROM_WIDTH):<{_FROM_WIDTH}}"
            f"  {_cut(printable(message.subject), _SUBJECT_WIDTH):<{_SUBJECT_WIDTH}}"
            f"  {message.size:>9}  {message.folder}"
        )


def _select(messages: list[MaildirMessage], which: str, address: str) -> tuple[int, MaildirMessage]:
    """The message numbered ``which`` (1-based, as `list` shows) or with that Message-ID."""
    if which.isdigit():
        number = int(which)
        if 1 <= number <= len(messages):
            return number, messages[number - 1]
        click.echo(f"{address} has no message {number} (it holds {len(messages)})", err=True)
        raise SystemExit(1)
    wanted = which.strip().removeprefix("<").removesuffix(">")
    if not wanted:
        raise click.UsageError(f"{which!r} is neither a message number nor a Message-ID")
    for number, message in enumerate(messages, 1):
        if message.message_id.removeprefix("<").removesuffix(">") == wanted:
            return number, message
    click.echo(f"{address} has no message with Message-ID <{wanted}>", err=True)
    raise SystemExit(1)


@mailbox.command()
@config_options
@click.argument("address")
@click.argument("which", metavar="N|MESSAGE-ID")
@click.option("--json", "as_json", is_flag=True, help="The message's summary and header as JSON.")
@click.option("--raw", is_flag=True, help="The exact stored bytes, CRLF line ends included.")
def show(
    config_path: Path | None,
    data_dir: Path | None,
    address: str,
    which: str,
    as_json: bool,
    raw: bool,
) -> None:
    """Show one message of ADDRESS: N from `list`, or its Message-ID (<> optional)."""
    if as_json and raw:
        raise click.UsageError("--json and --raw exclude each other")
    number, message = _select(_Mailbox(address, config_path, data_dir).messages(), which, address)
    try:
        with open(message.path, "rb") as file:
            if raw:
                _copy_raw(file)
            elif as_json:
                summary = _as_dict(number, message)
                summary["header"] = _text(b"".join(_header(file)))
                click.echo(json.dumps(summary, indent=2))
            else:
                for line in file:
                    # The sender wrote it: a person reads it, a terminal must not obey it.
                    click.echo(printable(_text(line), lines=True), nl=False)
    except FileNotFoundError:
        # An IMAP server moved it to cur/ or expunged it since we listed the mailbox.
        click.echo(f"message {number} of {address} is gone; list the mailbox again", err=True)
        raise SystemExit(1) from None


def _copy_raw(file: BinaryIO) -> None:
    while chunk := file.read(_RAW_CHUNK):
        click.echo(chunk, nl=False)  # bytes go to the binary stream untouched


def _header(file: BinaryIO) -> list[bytes]:
    lines = []
    for line in file:
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line)
    return lines


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r\n", "\n")
