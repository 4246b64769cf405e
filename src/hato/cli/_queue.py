"""``hato queue``: the mail queue, in the spirit of mailq, postqueue -f and postsuper.

Changes (hold, release, flush, delete) are written to the spool's index; a running
``hato serve`` notices them within a second, and a stopped one finds them at start.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..events import printable
from ..spool import QueueEntry, QueueState, SpoolError, is_queue_id, message_path
from ._common import config_options, settings_from

__all__ = ["queue"]

# How much of a message `queue show` reads to find its header, unless --full.
HEADER_PREVIEW_BYTES = 64 * 1024
SPOOL_INDEX = "spool.sqlite3"


@click.group()
def queue() -> None:
    """Inspect and manage the mail queue."""


def _state(config_path: Path | None, data_dir: Path | None) -> QueueState | None:
    """The queue state; None when no server has created a spool there yet."""
    settings = settings_from(config_path, data_dir=data_dir)
    if not (settings.server.data_dir / SPOOL_INDEX).exists():
        return None
    try:
        return QueueState(settings.server.data_dir)
    except SpoolError as error:
        raise click.ClickException(str(error)) from None


def _check_ids(queue_ids: tuple[str, ...]) -> None:
    for queue_id in queue_ids:
        if not is_queue_id(queue_id):
            raise click.BadParameter(f"not a queue ID: {queue_id!r}", param_hint="QUEUE_ID")


@queue.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array of messages.")
def list_(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List queued messages, oldest first, with why each waits (like mailq)."""
    state = _state(config_path, data_dir)
    entries = []
    if state is not None:
        with state:
            entries = state.entries()
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
    elif not entries:
        click.echo("Mail queue is empty")
    else:
        _print_queue(entries)


def _print_queue(entries: list[QueueEntry]) -> None:
    click.echo(
        f"{'-Queue ID-':<16} {'--Size--':>9} {'----Arrival Time----':<20}  -Sender/Recipient-"
    )
    for entry in entries:
        envelope = entry.envelope
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(envelope.arrival))
        sender = envelope.reverse_path or "MAILER-DAEMON"
        mark = "!" if entry.held else " "  # as in mailq: ! is a held message
        click.echo(
            printable(f"{entry.queue_id + mark:<16} {entry.size:>9} {arrival:<20}  {sender}")
        )
        for recipient in entry.pending:
            if recipient.detail:
                when = time.strftime("%H:%M:%S", time.localtime(recipient.next_attempt))
                line = f"{'':<49}({recipient.status} {recipient.detail}; retry {when})"
                click.echo(printable(line))
            click.echo(printable(f"{'':<49}{recipient.address}"))
    total = sum(e.size for e in entries)
    noun = "Request" if len(entries) == 1 else "Requests"
    click.echo(f"-- {(total + 1023) // 1024} Kbytes in {len(entries)} {noun}.")


@queue.command()
@config_options
@click.argument("queue_id")
@click.option("--json", "as_json", is_flag=True, help="Envelope and state as JSON.")
@click.option("--full", is_flag=True, help="Print the whole message, not only its header.")
def show(
    config_path: Path | None, data_dir: Path | None, queue_id: str, as_json: bool, full: bool
) -> None:
    """Show one message: envelope, per-recipient state, then its header (like postcat -q)."""
    _check_ids((queue_id,))
    state = _state(config_path, data_dir)
    entry = None
    if state is not None:
        with state:
            entry = state.entry(queue_id)
    if state is None or entry is None:
        raise click.ClickException(f"{queue_id}: no such message in the queue")
    if as_json:
        click.echo(json.dumps(entry.to_dict(), indent=2))
        return
    try:
        with message_path(state.data_dir, queue_id).open("rb") as data:
            content = data.read() if full else _header(data.read(HEADER_PREVIEW_BYTES))
    except OSError as error:
        raise click.ClickException(f"{queue_id}: cannot read the message: {error}") from None
    _print_entry(entry)
    click.echo(f"*** MESSAGE {'CONTENTS' if full else 'HEADER'} {queue_id} ***")
    text = content.decode("utf-8", errors="replace").replace("\r\n", "\n")
    click.echo(printable(text, lines=True), nl=False)


def _print_entry(entry: QueueEntry) -> None:
    click.echo(f"*** ENVELOPE RECORDS {entry.queue_id}{' (held)' if entry.held else ''} ***")
    for key, value in entry.envelope.to_dict().items():
        if key == "arrival":
            value = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(float(value)))
        if key != "recipients":
            click.echo(printable(f"{key}: {value}"))
    for recipient, original in zip(entry.recipients, entry.envelope.recipients, strict=True):
        notify = ",".join(original.notify) or "-"
        line = f"recipient: {recipient.address} (notify={notify}) {recipient.state}"
        if recipient.detail:
            line += f" after {recipient.attempts} attempts: {recipient.status} {recipient.detail}"
        click.echo(printable(line))
    click.echo(f"size: {entry.size}")


def _header(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def _admin(config_path: Path | None, data_dir: Path | None) -> QueueState:
    state = _state(config_path, data_dir)
    if state is None:
        raise click.ClickException("the queue is empty (no spool yet)")
    return state


@queue.command()
@config_options
@click.argument("queue_ids", metavar="[QUEUE_ID]...", nargs=-1)
def flush(config_path: Path | None, data_dir: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Attempt delivery now: all deferred mail, or the given messages (postqueue -f / -i)."""
    _check_ids(queue_ids)
    with _admin(config_path, data_dir) as state:
        changed = state.reschedule(list(queue_ids) or None, 0.0)
    click.echo(f"{changed} recipients scheduled for delivery now")


@queue.command()
@config_options
@click.argument("queue_ids", metavar="QUEUE_ID...", nargs=-1, required=True)
def delete(config_path: Path | None, data_dir: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Remove messages from the queue without delivering them (postsuper -d)."""
    _check_ids(queue_ids)
    with _admin(config_path, data_dir) as state:
        removed = state.delete(list(queue_ids))
    click.echo(f"{removed} message(s) deleted")
    if removed < len(queue_ids):
        raise SystemExit(1)


def _set_held(
    config_path: Path | None, data_dir: Path | None, ids: tuple[str, ...], held: bool
) -> None:
    _check_ids(ids)
    missing = []
    with _admin(config_path, data_dir) as state:
        for queue_id in ids:
            if not state.set_held(queue_id, held):
                missing.append(queue_id)
    done = len(ids) - len(missing)
    click.echo(f"{done} message(s) {'placed on hold' if held else 'released from hold'}")
    if missing:
        raise click.ClickException(f"not in the queue: {', '.join(missing)}")


@queue.command()
@config_options
@click.argument("queue_ids", metavar="QUEUE_ID...", nargs=-1, required=True)
def hold(config_path: Path | None, data_dir: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Keep messages queued but never attempt them (postsuper -h)."""
    _set_held(config_path, data_dir, queue_ids, True)


@queue.command()
@config_options
@click.argument("queue_ids", metavar="QUEUE_ID...", nargs=-1, required=True)
def release(config_path: Path | None, data_dir: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Release held messages (postsuper -H)."""
    _set_held(config_path, data_dir, queue_ids, False)
