"""``hato queue``: the mail queue, in the spirit of mailq, postqueue -f and postsuper.

Changes (hold, release, flush, delete) are written to the spool's index; a running
``hato serve`` notices them within a second, and a stopped one finds them at start.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..config import read_server_record
from ..delivery import EXPLANATIONS, destinations, reason_of
from ..events import printable
from ..spool import (
    QueueEntry,
    QueueState,
    SpoolError,
    delete_messages,
    flush_messages,
    header_section,
    is_queue_id,
    list_entries,
    set_held,
)
from ._common import config_options, data_settings

__all__ = ["queue"]

SPOOL_INDEX = "spool.sqlite3"
ALL = "ALL"  # every queued message, for delete, hold and release (as postsuper says it)


@click.group()
def queue() -> None:
    """Inspect and manage the mail queue."""


def _state(config_path: Path | None, data_dir: Path | None) -> QueueState | None:
    """The queue state; None when no server has created a spool there yet."""
    settings = data_settings(config_path, data_dir)
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
    entries: list[QueueEntry] = []
    if state is not None:
        with state:
            entries, _ = list_entries(state)
    if as_json:
        click.echo(json.dumps([_with_reasons(e) for e in entries], indent=2))
    elif not entries:
        click.echo("Mail queue is empty")
    elif state is not None:
        record = read_server_record(state.data_dir)
        _print_queue(entries, serving=record is not None and record.running)


def _with_reasons(entry: QueueEntry) -> dict[str, object]:
    """An entry as JSON, each recipient with its class in plain words beside the class."""
    data = entry.to_dict()
    for shown, recipient in zip(data["recipients"], entry.recipients, strict=True):
        shown["reason_text"] = (
            EXPLANATIONS[reason_of(recipient)].summary if recipient.reason else None
        )
    return data


@queue.command("destinations")
@config_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array of destinations.")
def destinations_(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Where deferred mail is stuck: per destination domain, how much, since when, and why."""
    state = _state(config_path, data_dir)
    entries = []
    if state is not None:
        with state:
            entries = state.entries()
    found = destinations(entries)
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in found], indent=2))
        return
    if not found:
        click.echo("No deferred mail")
        return
    for destination in found:
        click.echo(printable(destination.line()))
        mta = f" from {destination.remote_mta}" if destination.remote_mta else ""
        click.echo(printable(f"  last reply{mta}: {destination.last_reply}"))
        if len(destination.reasons) > 1:
            mix = ", ".join(f"{count} {name}" for name, count in destination.reasons.items())
            click.echo(printable(f"  classes: {mix}"))
        click.echo(printable(f"  next: {destination.next_step}"))


def _retry(next_attempt: float, now: float, *, serving: bool, held: bool) -> str:
    """When the next attempt is: a time, or, once due, that it runs (or waits for a server)."""
    if held:
        return "on hold: no retry until released"
    if next_attempt <= now:
        # Due: the queue manager is on it (an attempt keeps the time it was due at).
        return "being retried now" if serving else "retry due now; hato serve is not running"
    moment = time.localtime(next_attempt)
    same_day = time.localtime(now)[:3] == moment[:3]
    return "retry " + time.strftime("%H:%M:%S" if same_day else "%b %d %H:%M:%S", moment)


def _print_queue(entries: list[QueueEntry], *, serving: bool) -> None:
    now = time.time()
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
                when = _retry(recipient.next_attempt, now, serving=serving, held=entry.held)
                click.echo(printable(f"{'':<49}({recipient.status} {recipient.detail}; {when})"))
            if recipient.reason:
                words = EXPLANATIONS[reason_of(recipient)].summary
                click.echo(printable(f"{'':<49}[{reason_of(recipient)}: {words}]"))
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
        if full:
            with state.source(queue_id).open() as data:
                content = data.read()
        else:
            content = header_section(state, queue_id)
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


def _admin(config_path: Path | None, data_dir: Path | None) -> QueueState:
    state = _state(config_path, data_dir)
    if state is None:
        raise click.ClickException("the queue is empty (no spool yet)")
    return state


def _targets(queue_ids: tuple[str, ...]) -> list[str] | None:
    """The IDs named, or None (every queued message) for ``ALL`` (as postsuper takes it)."""
    if queue_ids == (ALL,):
        return None
    _check_ids(queue_ids)
    return list(queue_ids)


def _missing(missing: list[str]) -> None:
    """Exit 1 naming the messages that are not in the queue, as every queue command does."""
    if missing:
        raise click.ClickException(f"not in the queue: {', '.join(missing)}")


@queue.command()
@config_options
@click.argument("queue_ids", metavar="[QUEUE_ID]...", nargs=-1)
def flush(config_path: Path | None, data_dir: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Attempt delivery now: all deferred mail, or the given messages (postqueue -f / -i)."""
    _check_ids(queue_ids)
    with _admin(config_path, data_dir) as state:
        result = flush_messages(state, queue_ids)
    click.echo(f"{result.scheduled} recipients scheduled for delivery now")
    for queue_id in result.held:
        click.echo(f"{queue_id} is on hold: it is not delivered until released", err=True)
    _missing(result.missing)


@queue.command()
@config_options
@click.argument("queue_ids", metavar="QUEUE_ID...|ALL", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask before deleting ALL.")
def delete(
    config_path: Path | None, data_dir: Path | None, queue_ids: tuple[str, ...], yes: bool
) -> None:
    """Remove messages from the queue without delivering them (postsuper -d, -d ALL)."""
    with _admin(config_path, data_dir) as state:
        targets = _targets(queue_ids)
        if targets is None:
            every = state.queue_ids()
            if every and not yes:
                _confirm_all(len(every))
            targets = every
        result = delete_messages(state, targets)
    click.echo(f"{result.removed} message(s) deleted")
    _missing(result.missing)


def _confirm_all(count: int) -> None:
    """Deleting the whole queue is asked for at a terminal, refused elsewhere without --yes."""
    if not sys.stdin.isatty():
        raise click.UsageError("delete ALL removes every queued message; add --yes to do it")
    if not click.confirm(f"Delete all {count} queued message(s) without delivering them?"):
        raise SystemExit(1)


def _set_held(
    config_path: Path | None, data_dir: Path | None, ids: tuple[str, ...], held: bool
) -> None:
    done = "placed on hold" if held else "released from hold"
    already = "already on hold" if held else "not on hold"
    with _admin(config_path, data_dir) as state:
        result = set_held(state, _targets(ids), held)
    click.echo(f"{len(result.changed)} message(s) {done}")
    for queue_id in result.unchanged:
        click.echo(f"{queue_id} was {already}")
    _missing(result.missing)


@queue.command()
@config_options
@click.argument("queue_ids", metavar="QUEUE_ID...|ALL", nargs=-1, required=True)
def hold(config_path: Path | None, data_dir: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Keep messages queued but never attempt them (postsuper -h, -h ALL)."""
    _set_held(config_path, data_dir, queue_ids, True)


@queue.command()
@config_options
@click.argument("queue_ids", metavar="QUEUE_ID...|ALL", nargs=-1, required=True)
def release(config_path: Path | None, data_dir: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Release held messages (postsuper -H, -H ALL)."""
    _set_held(config_path, data_dir, queue_ids, False)
