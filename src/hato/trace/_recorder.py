"""The recorder: takes events and transcripts on any thread, writes them in batches.

The feeding side runs on the server's event loop for every message, so it does nothing
but append a tuple to a deque: no lock, no formatting, no copying; events the trace does
not need (HELO, MAIL, RCPT: the transcript shows them) are dropped by a set lookup. The
writer thread keeps each open session in memory and writes it as one row when it ends,
and a message's events of one batch as one row; all the rows of a batch go in with one
``executemany`` per table, in one transaction.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from hato.events import (
    AuthSucceeded,
    Connected,
    Deferred,
    Delivered,
    DeliveryFailed,
    Disconnected,
    FilterVerdict,
    InternalError,
    MessageRemoved,
    MilterAction,
    OpsEvent,
    Queued,
    Rejected,
    ReportQueued,
    TlsFailed,
    TlsStarted,
)
from hato.trace._model import Attempt
from hato.trace._store import (
    EventsRow,
    MessageRow,
    SessionRow,
    TraceStore,
    encode_run,
    encode_transcript,
)

__all__ = ["FLUSH_INTERVAL", "MAX_PENDING", "PARTIAL_AFTER", "PARTIAL_LINES", "Recorder"]

# Seconds between two batches: what a crash may lose, and how late `hato trace` sees things.
FLUSH_INTERVAL = 0.5
# Records waiting for the writer; past this the recorder drops, since mail comes first.
MAX_PENDING = 100_000
# A session still open is written so far once it has lines this old (seconds), so that a
# long one shows up in `hato trace` and its transcript does not pile up in memory.
PARTIAL_AFTER = 5.0
# ... or once this many of its lines wait: a client pipelining thousands of commands a
# second would otherwise pile up its transcript in memory for PARTIAL_AFTER seconds
# (200,000 pipelined HELPs took the server from 53 to 109 MB, never given back).
PARTIAL_LINES = 5_000
# A session heard nothing of for this long (seconds) is forgotten: its disconnect event
# was dropped, since the server's own timeouts end a session long before.
FORGET_AFTER = 3600.0
# A message's events share a row while they are this close (seconds) to the row's first.
# Pruning goes by a row's first time, so a later event may outlive its retention by this
# much: no more than what a crash may lose.
_EVENTS_SPAN = FLUSH_INTERVAL
# The longest wait between two prunings (shorter when the retention is short).
PRUNE_EVERY = 600.0

# Facts of a session that its lines do not show: kept in the session's row.
_SESSION_EVENTS = (Rejected, AuthSucceeded, TlsStarted, TlsFailed, InternalError)
# What happened to a message: found by queue ID.
_MESSAGE_EVENTS = (Queued, Delivered, Deferred, DeliveryFailed, ReportQueued, MessageRemoved)
_KEPT = frozenset(
    (*_SESSION_EVENTS, *_MESSAGE_EVENTS, Connected, Disconnected, FilterVerdict, MilterAction)
)
# Each kept event's field names, so the writer never calls dataclasses.fields per event.
_FIELDS = {kind: tuple(f.name for f in dataclasses.fields(kind)) for kind in _KEPT}
_JSON = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode

# What the feeding side appends: (ts, event), (session, ts, lines) or an Attempt.
_Item = tuple[float, OpsEvent] | tuple[str, float, list[tuple[str, str]]] | Attempt
# [ts, name, text, data]: an event as a message's events row holds it.
_Event = tuple[float, str, str, dict[str, Any]]


class _OpenSession:
    """A session the writer has heard of and not yet written whole."""

    __slots__ = (
        "client",
        "events",
        "lines",
        "listener",
        "queued",
        "row",
        "session",
        "started",
        "unwritten",
        "written",
    )

    def __init__(self, row: int, session: str, ts: float) -> None:
        self.row = row
        self.session = session
        self.started = ts
        self.written = ts  # when it was last written (or began)
        self.client = ""  # unknown if its connect event was dropped
        self.listener = ""
        self.lines: list[tuple[float, list[tuple[str, str]]]] = []  # not written yet
        self.unwritten = 0  # lines in self.lines
        self.events: list[_Event] = []  # not written yet
        self.queued = False  # queued a message since it was last written

    def waited(self, now: float) -> bool:
        """Whether what was not written yet has waited ``PARTIAL_AFTER`` (or is too much)."""
        if not (self.lines or self.events):
            return False
        if self.unwritten >= PARTIAL_LINES:
            return True
        oldest = min(
            self.lines[0][0] if self.lines else now, self.events[0][0] if self.events else now
        )
        return now - oldest >= PARTIAL_AFTER

    def take(self, ended: float | None = None, reason: str | None = None) -> SessionRow:
        """Its row with what was not written yet (appended to what was)."""
        row = (
            self.row,
            self.session,
            self.started,
            self.client,
            self.listener,
            ended,
            reason,
            encode_transcript(self.started, self.lines),
            encode_run(self.events),
        )
        self.lines, self.events, self.queued, self.unwritten = [], [], False, 0
        return row


class _Batch:
    """The rows one transaction writes."""

    __slots__ = ("attempts", "events", "messages", "reports", "sessions")

    def __init__(self) -> None:
        self.sessions: list[SessionRow] = []
        self.messages: list[MessageRow] = []
        self.events: dict[str, list[list[_Event]]] = {}  # queue ID -> its rows' events
        self.reports: list[tuple[str, str]] = []
        self.attempts: list[Attempt] = []

    def add_event(self, queue_id: str, event: _Event) -> None:
        rows = self.events.get(queue_id)
        if rows is None:
            self.events[queue_id] = [[event]]
        elif event[0] - rows[-1][0][0] < _EVENTS_SPAN:
            rows[-1].append(event)
        else:
            rows.append([event])

    def event_rows(self) -> list[EventsRow]:
        rows = [
            (events[0][0], queue_id, _JSON(events))
            for queue_id, runs in self.events.items()
            for events in runs
        ]
        rows.sort(key=lambda row: row[0])  # rowid order is time order, for pruning
        return rows


class Recorder:
    """Hand it events (``event``, an ``EventLog`` listener), session lines and attempts."""

    def __init__(
        self,
        path: Path,
        *,
        retention: float,
        flush_interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.retention = retention
        self.flush_interval = flush_interval
        self.prune_every = min(PRUNE_EVERY, max(1.0, retention / 10))
        self.clock = clock
        self.dropped = 0
        # Appended by any thread, taken from the left by the writer: both are atomic in
        # CPython, so the feeding side takes no lock.
        self._pending: collections.deque[_Item] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._store: TraceStore | None = None
        # The writer's own: sessions not yet written whole, by session ID.
        self._open: dict[str, _OpenSession] = {}
        self._last_row = 0
        self._next_prune = 0.0

    # -- the feeding side: any thread, cheap -----------------------------------------------

    def event(self, ts: float, event: OpsEvent) -> None:
        if type(event) in _KEPT:
            if len(self._pending) < MAX_PENDING:
                self._pending.append((ts, event))
            else:
                self.dropped += 1

    def session_lines(self, session: str, lines: list[tuple[str, str]], ts: float) -> None:
        """Lines of an inbound session that just went over the wire, stamped ``ts``.

        The list becomes the recorder's: the caller hands it over and starts a new one.
        """
        if lines:
            if len(self._pending) < MAX_PENDING:
                self._pending.append((session, ts, lines))
            else:
                self.dropped += 1

    def attempt(self, attempt: Attempt) -> None:
        if len(self._pending) < MAX_PENDING:
            self._pending.append(attempt)
        else:
            self.dropped += 1

    # -- the writer --------------------------------------------------------------------------

    def start(self) -> None:
        self.open_store()
        self._thread = threading.Thread(target=self._run, name="hato-trace", daemon=True)
        self._thread.start()

    def open_store(self) -> None:
        """Open the file (``start`` does; tests that call ``write_pending`` themselves too)."""
        self._store = TraceStore(self.path)
        self._last_row = self._store.last_session_row()

    def close(self) -> None:
        """Write what is pending, and every open session so far, and stop."""
        if self._thread is None:
            return
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        store = self._store
        assert store is not None
        try:
            while True:
                with self._wake:
                    if not self._closing:
                        self._wake.wait(self.flush_interval)
                    closing = self._closing
                self.write_pending(everything=closing)
                self._prune_when_due()
                if closing:
                    break
        finally:
            store.close()

    def write_pending(self, *, everything: bool = False) -> None:
        """Write what was handed over so far in one transaction (the writer's thread).

        Sessions that ended are written whole; open ones only when they queued a message
        (so its story shows them), have waited ``PARTIAL_AFTER``, or ``everything`` is set.
        """
        store = self._store
        assert store is not None
        batch = _Batch()
        take = self._pending.popleft
        handlers = self._handlers
        for _ in range(len(self._pending)):
            item = take()
            if isinstance(item, Attempt):
                batch.attempts.append(item)
            elif len(item) == 3:
                session, ts, lines = item
                found = self._session(session, ts)
                found.lines.append((ts, lines))
                found.unwritten += len(lines)
            else:
                ts, event = item
                handlers[type(event)](self, ts, event, batch)
        now = self.clock()
        for found in list(self._open.values()):
            if found.queued or (everything and (found.lines or found.events)) or found.waited(now):
                batch.sessions.append(found.take())
                found.written = now
            elif now - found.written >= FORGET_AFTER and not (found.lines or found.events):
                del self._open[found.session]
        if not (batch.sessions or batch.messages or batch.events or batch.attempts):
            return
        with store.batch():
            store.put_sessions(batch.sessions)
            store.put_messages(batch.messages)
            store.put_events(batch.event_rows())
            store.mark_reports(batch.reports)
            store.put_attempts(batch.attempts)

    def _session(self, session: str, ts: float) -> _OpenSession:
        found = self._open.get(session)
        if found is None:
            # Ids follow connect times (microseconds), so rowid order is time order for
            # pruning, and an id is never given twice even after every row was pruned.
            row = self._last_row = max(self._last_row + 1, int(ts * 1_000_000))
            found = self._open[session] = _OpenSession(row, session, ts)
        return found

    # One per kept event type: (recorder, ts, event, batch).

    def _on_connected(self, ts: float, event: Connected, batch: _Batch) -> None:
        found = self._session(event.session, ts)
        found.client, found.listener = f"[{event.client_ip}]:{event.client_port}", event.listener

    def _on_disconnected(self, ts: float, event: Disconnected, batch: _Batch) -> None:
        found = self._open.pop(event.session, None)
        if found is not None:
            batch.sessions.append(found.take(ts, event.reason))

    def _on_session_event(self, ts: float, event: OpsEvent, batch: _Batch) -> None:
        session: str = getattr(event, "session", "")
        if session:  # an internal error about no session: the event log has it
            found = self._session(session, ts)
            found.events.append((ts, event.name, event.describe(), _data(event)))

    def _on_verdict(self, ts: float, event: FilterVerdict, batch: _Batch) -> None:
        # In the session's story always; in the message's too when the message was kept.
        self._on_session_event(ts, event, batch)
        if event.action in ("accept", "quarantine"):
            self._on_message_event(ts, event, batch)

    def _on_milter(self, ts: float, event: MilterAction, batch: _Batch) -> None:
        # In the session's story; in the message's too once there is one.
        self._on_session_event(ts, event, batch)
        if event.queue_id:
            self._on_message_event(ts, event, batch)

    def _on_queued(self, ts: float, event: Queued, batch: _Batch) -> None:
        origin = self._open.get(event.session) if event.session else None
        if origin is not None:
            origin.queued = True
        batch.messages.append(
            (
                event.queue_id,
                ts,
                None if origin is None else origin.row,
                event.reverse_path,
                "\n".join(event.recipients),
                event.message_id,
                event.size,
            )
        )
        self._on_message_event(ts, event, batch)

    def _on_report(self, ts: float, event: ReportQueued, batch: _Batch) -> None:
        batch.reports.append((event.queue_id, event.report_id))
        self._on_message_event(ts, event, batch)

    def _on_message_event(self, ts: float, event: OpsEvent, batch: _Batch) -> None:
        queue_id: str = getattr(event, "queue_id")  # noqa: B009 (every message event has one)
        batch.add_event(queue_id, (ts, event.name, event.describe(), _data(event)))

    _handlers: ClassVar[dict[type[OpsEvent], Callable[[Recorder, float, Any, _Batch], None]]] = {
        Connected: _on_connected,
        Disconnected: _on_disconnected,
        Queued: _on_queued,
        ReportQueued: _on_report,
        FilterVerdict: _on_verdict,
        MilterAction: _on_milter,
        **dict.fromkeys(_SESSION_EVENTS, _on_session_event),
        **dict.fromkeys((Delivered, Deferred, DeliveryFailed, MessageRemoved), _on_message_event),
    }

    def _prune_when_due(self) -> None:
        now = self.clock()
        if now < self._next_prune:
            return
        self._next_prune = now + self.prune_every
        assert self._store is not None
        self._store.prune(now - self.retention)


def _data(event: OpsEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in _FIELDS[type(event)]}
