"""``hato queue list|show``: what the spool holds, in the spirit of mailq and postcat."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..spool import QueuedMessage, Spool, SpoolError, is_queue_id
from ._common import config_options, settings_from

__all__ = ["queue"]

# How many header lines `queue show` prints before the body, unless --full.
HEADER_PREVIEW_BYTES = 64 * 1024
SPOOL_INDEX = "spool.sqlite3"


@click.group()
def queue() -> None:
    """Inspect the mail queue."""


def _open(config_path: Path | None, data_dir: Path | None) -> Spool | None:
    """The spool, read-only; None when no server has created one there yet."""
    settings = settings_from(config_path, data_dir=data_dir)
    if not (settings.server.data_dir / SPOOL_INDEX).exists():
        return None
    try:
        return Spool.open_readonly(settings.server.data_dir)
    except SpoolError as error:
        raise click.ClickException(str(error)) from None


def _as_dict(message: QueuedMessage) -> dict[str, object]:
    return {
        "queue_id": message.queue_id,
        "size": message.size,
        "path": str(message.path),
        "envelope": message.envelope.to_dict(),
        "states": list(message.states),
    }


@queue.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array of messages.")
def list_(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List queued messages, oldest first (like mailq)."""
    spool = _open(config_path, data_dir)
    messages = []
    if spool is not None:
        with spool:
            messages = spool.list()
    if as_json:
        click.echo(json.dumps([_as_dict(m) for m in messages], indent=2))
        return
    if not messages:
        click.echo("Mail queue is empty")
        return
    click.echo(
        f"{'-Queue ID-':<16} {'--Size--':>9} {'----Arrival Time----':<20}  -Sender/Recipient-"
    )
    for message in messages:
        envelope = message.envelope
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(envelope.arrival))
        sender = envelope.reverse_path or "MAILER-DAEMON"
        click.echo(f"{message.queue_id:<16} {message.size:>9} {arrival:<20}  {sender}")
        for recipient in envelope.recipients:
            click.echo(f"{'':<49}{recipient.address}")
    total = sum(m.size for m in messages)
    noun = "Request" if len(messages) == 1 else "Requests"
    click.echo(f"-- {(total + 1023) // 1024} Kbytes in {len(messages)} {noun}.")


@queue.command()
@config_options
@click.argument("queue_id")
@click.option("--json", "as_json", is_flag=True, help="Envelope as JSON.")
@click.option("--full", is_flag=True, help="Print the whole message, not only its header.")
def show(
    config_path: Path | None, data_dir: Path | None, queue_id: str, as_json: bool, full: bool
) -> None:
    """Show one message: its envelope, then its header (or all of it with --full)."""
    if not is_queue_id(queue_id):
        raise click.ClickException(f"not a queue ID: {queue_id!r}")
    spool = _open(config_path, data_dir)
    message = None if spool is None else spool.get(queue_id)
    if spool is None or message is None:
        raise click.ClickException(f"{queue_id}: no such message in the queue")
    try:
        with spool, spool.open_data(queue_id) as data:
            content = data.read() if full else _header(data.read(HEADER_PREVIEW_BYTES))
    except SpoolError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(_as_dict(message), indent=2))
        return
    click.echo(f"*** ENVELOPE RECORDS {queue_id} ***")
    for key, value in message.envelope.to_dict().items():
        if key == "arrival":
            value = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(float(value)))
        if key != "recipients":
            click.echo(f"{key}: {value}")
    for recipient, state in zip(message.envelope.recipients, message.states, strict=False):
        notify = ",".join(recipient.notify) or "-"
        click.echo(f"recipient: {recipient.address} (notify={notify}, state={state})")
    click.echo(f"size: {message.size}")
    click.echo(f"*** MESSAGE {'CONTENTS' if full else 'HEADER'} {queue_id} ***")
    click.echo(content.decode("utf-8", errors="replace").replace("\r\n", "\n"), nl=False)


def _header(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]
