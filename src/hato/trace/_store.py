"""The trace store: ``DATA/trace.sqlite3``, written by one recorder, read by ``hato trace``."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hato.trace._model import Attempt, TimedLine

__all__ = ["TRACE_FILE", "Summary", "TraceStore"]

TRACE_FILE = "trace.sqlite3"
# A reader waits this long for the recorder's transaction (WAL readers rarely wait at all).
_BUSY_TIMEOUT = 5.0
# Searches list at most this many messages, newest last.
SEARCH_LIMIT = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,      -- the session ID of the event log
    ts REAL NOT NULL,           -- connected
    client TEXT NOT NULL,       -- "[ip]:port"
    listener TEXT NOT NULL,
    ended REAL,
    reason TEXT
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
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_queue_id ON attempts (queue_id);
-- Conversation lines: of a session (session set) or of an attempt (attempt set).
CREATE TABLE IF NOT EXISTS lines (
    session INTEGER,
    attempt INTEGER,
    ts REAL NOT NULL,
    direction TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_session ON lines (session) WHERE session IS NOT NULL;
CREATE INDEX IF NOT EXISTS lines_attempt ON lines (attempt) WHERE attempt IS NOT NULL;
-- Events about a session (refusals, TLS, AUTH) or a message (queue_id set).
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL,
    session INTEGER,
    queue_id TEXT,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_queue_id ON events (queue_id) WHERE queue_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_session ON events (session) WHERE session IS NOT NULL;
CREATE TABLE IF NOT EXISTS messages (
    queue_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    session INTEGER,            -- the inbound session; NULL for messages Hato wrote
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,   -- one per line
    message_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    report_of TEXT              -- for a delivery report: the queue ID it reports on
);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id);
"""
# Each table and the column that says how old a row is; rows go in roughly in time order,
# so pruning walks the rowids instead of keeping an index on every time column.
_AGES = (
    ("lines", "ts"),
    ("events", "ts"),
    ("attempts", "ts"),
    ("sessions", "ts"),
    ("messages", "ts"),
)
_OUTCOMES = ("delivered", "deferred", "failed")


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


class TraceStore:
    """One connection to the trace file; the recorder writes, ``hato trace`` reads."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=_BUSY_TIMEOUT, check_same_thread=False
            )
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        # Lost on a crash at worst: the trace is a diagnostic (see the package docstring).
        self._conn.execute("PRAGMA synchronous = OFF")
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

    def add_session(self, session: str, ts: float, client: str, listener: str) -> int:
        cursor = self._conn.execute(
            "INSERT INTO sessions (session, ts, client, listener) VALUES (?, ?, ?, ?)",
            (session, ts, client, listener),
        )
        return int(cursor.lastrowid or 0)

    def end_session(self, row: int, ts: float, reason: str) -> None:
        self._conn.execute(
            "UPDATE sessions SET ended = ?, reason = ? WHERE id = ?", (ts, reason, row)
        )

    def add_lines(self, session: int, lines: Iterable[TimedLine]) -> None:
        self._conn.executemany(
            "INSERT INTO lines (session, ts, direction, text) VALUES (?, ?, ?, ?)",
            ((session, ts, direction, text) for ts, direction, text in lines),
        )

    def add_event(
        self, ts: float, name: str, text: str, data: dict[str, Any], *, session: int | None
    ) -> None:
        queue_id = data.get("queue_id") or None
        self._conn.execute(
            "INSERT INTO events (ts, session, queue_id, name, text, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ts, session, queue_id, name, text, json.dumps(data, default=str)),
        )

    def add_message(
        self,
        queue_id: str,
        ts: float,
        *,
        session: int | None,
        sender: str,
        recipients: Sequence[str],
        message_id: str,
        size: int,
    ) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO messages"
            " (queue_id, ts, session, sender, recipients, message_id, size)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (queue_id, ts, session, sender, "\n".join(recipients), message_id, size),
        )

    def mark_report(self, report_id: str, original: str) -> None:
        self._conn.execute(
            "UPDATE messages SET report_of = ? WHERE queue_id = ?", (original, report_id)
        )

    def add_attempt(self, attempt: Attempt) -> None:
        cursor = self._conn.execute(
            "INSERT INTO attempts"
            " (queue_id, ts, domain, host, address, port, tls, reused, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                attempt.queue_id,
                attempt.started,
                attempt.domain,
                attempt.host,
                attempt.address,
                attempt.port,
                attempt.tls,
                int(attempt.reused),
                attempt.outcome,
            ),
        )
        row = cursor.lastrowid
        self._conn.executemany(
            "INSERT INTO lines (attempt, ts, direction, text) VALUES (?, ?, ?, ?)",
            ((row, ts, direction, text) for ts, direction, text in attempt.lines),
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
            f"SELECT * FROM (SELECT queue_id, ts, sender, recipients, message_id, size, report_of"
            f" FROM messages{clause} ORDER BY ts DESC LIMIT ?) ORDER BY ts",
            (*args, limit),
        ).fetchall()
        return [self._summary(row) for row in rows]

    def summary(self, queue_id: str) -> Summary | None:
        row = self._conn.execute(
            "SELECT queue_id, ts, sender, recipients, message_id, size, report_of"
            " FROM messages WHERE queue_id = ?",
            (queue_id,),
        ).fetchone()
        return None if row is None else self._summary(row)

    def _summary(self, row: tuple[Any, ...]) -> Summary:
        queue_id, ts, sender, recipients, message_id, size, report_of = row
        return Summary(
            queue_id=queue_id,
            ts=ts,
            sender=sender,
            recipients=tuple(recipients.split("\n")) if recipients else (),
            message_id=message_id,
            size=size,
            status=self._status(queue_id),
            report_of=report_of,
        )

    def _status(self, queue_id: str) -> str:
        """Each recipient's latest outcome, summed up: "delivered", "deferred, failed"..."""
        latest: dict[str, str] = {}
        rows = self._conn.execute(
            "SELECT name, data FROM events WHERE queue_id = ? AND name IN (?, ?, ?)"
            " ORDER BY ts, rowid",
            (queue_id, *_OUTCOMES),
        )
        for name, data in rows:
            latest[json.loads(data).get("recipient", "")] = name
        states = sorted(set(latest.values()), key=_OUTCOMES.index)
        return ", ".join(states) if states else "queued"

    def story(self, queue_id: str) -> dict[str, Any] | None:
        """Everything recorded about one message, in time order; None if nothing was."""
        summary = self.summary(queue_id)
        events = self._events("queue_id = ?", queue_id)
        attempts = self._conn.execute(
            "SELECT id, ts, domain, host, address, port, tls, reused, outcome"
            " FROM attempts WHERE queue_id = ? ORDER BY ts, id",
            (queue_id,),
        ).fetchall()
        if summary is None and not events and not attempts:
            return None
        steps: list[dict[str, Any]] = []
        session_row = self._conn.execute(
            "SELECT session FROM messages WHERE queue_id = ?", (queue_id,)
        ).fetchone()
        if session_row is not None and session_row[0] is not None:
            session = self._session(session_row[0])
            if session is not None:
                steps.append(session)
        steps += [{"kind": "event", **event} for event in events]
        for row_id, ts, domain, host, address, port, tls, reused, outcome in attempts:
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
                    "transcript": self._lines("attempt", row_id),
                }
            )
        steps.sort(key=lambda step: step["ts"])
        reports = [
            {"queue_id": e["data"].get("report_id"), "action": e["data"].get("action")}
            for e in events
            if e["event"] == "report"
        ]
        head = summary.to_dict() if summary is not None else {"queue_id": queue_id}
        return {**head, "reports": reports, "steps": steps}

    def _session(self, row: int) -> dict[str, Any] | None:
        found = self._conn.execute(
            "SELECT session, ts, client, listener, ended, reason FROM sessions WHERE id = ?",
            (row,),
        ).fetchone()
        if found is None:
            return None
        session, ts, client, listener, ended, reason = found
        return {
            "kind": "session",
            "ts": ts,
            "session": session,
            "client": client,
            "listener": listener,
            "ended": ended,
            "end_reason": reason,
            "transcript": self._lines("session", row),
            "events": self._events("session = ?", row),
        }

    def _lines(self, column: str, row: int) -> list[dict[str, Any]]:
        found = self._conn.execute(
            f"SELECT ts, direction, text FROM lines WHERE {column} = ? ORDER BY rowid", (row,)
        )
        return [{"ts": ts, "direction": d, "text": text} for ts, d, text in found]

    def _events(self, condition: str, value: object) -> list[dict[str, Any]]:
        found = self._conn.execute(
            f"SELECT ts, name, text, data FROM events WHERE {condition} ORDER BY ts, rowid",
            (value,),
        )
        return [
            {"ts": ts, "event": name, "text": text, "data": json.loads(data)}
            for ts, name, text, data in found
        ]
