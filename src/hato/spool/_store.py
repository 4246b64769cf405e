"""The spool's index of envelopes: the ``Store`` protocol and its SQLite implementation.

The index is the commit record: a message is queued exactly when its row exists. Message
bytes live in files beside it; the store never sees them.
"""

import builtins
import itertools
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from hato.spool._envelope import Envelope, SpoolError

__all__ = ["SQLiteStore", "Store", "StoredMessage"]

_SCHEMA_VERSION = 4
# One row per message and one per recipient, so that per-recipient delivery state can be
# queried and updated on its own. The envelope's other fields are JSON: only the queue reads
# them, and they grow with new ESMTP extensions.
_SCHEMA = """
CREATE TABLE message (
    queue_id TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    envelope TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE recipient (
    queue_id TEXT NOT NULL REFERENCES message (queue_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address  TEXT NOT NULL,
    notify   TEXT NOT NULL,
    orcpt    TEXT,
    state    TEXT NOT NULL,
    PRIMARY KEY (queue_id, position)
) WITHOUT ROWID;
"""
# Version 2: the queue's delivery state beside the envelope (see _state.py).
_SCHEMA_V2 = """
ALTER TABLE message ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recipient ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recipient ADD COLUMN next_attempt REAL NOT NULL DEFAULT 0;
ALTER TABLE recipient ADD COLUMN last_attempt REAL;
ALTER TABLE recipient ADD COLUMN status TEXT;
ALTER TABLE recipient ADD COLUMN detail TEXT;
CREATE TABLE control (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO control VALUES ('generation', 0);
"""
# Version 3: what delivery reports need to remember (a delay already reported, the server
# that answered).
_SCHEMA_V3 = """
ALTER TABLE recipient ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recipient ADD COLUMN remote_mta TEXT;
"""
# Version 4: why the last attempt did not deliver, as a class (delivery.Reason), and the
# domain it went to (an alias's target may be elsewhere than the queued address).
_SCHEMA_V4 = """
ALTER TABLE recipient ADD COLUMN reason TEXT;
ALTER TABLE recipient ADD COLUMN destination TEXT;
"""
_SELECT = """
SELECT m.queue_id, m.size, m.envelope, r.address, r.notify, r.orcpt, r.state
FROM message AS m JOIN recipient AS r USING (queue_id)
"""
# Seconds a statement waits for a lock (a checkpoint, another process opening the schema)
# before failing; a commit that waits longer should fail and let the client retry.
_BUSY_TIMEOUT = 10.0

_Row = tuple[str, int, str, str, str, str | None, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    """One row of the index: ``states[i]`` is the state of ``envelope.recipients[i]``."""

    queue_id: str
    envelope: Envelope
    size: int
    states: tuple[str, ...]


class Store(Protocol):
    """The index behind the spool; SQLite now, PostgreSQL later.

    ``insert`` and ``delete`` come from one thread at a time (the committer); reads may come
    from any thread while it writes. Every method raises ``SpoolError`` on failure.
    """

    def insert(self, messages: Sequence[StoredMessage]) -> None:
        """Add all messages in one transaction: all of them or none."""

    def delete(self, queue_ids: Iterable[str]) -> None:
        """Remove messages and their recipients in one transaction."""

    def get(self, queue_id: str) -> StoredMessage | None: ...

    def sizes(self) -> dict[str, int]:
        """Every queue ID with its recorded size, for recovery."""

    def close(self) -> None: ...

    def list(self) -> builtins.list[StoredMessage]:
        """All messages in queue ID (arrival) order."""


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise SpoolError(f"spool index: cannot {what}: {exc}") from exc


class SQLiteStore:
    """The index in one SQLite file in WAL mode, so readers never block the committer.

    ``synchronous="NORMAL"`` leaves a commit in the page cache (the caller makes it durable,
    e.g. with ``syncfs``); ``"FULL"`` fsyncs the WAL on every commit.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "FULL",
        readonly: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._write: sqlite3.Connection | None = None
        with _translated(f"open {path}"):
            if readonly:
                self._read = _connect(path.absolute().as_uri() + "?mode=ro")
                self._check_version(self._read)
                return
            self._write = _connect(str(path))
            try:
                self._prepare(self._write, synchronous)
                self._read = _connect(str(path))
            except BaseException:
                self._write.close()
                raise
            self._read.execute("PRAGMA query_only = ON")

    @staticmethod
    def _prepare(conn: sqlite3.Connection, synchronous: str) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise SpoolError(f"spool index: cannot use WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        with _transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for script in (_SCHEMA, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4)[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            SQLiteStore._check_version(conn)

    @staticmethod
    def _check_version(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != _SCHEMA_VERSION:
            raise SpoolError(f"spool index: unknown schema version {version}")

    def _writer(self) -> sqlite3.Connection:
        if self._write is None:
            raise SpoolError("spool index is read-only")
        return self._write

    def insert(self, messages: Sequence[StoredMessage]) -> None:
        conn = self._writer()
        rows = [(m.queue_id, m.size, _envelope_json(m.envelope)) for m in messages]
        recipients = [
            (m.queue_id, i, r.address, ",".join(r.notify), r.orcpt, state)
            for m in messages
            for i, (r, state) in enumerate(zip(m.envelope.recipients, m.states, strict=True))
        ]
        with _translated("insert"), _transaction(conn):
            conn.executemany(
                "INSERT INTO message (queue_id, size, envelope) VALUES (?, ?, ?)", rows
            )
            conn.executemany(
                "INSERT INTO recipient (queue_id, position, address, notify, orcpt, state)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                recipients,
            )

    def delete(self, queue_ids: Iterable[str]) -> None:
        conn = self._writer()
        keys = [(q,) for q in queue_ids]
        with _translated("delete"), _transaction(conn):
            conn.executemany("DELETE FROM recipient WHERE queue_id = ?", keys)
            conn.executemany("DELETE FROM message WHERE queue_id = ?", keys)

    def get(self, queue_id: str) -> StoredMessage | None:
        query = _SELECT + "WHERE m.queue_id = ? ORDER BY r.position"
        with self._lock, _translated("read"):
            rows: builtins.list[_Row] = self._read.execute(query, (queue_id,)).fetchall()
        return _assemble(queue_id, rows) if rows else None

    def sizes(self) -> dict[str, int]:
        with self._lock, _translated("read"):
            return dict(self._read.execute("SELECT queue_id, size FROM message").fetchall())

    def close(self) -> None:
        with self._lock:
            self._read.close()
            if self._write is not None:
                self._write.close()

    def list(self) -> builtins.list[StoredMessage]:
        # One statement, so one snapshot: a message never shows without its recipients.
        with self._lock, _translated("read"):
            rows = self._read.execute(_SELECT + "ORDER BY m.queue_id, r.position").fetchall()
        return [_assemble(q, builtins.list(g)) for q, g in itertools.groupby(rows, _first)]


def _connect(database: str) -> sqlite3.Connection:
    # Autocommit mode (isolation_level=None): transactions are the explicit BEGINs below.
    # check_same_thread=False: the committer thread writes, callers' threads read (under a lock).
    return sqlite3.connect(
        database,
        timeout=_BUSY_TIMEOUT,
        isolation_level=None,
        check_same_thread=False,
        uri=database.startswith("file:"),
    )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


def _first(row: _Row) -> str:
    return row[0]


def _envelope_json(envelope: Envelope) -> str:
    data = envelope.to_dict()
    del data["recipients"]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def envelope_from_row(
    queue_id: str, envelope_json: str, recipients: Iterable[tuple[str, str, str | None]]
) -> Envelope:
    """Rebuild an envelope from its JSON column and (address, notify, orcpt) rows."""
    data: dict[str, Any] = json.loads(envelope_json)
    data["recipients"] = [
        {"address": address, "notify": notify.split(",") if notify else [], "orcpt": orcpt}
        for address, notify, orcpt in recipients
    ]
    try:
        return Envelope.from_dict(data)
    except ValueError as exc:
        raise SpoolError(f"spool index: bad envelope for {queue_id}: {exc}") from exc


def _assemble(queue_id: str, rows: Sequence[_Row]) -> StoredMessage:
    envelope = envelope_from_row(queue_id, rows[0][2], ((r[3], r[4], r[5]) for r in rows))
    return StoredMessage(
        queue_id=queue_id, envelope=envelope, size=rows[0][1], states=tuple(r[6] for r in rows)
    )
