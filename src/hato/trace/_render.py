"""A story as text: what ``hato trace`` prints (``--json`` prints the story itself)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from hato.events import printable
from hato.trace._store import Refusal, Summary

__all__ = ["render_refusals", "render_story", "render_summaries"]

_INDENT = "    "


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def _transcript(lines: Sequence[dict[str, Any]], start: float) -> list[str]:
    return [
        f"{_INDENT}{line['ts'] - start:+8.3f}s {line['direction']}: {line['text']}"
        for line in lines
    ]


def _session(step: dict[str, Any]) -> list[str]:
    head = f"{_when(step['ts'])}  inbound session {step['session']}"
    if step["client"]:
        head += f" from {step['client']} on {step['listener']}"
    out = [head]
    # Lines are stamped when they went out, a batch at a time, and an event (a refusal,
    # TLS, AUTH) happened while its batch was answered: it goes right after that batch.
    events = list(step["events"])
    lines = step["transcript"]
    for index, line in enumerate(lines):
        out += _transcript([line], step["ts"])
        if index + 1 < len(lines) and lines[index + 1]["ts"] == line["ts"]:
            continue
        while events and events[0]["ts"] <= line["ts"]:
            out.append(_session_event(events.pop(0), step["ts"]))
    out += [_session_event(event, step["ts"]) for event in events]
    if step["ended"] is not None:
        out.append(
            f"{_INDENT}{step['ended'] - step['ts']:+8.3f}s session ended ({step['end_reason']})"
        )
    return out


def _session_event(event: dict[str, Any], start: float) -> str:
    data = event["data"]
    if event["event"] == "reject":
        text = f"refused {data['command'] or 'a command'}: {data['reason']}"
        if data.get("rule"):
            text += f" (rule {data['rule']})"
    else:
        text = event["text"].removeprefix(f"session={data.get('session')} ")
    return f"{_INDENT}{event['ts'] - start:+8.3f}s *  {text}"


def _attempt(step: dict[str, Any]) -> list[str]:
    where = f"{step['host']} [{step['address']}]:{step['port']}"
    how = ", over a kept session" if step["reused_session"] else ""
    out = [f"{_when(step['ts'])}  delivery attempt to {where} for {step['domain']}{how}"]
    if step["tls"]:
        out.append(f"{_INDENT}TLS: {step['tls']}")
    out += _transcript(step["transcript"], step["ts"])
    out.append(f"{_INDENT}outcome: {step['outcome']}")
    return out


def _event(step: dict[str, Any]) -> list[str]:
    name, data = step["event"], step["data"]
    text = step["text"]
    if name == "deferred":
        text += f"; next attempt at {_when(data['next_attempt'])}"
    elif name == "report":
        text += f" (hato trace {data['report_id']})"
    return [f"{_when(step['ts'])}  {name}: {text}"]


def render_story(story: dict[str, Any]) -> str:
    """The story in plain text, one step after another in time order."""
    out = [f"Queue ID {story['queue_id']}"]
    if "sender" in story:
        recipients = ", ".join(f"<{r}>" for r in story["recipients"])
        out.append(f"  from <{story['sender']}> to {recipients}, {story['size']} bytes")
        if story["message_id"]:
            out.append(f"  Message-ID: {story['message_id']}")
        if story["report_of"]:
            out.append(f"  a delivery report about {story['report_of']}")
        out.append(f"  status: {story['status']}")
    else:
        out.append("  (its queueing is older than the trace: only later steps are kept)")
    for report in story["reports"]:
        out.append(f"  report: {report['action']}, queued as {report['queue_id']}")
    for step in story["steps"]:
        out.append("")
        kind = step["kind"]
        out += (
            _session(step)
            if kind == "session"
            else (_attempt(step) if kind == "attempt" else _event(step))
        )
    return _lines(out)


def _lines(out: list[str]) -> str:
    # Clients and remote servers chose much of this text (EHLO names, commands, replies,
    # addresses): each line is escaped as a whole, so none can hold a control or a break.
    return "".join(printable(line) + "\n" for line in out)


def render_summaries(summaries: Sequence[Summary]) -> str:
    """Search results, one block per message, oldest first."""
    out = []
    for found in summaries:
        sender = found.sender or "MAILER-DAEMON"
        out.append(f"{found.queue_id}  {_when(found.ts)}  {found.status}  <{sender}>")
        for recipient in found.recipients:
            out.append(f"{_INDENT}to <{recipient}>")
        if found.message_id:
            out.append(f"{_INDENT}Message-ID: {found.message_id}")
        if found.report_of:
            out.append(f"{_INDENT}report about {found.report_of}")
    return _lines(out)


def render_refusals(refusals: Sequence[Refusal]) -> str:
    """Refusals a search found, one block each, oldest first: who, at which stage, why."""
    out = []
    for found in refusals:
        out.append(
            f"refused {found.stage or '-'}  {_when(found.ts)}  session {found.session}"
            f"  from {found.client}"
        )
        if found.sender is not None:
            out.append(f"{_INDENT}from <{found.sender}>")
        if found.recipient:
            out.append(f"{_INDENT}to <{found.recipient}>")
        out.append(f"{_INDENT}{found.reply}")
        rule = f" (rule {found.rule})" if found.rule else ""
        out.append(f"{_INDENT}why: {found.reason}{rule}")
    return _lines(out)
