"""The flight recorder (layer 1): what happened to each message, kept for a while.

What it promises:

- Every inbound session's conversation (command and reply lines; never message data, and
  AUTH data shown as ``****``) and every outbound delivery attempt's conversation (host,
  address, TLS facts, the lines both ways) is kept with wall-clock times, linked to the
  queue IDs it concerns: a session to every message it queued, an attempt to its one.
- Everything else comes from the event stream (``EventLog.subscribe``): refusals with
  their reasons, queueing, delivered/deferred (with the next attempt)/failed, reports
  queued with their own queue IDs, removal. Nothing in the hot path calls the recorder
  but the session's transcript hand-over and that subscription, both a deque append
  (HELO, MAIL and RCPT events are dropped there: the transcript shows them).
- Writing happens in one thread, a batch at a time (``FLUSH_INTERVAL``), in one SQLite
  transaction on ``DATA/trace.sqlite3`` (WAL, ``synchronous=OFF``): never a sync per
  line, and rows per session and per message rather than per line or event. A session
  is written when it ends; one still open only once it queued a message, its unwritten
  lines are ``PARTIAL_AFTER`` old or ``PARTIAL_LINES`` many, or the recorder closes.
  The trace is a diagnostic, not part of the durability promise: a crash loses the
  last second or so of it (and what open sessions said since they were last written),
  and a recorder that cannot keep up drops records (``MAX_PENDING``) rather than hold
  up mail.
- Records older than ``retention`` seconds are pruned by the running server, each
  record by its own age (a message deferred for days keeps its recent attempts).
- A file of another layout (its ``PRAGMA user_version``) is replaced when the server
  starts; ``hato trace`` refuses to read one (``TraceVersionError``).
- ``TraceStore.story(queue_id)`` returns a message's whole story in time order;
  ``render_story`` prints it. ``find`` searches messages, ``refusals`` the refusals that
  left no message (a refused RCPT has no queue ID). The store is read by ``hato trace``
  from another process.
"""

from hato.trace._model import Attempt, TimedLine
from hato.trace._recorder import (
    FLUSH_INTERVAL,
    MAX_PENDING,
    PARTIAL_AFTER,
    PARTIAL_LINES,
    Recorder,
)
from hato.trace._render import render_refusals, render_story, render_summaries
from hato.trace._store import TRACE_FILE, Refusal, Summary, TraceStore, TraceVersionError

__all__ = [
    "FLUSH_INTERVAL",
    "MAX_PENDING",
    "PARTIAL_AFTER",
    "PARTIAL_LINES",
    "TRACE_FILE",
    "Attempt",
    "Recorder",
    "Refusal",
    "Summary",
    "TimedLine",
    "TraceStore",
    "TraceVersionError",
    "render_refusals",
    "render_story",
    "render_summaries",
]
