"""The queue's delivery state, kept in the spool's index beside each envelope.

Every recipient of a queued message is ``queued`` (never tried), ``deferred`` (tried, will
be retried at ``next_attempt``), ``delivered`` or ``failed``. :meth:`QueueState.record`
writes outcomes with ``synchronous=FULL``: when it returns they are durable, so the
queue never forgets a delivery it made nor repeats one it recorded. A message whose
recipients are all delivered or failed is removed in the same transaction.

Administrative changes (hold, release, flush, delete) may come from another process
while ``hato serve`` runs; each bumps a generation counter that the running queue polls.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hato.spool._envelope import Envelope, SpoolError
from hato.spool._source import MessageSource
from hato.spool._spool import message_path
from hato.spool._store import _connect, _transaction, _translated, envelope_from_row

__all__ = [
    "DEFERRED",
    "DELIVERED",
    "FAILED",
    "PENDING_STATES",
    "HoldChange",
    "Outcome",
    "QueueEntry",
    "QueueState",
    "QueueSummary",
    "RecipientState",
]

DEFERRED = "deferred"
DELIVERED = "delivered"
FAILED = "failed"
PENDING_STATES = frozenset({"queued", DEFERRED})
# What QueueState.set_held did: held or released it, found it so already, found no message.
HoldChange = Literal["changed", "unchanged", "missing"]

_SELECT = """
SELECT m.queue_id, m.size, m.envelope, m.held, r.position, r.address, r.notify, r.orcpt,
       r.state, r.attempts, r.next_attempt, r.last_attempt, r.status, r.detail, r.warned,
       r.remote_mta, r.notify, r.orcpt, r.reason, r.destination
FROM message AS m JOIN recipient AS r USING (queue_id)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientState:
    position: int
    address: str
    state: str
    attempts: int = 0
    next_attempt: float = 0.0
    last_attempt: float | None = None
    status: str | None = None  # RFC 3463 code of the last outcome
    detail: str | None = None  # what happened, in words (the remote reply, the OS error)
    warned: bool = False  # a "delayed" report went out for it already
    remote_mta: str | None = None  # the server that gave the last answer, if one did
    notify: tuple[str, ...] = ()  # RFC 3461 NOTIFY as the sender gave it
    orcpt: str | None = None
    # Why the last attempt did not deliver (a delivery.Reason value), and the domain that
    # attempt went to; None before any attempt, and for rows older than these columns.
    reason: str | None = None
    destination: str | None = None

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    queue_id: str
    envelope: Envelope
    size: int
    held: bool
    recipients: tuple[RecipientState, ...]

    @property
    def pending(self) -> tuple[RecipientState, ...]:
        return tuple(r for r in self.recipients if r.pending)

    @property
    def due(self) -> float | None:
        """When the next attempt is due; None when nothing is left to do."""
        times = [r.next_attempt for r in self.recipients if r.pending]
        return min(times) if times else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue_id": self.queue_id,
            "size": self.size,
            "held": self.held,
            "envelope": self.envelope.to_dict(),
            "recipients": [
                {
                    "address": r.address,
                    "state": r.state,
                    "attempts": r.attempts,
                    "next_attempt": r.next_attempt if r.pending else None,
                    "last_attempt": r.last_attempt,
                    "status": r.status,
                    "detail": r.detail,
                    "reason": r.reason,
                    "destination": r.destination,
                }
                for r in self.recipients
            ],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSummary:
    """How much is queued, for the metrics: messages by state and the oldest's arrival."""

    # "held"; else "deferred" (some recipient was tried and will be retried); else "queued".
    messages: dict[str, int]
    oldest_arrival: float | None  # unix time; None when the queue is empty


# A message is in one state, the first that applies: held, deferred, queued.
_SUMMARY = """
SELECT state, count(*) FROM (
    SELECT CASE WHEN m.held THEN 'held'
                WHEN EXISTS (SELECT 1 FROM recipient AS r
                             WHERE r.queue_id = m.queue_id AND r.state = 'deferred')
                THEN 'deferred'
                ELSE 'queued' END AS state
    FROM message AS m
) GROUP BY state
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The result of one delivery attempt for one recipient."""

    queue_id: str
    position: int
    state: str
    attempts: int
    next_attempt: float
    last_attempt: float
    status: str
    detail: str
    warned: bool = False
    remote_mta: str | None = None
    reason: str | None = None
    destination: str | None = None


class QueueState:
    """Reads and durably updates delivery state; one per process that manages the queue."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._lock = threading.Lock()
        database = self.data_dir / "spool.sqlite3"
        if not database.exists():
            raise SpoolError(f"no spool in {self.data_dir}")
        with _translated(f"open {database}"):
            self._conn = _connect(str(database))
            self._conn.execute("PRAGMA synchronous = FULL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 2:
            self._conn.close()
            raise SpoolError("spool index predates queue state; start hato serve once")
        # summary()'s own connection: a reader in WAL mode never waits for record()'s sync.
        self._summary_lock = threading.Lock()
        self._summary_conn: sqlite3.Connection | None = None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._summary_lock:
            if self._summary_conn is not None:
                self._summary_conn.close()
                self._summary_conn = None

    def __enter__(self) -> QueueState:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------

    def source(self, queue_id: str) -> MessageSource:
        """The bytes of a queued message, for a delivery agent, a report or ``queue show``."""
        return MessageSource(path=message_path(self.data_dir, queue_id))

    def entries(self) -> builtins.list[QueueEntry]:
        with self._lock, _translated("read"):
            rows = self._conn.execute(_SELECT + "ORDER BY m.queue_id, r.position").fetchall()
        return _assemble(rows)

    def entry(self, queue_id: str) -> QueueEntry | None:
        with self._lock, _translated("read"):
            rows = self._conn.execute(
                _SELECT + "WHERE m.queue_id = ? ORDER BY r.position", (queue_id,)
            ).fetchall()
        found = _assemble(rows)
        return found[0] if found else None

    def summary(self) -> QueueSummary:
        """Messages per state and the oldest's arrival: one scan of the index, for a scrape."""
        with self._summary_lock, _translated("read"):
            if self._summary_conn is None:
                self._summary_conn = _connect(str(self.data_dir / "spool.sqlite3"))
            conn = self._summary_conn
            counts = dict(conn.execute(_SUMMARY).fetchall())
            row = conn.execute("SELECT envelope FROM message ORDER BY queue_id LIMIT 1").fetchone()
        oldest = None
        if row is not None:
            arrival = json.loads(row[0]).get("arrival")
            oldest = float(arrival) if isinstance(arrival, int | float) else None
        return QueueSummary(messages=counts, oldest_arrival=oldest)

    def generation(self) -> int:
        with self._lock, _translated("read"):
            row = self._conn.execute("SELECT value FROM control WHERE name = 'generation'")
            return int(row.fetchone()[0])

    # -- the queue manager's writes ----------------------------------------------------

    def record(self, outcomes: Sequence[Outcome], finished: Sequence[str] = ()) -> list[str]:
        """Store outcomes durably; remove the messages left with nothing to do.

        Returns the queue IDs removed: those in ``finished`` and those whose every recipient
        is now delivered or failed, all in the same transaction as the outcomes.
        """
        rows = [_outcome_row(o) for o in outcomes]
        touched = dict.fromkeys(o.queue_id for o in outcomes)
        with self._lock, _translated("record outcomes"), _transaction(self._conn):
            self._conn.executemany(
                "UPDATE recipient SET state = ?, attempts = ?, next_attempt = ?,"
                " last_attempt = ?, status = ?, detail = ?, warned = ?, remote_mta = ?,"
                " reason = ?, destination = ?"
                " WHERE queue_id = ? AND position = ?",
                rows,
            )
            done = list(finished) + [q for q in touched if q not in finished and self._done(q)]
            self._delete_rows(done)
        self._unlink(done)
        return done

    def _done(self, queue_id: str) -> bool:
        row = self._conn.execute(
            "SELECT count(*) FROM recipient WHERE queue_id = ? AND state IN ('queued', 'deferred')",
            (queue_id,),
        ).fetchone()
        return int(row[0]) == 0

    # -- administration (any process) --------------------------------------------------

    def set_held(self, queue_id: str, held: bool) -> HoldChange:
        """Hold or release one message; says whether it changed, was so already, or is gone."""
        with self._lock, _translated("hold"), _transaction(self._conn):
            changed = self._conn.execute(
                "UPDATE message SET held = ? WHERE queue_id = ? AND held != ?",
                (int(held), queue_id, int(held)),
            ).rowcount
            if changed:
                self._bump()
                return "changed"
            found = self._conn.execute(
                "SELECT 1 FROM message WHERE queue_id = ?", (queue_id,)
            ).fetchone()
        return "unchanged" if found else "missing"

    def queue_ids(self) -> builtins.list[str]:
        """Every queued message's ID, oldest first (for the ALL of hato queue delete)."""
        with self._lock, _translated("read"):
            rows = self._conn.execute("SELECT queue_id FROM message ORDER BY queue_id")
            return [row[0] for row in rows]

    def reschedule(self, queue_ids: Sequence[str] | None, when: float) -> int:
        """Make pending recipients due at ``when`` (flush); None means every message."""
        sql = "UPDATE recipient SET next_attempt = ? WHERE state IN ('queued', 'deferred')"
        with self._lock, _translated("flush"), _transaction(self._conn):
            if queue_ids is None:
                changed = self._conn.execute(sql, (when,)).rowcount
            else:
                changed = sum(
                    self._conn.execute(sql + " AND queue_id = ?", (when, q)).rowcount
                    for q in queue_ids
                )
            if changed:
                self._bump()
        return changed

    def delete(self, queue_ids: Sequence[str]) -> int:
        with self._lock, _translated("delete"), _transaction(self._conn):
            removed = self._delete_rows(queue_ids)
            if removed:
                self._bump()
        self._unlink(queue_ids)
        return removed

    def _bump(self) -> None:
        self._conn.execute("UPDATE control SET value = value + 1 WHERE name = 'generation'")

    def _delete_rows(self, queue_ids: Iterable[str]) -> int:
        keys = [(q,) for q in queue_ids]
        self._conn.executemany("DELETE FROM recipient WHERE queue_id = ?", keys)
        before = self._conn.total_changes
        self._conn.executemany("DELETE FROM message WHERE queue_id = ?", keys)
        return self._conn.total_changes - before

    def _unlink(self, queue_ids: Iterable[str]) -> None:
        # After the commit: a crash before this leaves a file without a row, which the
        # spool's recovery deletes at the next start.
        for queue_id in queue_ids:
            try:
                message_path(self.data_dir, queue_id).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise SpoolError(f"cannot remove {queue_id}: {exc}") from exc


def _outcome_row(o: Outcome) -> tuple[object, ...]:
    return (
        o.state,
        o.attempts,
        o.next_attempt,
        o.last_attempt,
        o.status,
        o.detail,
        int(o.warned),
        o.remote_mta,
        o.reason,
        o.destination,
        o.queue_id,
        o.position,
    )


def _assemble(rows: Sequence[tuple[Any, ...]]) -> builtins.list[QueueEntry]:
    entries: builtins.list[QueueEntry] = []
    current: builtins.list[tuple[Any, ...]] = []
    for row in rows:
        if current and current[0][0] != row[0]:
            entries.append(_entry(current))
            current = []
        current.append(row)
    if current:
        entries.append(_entry(current))
    return entries


def _entry(rows: Sequence[tuple[Any, ...]]) -> QueueEntry:
    queue_id, size, envelope_json, held = rows[0][:4]
    envelope = envelope_from_row(queue_id, envelope_json, ((r[5], r[6], r[7]) for r in rows))
    recipients = tuple(
        RecipientState(
            position=r[4],
            address=r[5],
            state=r[8],
            attempts=r[9],
            next_attempt=r[10],
            last_attempt=r[11],
            status=r[12],
            detail=r[13],
            warned=bool(r[14]),
            remote_mta=r[15],
            notify=tuple(r[16].split(",")) if r[16] else (),
            orcpt=r[17],
            reason=r[18],
            destination=r[19],
        )
        for r in rows
    )
    return QueueEntry(
        queue_id=queue_id, envelope=envelope, size=size, held=bool(held), recipients=recipients
    )
