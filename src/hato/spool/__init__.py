"""The spool: where accepted messages become durable, and the one place the queue reads them.

Promise: ``await writer.commit(envelope)`` returns only once the message file, its directory
entry and its envelope row are on stable storage; only then may the caller answer
``250 2.0.0 Ok: queued as <ID>``. A message is queued exactly when its row exists.

- Concurrent commits share one sync (group commit): a committer thread makes a whole batch
  durable with one ``syncfs(2)``, or, portably, with fsyncs of each file and directory and a
  FULL SQLite commit.
- ``SpoolError`` means nothing was queued (the file is removed): answer ``451 4.3.0``.
- A crash before commit returns leaves at most a file without a row: ``Spool.open()`` deletes
  it (its client never saw 250 and retries). A row whose file is missing or truncated is
  reported by ``open()`` and kept: damage from outside, or, after a power loss during a
  syncfs, a message whose commit never returned.
- A commit whose waiter is cancelled still completes: a duplicate is possible, a loss is not.
"""

from hato.spool._admin import (
    HEADER_PREVIEW_BYTES,
    QUEUE_STATES,
    DeleteResult,
    FlushResult,
    HoldResult,
    QueueFilter,
    delete_messages,
    entry_state,
    flush_messages,
    header_section,
    list_entries,
    set_held,
)
from hato.spool._durable import HAVE_SYNCFS, SYNC_MODES, fsync_dir, sync_mode, syncfs
from hato.spool._envelope import (
    QUEUED,
    Envelope,
    QueuedMessage,
    QueueIdSource,
    Recipient,
    RecoveryReport,
    SpoolError,
    SpoolStats,
    is_queue_id,
)
from hato.spool._intake import (
    ANNOTATION_FULL_NAME,
    ANNOTATION_PICKUP,
    ANNOTATION_SENDER_SET,
    ANNOTATION_USER,
    Accepted,
    IncomingMessage,
    Intake,
    Origin,
    Refusal,
    SessionFacts,
    SessionStages,
)
from hato.spool._source import MessageSource
from hato.spool._spool import MessageWriter, Spool, message_path
from hato.spool._state import (
    DEFERRED,
    DELIVERED,
    FAILED,
    PENDING_STATES,
    HoldChange,
    Outcome,
    QueueEntry,
    QueueState,
    QueueSummary,
    RecipientState,
)
from hato.spool._store import SQLiteStore, Store, StoredMessage

__all__ = [
    "ANNOTATION_FULL_NAME",
    "ANNOTATION_PICKUP",
    "ANNOTATION_SENDER_SET",
    "ANNOTATION_USER",
    "DEFERRED",
    "DELIVERED",
    "FAILED",
    "HAVE_SYNCFS",
    "HEADER_PREVIEW_BYTES",
    "PENDING_STATES",
    "QUEUED",
    "QUEUE_STATES",
    "SYNC_MODES",
    "Accepted",
    "DeleteResult",
    "Envelope",
    "FlushResult",
    "HoldChange",
    "HoldResult",
    "IncomingMessage",
    "Intake",
    "MessageSource",
    "MessageWriter",
    "Origin",
    "Outcome",
    "QueueEntry",
    "QueueFilter",
    "QueueIdSource",
    "QueueState",
    "QueueSummary",
    "QueuedMessage",
    "Recipient",
    "RecipientState",
    "RecoveryReport",
    "Refusal",
    "SQLiteStore",
    "SessionFacts",
    "SessionStages",
    "Spool",
    "SpoolError",
    "SpoolStats",
    "Store",
    "StoredMessage",
    "delete_messages",
    "entry_state",
    "flush_messages",
    "fsync_dir",
    "header_section",
    "is_queue_id",
    "list_entries",
    "message_path",
    "set_held",
    "sync_mode",
    "syncfs",
]
