"""The recorder: takes events and transcripts on any thread, writes them in batches."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hato.events import (
    AuthSucceeded,
    Connected,
    Deferred,
    Delivered,
    DeliveryFailed,
    Disconnected,
    InternalError,
    MessageRemoved,
    OpsEvent,
    Queued,
    Rejected,
    ReportQueued,
    TlsFailed,
    TlsStarted,
)
from hato.trace._model import Attempt, TimedLine
from hato.trace._store import TraceStore

__all__ = ["FLUSH_INTERVAL", "MAX_PENDING", "Recorder"]

# Seconds between two batches: what a crash may lose, and how late `hato trace` sees things.
FLUSH_INTERVAL = 0.5
# Records waiting for the writer; past this the recorder drops, since mail comes first.
MAX_PENDING = 100_000
# The longest wait between two prunings (shorter when the retention is short).
PRUNE_EVERY = 600.0

# Events worth keeping: the session's lines already say what HELO, MAIL and RCPT did.
_SESSION_EVENTS = (Rejected, AuthSucceeded, TlsStarted, TlsFailed, InternalError)
_MESSAGE_EVENTS = (Queued, Delivered, Deferred, DeliveryFailed, ReportQueued, MessageRemoved)
_KEPT = (*_SESSION_EVENTS, *_MESSAGE_EVENTS, Connected, Disconnected)

_Item = (
    tuple[float, OpsEvent]  # an event and its time
    | tuple[str, tuple[TimedLine, ...]]  # a session's lines
    | Attempt
)


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
        self._pending: list[_Item] = []
        self._lock = threading.Lock()  # guards _pending only; never held while writing
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._store: TraceStore | None = None
        self._sessions: dict[str, int] = {}  # session ID -> its row, while it is open
        self._next_prune = 0.0

    # -- the feeding side: any thread, cheap -----------------------------------------------

    def event(self, ts: float, event: OpsEvent) -> None:
        if isinstance(event, InternalError) and not event.session:
            return  # about no session or message: the event log has it
        if isinstance(event, _KEPT):
            self._put((ts, event))

    def session_lines(self, session: str, lines: Sequence[tuple[str, str]], ts: float) -> None:
        """Lines of an inbound session that just went over the wire, stamped ``ts``."""
        if lines:
            self._put((session, tuple((ts, direction, text) for direction, text in lines)))

    def attempt(self, attempt: Attempt) -> None:
        self._put(attempt)

    def _put(self, item: _Item) -> None:
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1
            else:
                self._pending.append(item)

    # -- the writer --------------------------------------------------------------------------

    def start(self) -> None:
        self._store = TraceStore(self.path)
        self._thread = threading.Thread(target=self._run, name="hato-trace", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is pending and stop."""
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
                self.write_pending()
                self._prune_when_due()
                if closing:
                    break
        finally:
            store.close()

    def write_pending(self) -> None:
        """Write everything handed over so far in one transaction (the writer's thread)."""
        store = self._store
        assert store is not None
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        with store.batch():
            for item in batch:
                if isinstance(item, Attempt):
                    store.add_attempt(item)
                elif isinstance(item[1], OpsEvent):
                    self._write_event(store, item[0], item[1])
                else:
                    session, lines = item
                    store.add_lines(self._session_row(store, session, lines[0][0]), lines)

    def _session_row(self, store: TraceStore, session: str, ts: float) -> int:
        row = self._sessions.get(session)
        if row is None:  # its connect event was dropped: the lines still need a home
            row = self._sessions[session] = store.add_session(session, ts, "", "")
        return row

    def _write_event(self, store: TraceStore, ts: float, event: OpsEvent) -> None:
        data: dict[str, Any] = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        match event:
            case Connected(session=session, client_ip=ip, client_port=port, listener=listener):
                client = f"[{ip}]:{port}"
                self._sessions[session] = store.add_session(session, ts, client, listener)
                return
            case Disconnected(session=session, reason=reason):
                row = self._sessions.pop(session, None)
                if row is not None:
                    store.end_session(row, ts, reason)
                return
            case Queued(queue_id=queue_id):
                origin = self._sessions.get(event.session) if event.session else None
                store.add_message(
                    queue_id,
                    ts,
                    session=origin,
                    sender=event.reverse_path,
                    recipients=event.recipients,
                    message_id=event.message_id,
                    size=event.size,
                )
                store.add_event(ts, event.name, event.describe(), data, session=None)
                return
            case ReportQueued(queue_id=queue_id, report_id=report_id):
                store.mark_report(report_id, queue_id)
        session_id = data.get("session") or ""
        row = self._sessions.get(session_id) if session_id else None
        store.add_event(ts, event.name, event.describe(), data, session=row)

    def _prune_when_due(self) -> None:
        now = self.clock()
        if now < self._next_prune or self._store is None:
            return
        self._next_prune = now + self.prune_every
        self._store.prune(now - self.retention)
