"""``hato trace``: a message's whole story from the flight recorder, by queue ID or search."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..trace import (
    TRACE_FILE,
    TraceStore,
    TraceVersionError,
    render_refusals,
    render_story,
    render_summaries,
)
from ._common import config_options, data_settings

__all__ = ["trace"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> float:
    """``30m``, ``2h``, ``7d`` ago, or a date and time (``2026-11-28``, ``2026-11-28T06:35``)."""
    found = _DURATION.fullmatch(text.strip())
    if found is not None:
        return time.time() - float(found.group(1)) * _UNITS[found.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give a duration such as 30m, 2h or 7d, or a time such as 2026-11-28T06:35",
            param_hint="--since",
        ) from None


@click.command()
@click.argument("what", required=False, metavar="[QUEUE-ID|MESSAGE-ID]")
@click.option("--sender", help="Messages whose sender contains this text.")
@click.option("--recipient", help="Messages with a recipient containing this text.")
@click.option(
    "--since", "since_text", metavar="WHEN", help="Only messages queued since (2h, 7d, a date)."
)
@click.option("--json", "as_json", is_flag=True, help="The same content as JSON.")
@config_options
def trace(
    what: str | None,
    sender: str | None,
    recipient: str | None,
    since_text: str | None,
    as_json: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Everything that happened to a message: sessions, decisions, attempts, reports.

    \b
    hato trace 4Y3KQ8D1MZ0A2B            one message by queue ID
    hato trace '<id@example.com>'        by Message-ID (every copy queued)
    hato trace --recipient bob@ --since 2h   messages, and refusals (no queue ID)
    """
    if what is None and sender is None and recipient is None and since_text is None:
        raise click.UsageError("give a queue ID or Message-ID, or --sender/--recipient/--since")
    since = _since(since_text) if since_text is not None else None
    settings = data_settings(config_path, data_dir)
    path = settings.server.data_dir / TRACE_FILE
    if not path.exists():
        raise click.ClickException(f"no trace recorded in {settings.server.data_dir} yet")
    try:
        opened = TraceStore(path, readonly=True)
    except TraceVersionError as error:
        raise click.ClickException(str(error)) from None
    with opened as store:
        if what is not None:
            story = store.story(what)
            stories = [story] if story is not None else []
            if not stories:
                found = store.find(message_id=what, sender=sender, recipient=recipient, since=since)
                stories = [s for f in found if (s := store.story(f.queue_id)) is not None]
            if not stories:
                raise click.ClickException(f"nothing recorded about {what}")
            _print_stories(stories, as_json)
            return
        summaries = store.find(sender=sender, recipient=recipient, since=since)
        # Refused MAIL or RCPT commands queued nothing, so only their sessions know them.
        refusals = store.refusals(sender=sender, recipient=recipient, since=since)
    if as_json:
        listed = [{"kind": "message", **s.to_dict()} for s in summaries]
        listed += [{"kind": "refusal", **r.to_dict()} for r in refusals]
        click.echo(json.dumps(sorted(listed, key=lambda item: item["ts"]), indent=2))
    elif not summaries and not refusals:
        click.echo("No message matches.")
    else:
        click.echo(render_summaries(summaries), nl=False)
        if refusals:
            click.echo(f"{chr(10) if summaries else ''}Refused (nothing queued, so no queue ID):")
            click.echo(render_refusals(refusals), nl=False)


def _print_stories(stories: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(stories[0] if len(stories) == 1 else stories, indent=2))
        return
    click.echo("\n".join(render_story(story) for story in stories), nl=False)
