"""The trace store: ``DATA/trace.sqlite3``, written by one recorder, read by ``hato trace``.

Rows are few and wide, since every row and every index entry costs the writer a B-tree
insert under the GIL it shares with the server: a session is one row holding its whole
transcript and its events, an attempt one row with its transcript, a message one row
for the searches, and what happened to a message within a second or so (queued,
delivered, removed) one row of events found by its queue ID.

A session's transcript is text a recorder can append to with ``||`` when the session
was written while still open (see ``encode_transcript``); its events are a run of JSON
array elements, each followed by a comma, appendable the same way.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hato.trace._model import Attempt

__all__ = [
    "SCHEMA_VERSION",
    "TRACE_FILE",
    "EventsRow",
    "MessageRow",
    "SessionRow",
    "Summary",
    "TraceStore",
    "TraceVersionError",
    "decode_transcript",
    "encode_run",
    "encode_transcript",
]

TRACE_FILE = "trace.sqlite3"
# PRAGMA user_version of the file. The recorder replaces a file of another version (the
# trace is a diagnostic: starting over loses days of history, never mail).
SCHEMA_VERSION = 2
# A reader waits this long for the recorder's transaction (WAL readers rarely wait at all).
_BUSY_TIMEOUT = 5.0
# Searches list at most this many messages, newest last.
SEARCH_LIMIT = 200

_TABLES = ("sessions", "messages", "events", "attempts", "lines")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,     -- chosen by the recorder when the client connects
    session TEXT NOT NULL,      -- the session ID of the event log
    ts REAL NOT NULL,           -- connected
    client TEXT NOT NULL,       -- "[ip]:port"
    listener TEXT NOT NULL,
    ended REAL,
    reason TEXT,
    transcript TEXT NOT NULL,   -- see encode_transcript
    events TEXT NOT NULL        -- run of [ts, name, text, data]: refusals, TLS, AUTH
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL,
    ts REAL NOT NULL,
    domain TEXT NOT NULL,
    host TEXT NOT NULL,
    address TEXT NOT NULL,
    port INTEGER NOT NULL,
    tls TEXT NOT NULL,
    reused INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    transcript TEXT NOT NULL    -- JSON [[ts, direction, text], ...]
);
CREATE INDEX IF NOT EXISTS attempts_queue_id ON attempts (queue_id);
-- What happened to a message: queued, delivered, deferred, failed, report, removed.
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL,           -- of the first event in the row
    queue_id TEXT NOT NULL,
    events TEXT NOT NULL        -- JSON [[ts, name, text, data], ...]
);
CREATE INDEX IF NOT EXISTS events_queue_id ON events (queue_id);
CREATE TABLE IF NOT EXISTS messages (
    queue_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    session INTEGER,            -- the inbound session's row; NULL for messages Hato wrote
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,   -- one per line
    message_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    report_of TEXT              -- for a delivery report: the queue ID it reports on
);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id);
"""
# Each table and the column that says how old a row is; rows go in roughly in time order
# (session rows by the id chosen at connect time), so pruning walks the rowids instead of
# keeping an index on every time column.
_AGES = (
    ("events", "ts"),
    ("attempts", "ts"),
    ("sessions", "ts"),
    ("messages", "ts"),
)
_OUTCOMES = ("delivered", "deferred", "failed")
_SUMMARY = "queue_id, ts, sender, recipients, message_id, size, report_of"

_PUT_SESSION = (
    "INSERT INTO sessions"
    " (id, session, ts, client, listener, ended, reason, transcript, events)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET"
    " client = excluded.client, listener = excluded.listener,"
    " ended = excluded.ended, reason = excluded.reason,"
    " transcript = transcript || excluded.transcript, events = events || excluded.events"
)
_PUT_MESSAGE = (
    "INSERT OR REPLACE INTO messages"
    " (queue_id, ts, session, sender, recipients, message_id, size)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_PUT_EVENTS = "INSERT INTO events (ts, queue_id, events) VALUES (?, ?, ?)"
_PUT_ATTEMPT = (
    "INSERT INTO attempts"
    " (queue_id, ts, domain, host, address, port, tls, reused, outcome, transcript)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MARK_REPORT = "UPDATE messages SET report_of = ? WHERE queue_id = ?"

# (id, session, ts, client, listener, ended, reason, transcript, events run)
SessionRow = tuple[int, str, float, str, str, float | None, str | None, str, str]
# (queue_id, ts, session row, sender, recipients, message_id, size)
MessageRow = tuple[str, float, int | None, str, str, str, int]
# (ts, queue_id, JSON [[ts, name, text, data], ...])
EventsRow = tuple[float, str, str]

_JOIN = "".join


def encode_transcript(
    start: float, batches: Sequence[tuple[float, Sequence[tuple[str, str]]]]
) -> str:
    """Lines sent together at one time, as text: ``@`` and the time, then a line each.

    The time is in microseconds after ``start`` (the session's). A line is its direction
    (``C`` or ``S``) and its text. A line whose text holds a line feed (a client may send
    a bare LF inside a command) would pass for two, so when there is one each batch is
    written as ``!`` and the time, then each line as a JSON string instead.
    """
    parts: list[str] = []
    for ts, lines in batches:
        parts.append(f"@{round((ts - start) * 1_000_000)}")
        parts += map(_JOIN, lines)
    text = "\n".join(parts) + "\n"
    if text.count("\n") == len(parts):
        return text
    parts = []
    for ts, lines in batches:
        parts.append(f"!{round((ts - start) * 1_000_000)}\n")
        parts += (json.dumps(d + t) + "\n" for d, t in lines)
    return "".join(parts)


def decode_transcript(start: float, text: str) -> list[dict[str, Any]]:
    """The lines of ``encode_transcript``'s text (appended runs included), in order."""
    found: list[dict[str, Any]] = []
    ts, quoted = start, False
    for line in text.split("\n")[:-1]:
        mark = line[:1]
        if mark in ("@", "!"):
            ts, quoted = start + int(line[1:]) / 1_000_000, mark == "!"
            continue
        if quoted:
            line = json.loads(line)
        found.append({"ts": ts, "direction": line[:1], "text": line[1:]})
    return found


def encode_run(items: Sequence[Any]) -> str:
    """Items as JSON array elements, each followed by a comma: appendable with ``||``."""
    return json.dumps(items, ensure_ascii=False, default=str)[1:-1] + "," if items else ""


def _decode_run(text: str) -> list[Any]:
    return json.loads(f"[{text[:-1]}]") if text else []


class TraceVersionError(Exception):
    """The file was written by a Hato with another layout; the next ``hato serve`` replaces it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """One message as a search lists it."""

    queue_id: str
    ts: float
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    size: int
    status: str  # queued, deferred, delivered, failed, or a mix such as "delivered, failed"
    report_of: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """One refusal as a search lists it: no message was queued, so it has no queue ID."""

    ts: float
    session: str
    client: str  # "[ip]:port"
    stage: str  # CONNECT, EHLO, MAIL, RCPT, DATA, AUTH, ...
    reply: str
    reason: str
    rule: str
    helo: str
    sender: str | None  # None before MAIL
    recipient: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TraceStore:
    """One connection to the trace file; the recorder writes, ``hato trace`` reads."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=_BUSY_TIMEOUT, check_same_thread=False
            )
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                self._conn.close()
                raise TraceVersionError(
                    f"{path} was written by another version of Hato (layout {version},"
                    f" this one reads {SCHEMA_VERSION}); hato serve starts a new one"
                )
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        # Lost on a crash at worst: the trace is a diagnostic (see the package docstring).
        self._conn.execute("PRAGMA synchronous = OFF")
        if self._conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with self.batch():
                for table in _TABLES:
                    self._conn.execute(f"DROP TABLE IF EXISTS {table}")
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writing (the recorder's thread) ---------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction around everything written inside."""
        self._conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def last_session_row(self) -> int:
        """The highest session row id so far: new sessions' ids go above it."""
        found = self._conn.execute("SELECT max(id) FROM sessions").fetchone()[0]
        return int(found or 0)

    def put_sessions(self, rows: Sequence[SessionRow]) -> None:
        """Insert sessions, or append to the transcripts and events of rows already there."""
        self._conn.executemany(_PUT_SESSION, rows)

    def put_messages(self, rows: Sequence[MessageRow]) -> None:
        self._conn.executemany(_PUT_MESSAGE, rows)

    def put_events(self, rows: Sequence[EventsRow]) -> None:
        self._conn.executemany(_PUT_EVENTS, rows)

    def mark_reports(self, pairs: Sequence[tuple[str, str]]) -> None:
        """(original queue ID, report's queue ID): the report's message says what it reports."""
        self._conn.executemany(_MARK_REPORT, pairs)

    def put_attempts(self, attempts: Sequence[Attempt]) -> None:
        self._conn.executemany(
            _PUT_ATTEMPT,
            [
                (
                    a.queue_id,
                    a.started,
                    a.domain,
                    a.host,
                    a.address,
                    a.port,
                    a.tls,
                    int(a.reused),
                    a.outcome,
                    json.dumps(a.lines, ensure_ascii=False),
                )
                for a in attempts
            ],
        )

    def prune(self, before: float) -> int:
        """Delete every record older than ``before`` (unix time); how many went."""
        removed = 0
        with self.batch():
            for table, column in _AGES:
                # The first row young enough to stay; everything inserted before it goes.
                keep = self._conn.execute(
                    f"SELECT rowid FROM {table} WHERE {column} >= ? ORDER BY rowid LIMIT 1",
                    (before,),
                ).fetchone()
                if keep is None:
                    cursor = self._conn.execute(f"DELETE FROM {table}")
                else:
                    cursor = self._conn.execute(f"DELETE FROM {table} WHERE rowid < ?", keep)
                removed += cursor.rowcount
        return removed

    # -- reading (hato trace) --------------------------------------------------------------

    def find(
        self,
        *,
        message_id: str | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        since: float | None = None,
        limit: int = SEARCH_LIMIT,
    ) -> list[Summary]:
        """Messages matching every criterion given, oldest first (the newest ``limit``)."""
        where: list[str] = []
        args: list[object] = []
        if message_id is not None:
            where.append("trim(message_id, '<> ') = trim(?, '<> ')")
            args.append(message_id)
        if sender is not None:
            where.append("instr(lower(sender), lower(?)) > 0")
            args.append(sender)
        if recipient is not None:
            where.append("instr(lower(recipients), lower(?)) > 0")
            args.append(recipient)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        clause = " WHERE " + " AND ".join(where) if where else ""
        rows = self._conn.execute(
            f"SELECT * FROM (SELECT {_SUMMARY}"
            f" FROM messages{clause} ORDER BY ts DESC LIMIT ?) ORDER BY ts",
            (*args, limit),
        ).fetchall()
        return [_summary(row, self._events(row[0])) for row in rows]

    def refusals(
        self,
        *,
        sender: str | None = None,
        recipient: str | None = None,
        since: float | None = None,
        limit: int = SEARCH_LIMIT,
    ) -> list[Refusal]:
        """Refusals matching every criterion given, oldest first (the newest ``limit``).

        A refused RCPT or MAIL leaves no message row, only its session's; the sessions'
        event runs are searched instead (the texts first, in SQL, then each refusal).
        """
        where = ["instr(events, '\"reject\"') > 0"]
        args: list[object] = []
        for text in (sender, recipient):
            if text is not None:
                where.append("instr(lower(events), lower(?)) > 0")
                args.append(text)
        if since is not None:
            where.append("(ended IS NULL OR ended >= ?)")
            args.append(since)
        rows = self._conn.execute(
            f"SELECT session, client, events FROM sessions WHERE {' AND '.join(where)} ORDER BY id",
            args,
        )
        found = [
            refusal
            for session, client, run in rows
            for ts, name, _, data in _decode_run(run)
            if name == "reject"
            and (since is None or ts >= since)
            and _contains(data.get("sender"), sender)
            and _contains(data.get("recipient"), recipient)
            for refusal in [_refusal(session, client, ts, data)]
        ]
        found.sort(key=lambda refusal: refusal.ts)
        return found[-limit:]

    def attempt_tls(self, since: float) -> tuple[int, int]:
        """Delivery attempts since ``since`` (unix time), and how many of them ran over TLS."""
        row = self._conn.execute(
            "SELECT count(*), coalesce(sum(tls != ''), 0) FROM attempts WHERE ts >= ?", (since,)
        ).fetchone()
        return int(row[0]), int(row[1])

    def summary(self, queue_id: str) -> Summary | None:
        row = self._message(queue_id)
        return None if row is None else _summary(row[:-1], self._events(queue_id))

    def _message(self, queue_id: str) -> tuple[Any, ...] | None:
        """The message's row: the columns of its summary, then its session's row id."""
        row: tuple[Any, ...] | None = self._conn.execute(
            f"SELECT {_SUMMARY}, session FROM messages WHERE queue_id = ?", (queue_id,)
        ).fetchone()
        return row

    def story(self, queue_id: str) -> dict[str, Any] | None:
        """Everything recorded about one message, in time order; None if nothing was."""
        row = self._message(queue_id)
        events = self._events(queue_id)
        attempts = self._conn.execute(
            "SELECT ts, domain, host, address, port, tls, reused, outcome, transcript"
            " FROM attempts WHERE queue_id = ? ORDER BY ts, id",
            (queue_id,),
        ).fetchall()
        if row is None and not events and not attempts:
            return None
        steps: list[dict[str, Any]] = []
        if row is not None and row[-1] is not None:
            session = self._session(row[-1])
            if session is not None:
                steps.append(session)
        steps += [{"kind": "event", **event} for event in events]
        for ts, domain, host, address, port, tls, reused, outcome, transcript in attempts:
            steps.append(
                {
                    "kind": "attempt",
                    "ts": ts,
                    "domain": domain,
                    "host": host,
                    "address": address,
                    "port": port,
                    "tls": tls,
                    "reused_session": bool(reused),
                    "outcome": outcome,
                    "transcript": [
                        {"ts": when, "direction": direction, "text": text}
                        for when, direction, text in json.loads(transcript)
                    ],
                }
            )
        steps.sort(key=lambda step: step["ts"])
        reports = [
            {"queue_id": e["data"].get("report_id"), "action": e["data"].get("action")}
            for e in events
            if e["event"] == "report"
        ]
        head = _summary(row[:-1], events).to_dict() if row is not None else {"queue_id": queue_id}
        return {**head, "reports": reports, "steps": steps}

    def session(self, session: str) -> dict[str, Any] | None:
        """The story of one inbound session by its session ID (the latest of that ID), for
        a message that left no message row (a discarded one); None if nothing was kept."""
        found = self._conn.execute(
            "SELECT id FROM sessions WHERE session = ? ORDER BY id DESC LIMIT 1", (session,)
        ).fetchone()
        return None if found is None else self._session(found[0])

    def _session(self, row: int) -> dict[str, Any] | None:
        found = self._conn.execute(
            "SELECT session, ts, client, listener, ended, reason, transcript, events"
            " FROM sessions WHERE id = ?",
            (row,),
        ).fetchone()
        if found is None:
            return None
        session, ts, client, listener, ended, reason, transcript, events = found
        return {
            "kind": "session",
            "ts": ts,
            "session": session,
            "client": client,
            "listener": listener,
            "ended": ended,
            "end_reason": reason,
            "transcript": decode_transcript(ts, transcript),
            "events": sorted(
                (
                    {"ts": when, "event": name, "text": text, "data": data}
                    for when, name, text, data in _decode_run(events)
                ),
                key=lambda event: event["ts"],
            ),
        }

    def _events(self, queue_id: str) -> list[dict[str, Any]]:
        """Every event about the message, in time order."""
        found = self._conn.execute(
            "SELECT events FROM events WHERE queue_id = ? ORDER BY ts, rowid", (queue_id,)
        )
        events = [
            {"ts": ts, "event": name, "text": text, "data": data}
            for (run,) in found
            for ts, name, text, data in json.loads(run)
        ]
        events.sort(key=lambda event: event["ts"])
        return events


def _summary(row: tuple[Any, ...], events: list[dict[str, Any]]) -> Summary:
    """A message's row (its summary's columns) and its events, as a search lists it."""
    queue_id, ts, sender, recipients, message_id, size, report_of = row
    return Summary(
        queue_id=queue_id,
        ts=ts,
        sender=sender,
        recipients=tuple(recipients.split("\n")) if recipients else (),
        message_id=message_id,
        size=size,
        status=_status(events),
        report_of=report_of,
    )


def _status(events: list[dict[str, Any]]) -> str:
    """Each recipient's latest outcome, summed up: "delivered", "deferred, failed"..."""
    latest: dict[str, str] = {}
    for event in events:
        if event["event"] in _OUTCOMES:
            latest[event["data"].get("recipient", "")] = event["event"]
    states = sorted(set(latest.values()), key=_OUTCOMES.index)
    return ", ".join(states) if states else "queued"


def _contains(value: str | None, wanted: str | None) -> bool:
    """A search's "contains this text" (case-insensitive); no criterion matches anything."""
    return wanted is None or (value is not None and wanted.casefold() in value.casefold())


def _refusal(session: str, client: str, ts: float, data: dict[str, Any]) -> Refusal:
    return Refusal(
        ts=ts,
        session=session,
        client=client,
        stage=str(data.get("command", "")),
        reply=str(data.get("reply", "")),
        reason=str(data.get("reason", "")),
        rule=str(data.get("rule", "")),
        helo=str(data.get("helo", "")),
        sender=data.get("sender"),
        recipient=str(data.get("recipient", "")),
    )
