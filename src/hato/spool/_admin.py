"""Queue administration, shared by ``hato queue`` and the HTTP API: one code path for both.

Every operation works on a :class:`QueueState` (any process may open one) and returns plain
data saying what happened to each queue ID named, so each caller can word it its own way.
A running ``hato serve`` notices the changes within a second (the index's generation).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from hato.spool._state import HoldChange, QueueEntry, QueueState

__all__ = [
    "HEADER_PREVIEW_BYTES",
    "QUEUE_STATES",
    "DeleteResult",
    "FlushResult",
    "HoldResult",
    "QueueFilter",
    "delete_messages",
    "entry_state",
    "flush_messages",
    "header_section",
    "list_entries",
    "set_held",
]

# How much of a message is read to find its header section.
HEADER_PREVIEW_BYTES = 64 * 1024
# What a message is, for the state filter: held, else deferred once an attempt failed.
QUEUE_STATES = ("held", "deferred", "queued")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueFilter:
    """Which messages a listing shows; each given condition must hold (substrings, no case)."""

    sender: str | None = None
    recipient: str | None = None
    destination: str | None = None  # the domain of a recipient still pending
    state: str | None = None  # one of QUEUE_STATES
    min_age: float | None = None  # seconds since arrival, at least

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in QUEUE_STATES:
            raise ValueError(f"state must be one of {', '.join(QUEUE_STATES)}, not {self.state!r}")
        if self.min_age is not None and self.min_age < 0:
            raise ValueError("age cannot be negative")

    def matches(self, entry: QueueEntry, now: float) -> bool:
        envelope = entry.envelope
        if self.sender is not None and self.sender.lower() not in envelope.reverse_path.lower():
            return False
        addresses = [r.address.lower() for r in entry.recipients]
        if self.recipient is not None and not any(self.recipient.lower() in a for a in addresses):
            return False
        if self.destination is not None:
            wanted = self.destination.lower().rstrip(".")
            if not any(_domain(r.address) == wanted for r in entry.pending):
                return False
        if self.state is not None and entry_state(entry) != self.state:
            return False
        return self.min_age is None or now - envelope.arrival >= self.min_age


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def entry_state(entry: QueueEntry) -> str:
    """``held``, ``deferred`` (an attempt failed for a pending recipient) or ``queued``."""
    if entry.held:
        return "held"
    if any(r.state == "deferred" for r in entry.pending):
        return "deferred"
    return "queued"


def list_entries(
    state: QueueState,
    wanted: QueueFilter | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[QueueEntry], int]:
    """The matching messages, oldest first, from ``offset`` (at most ``limit``), and how
    many match in all."""
    now = time.time()
    entries = state.entries()
    if wanted is not None:
        entries = [e for e in entries if wanted.matches(e, now)]
    end = None if limit is None else offset + limit
    return entries[offset:end], len(entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldResult:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # held (released) already
    missing: list[str] = field(default_factory=list)


def set_held(state: QueueState, queue_ids: Sequence[str] | None, held: bool) -> HoldResult:
    """Hold or release the messages named, or every queued one (None)."""
    outcomes: dict[HoldChange, list[str]] = {"changed": [], "unchanged": [], "missing": []}
    for queue_id in state.queue_ids() if queue_ids is None else queue_ids:
        outcomes[state.set_held(queue_id, held)].append(queue_id)
    return HoldResult(
        changed=outcomes["changed"], unchanged=outcomes["unchanged"], missing=outcomes["missing"]
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FlushResult:
    scheduled: int  # recipients made due now
    held: list[str] = field(default_factory=list)  # named, but not delivered until released
    missing: list[str] = field(default_factory=list)


def flush_messages(
    state: QueueState,
    queue_ids: Sequence[str] | None = None,
    *,
    destination: str | None = None,
) -> FlushResult:
    """Make pending recipients due now: every message (no IDs, no destination), the
    messages named, or those with a pending recipient in ``destination``."""
    named = list(queue_ids or ())
    if destination is not None:
        found, _ = list_entries(state, QueueFilter(destination=destination))
        named += [e.queue_id for e in found if e.queue_id not in named]
        if not named:
            return FlushResult(scheduled=0)
    missing, held = [], []
    for queue_id in named:
        entry = state.entry(queue_id)
        if entry is None:
            missing.append(queue_id)
        elif entry.held:
            held.append(queue_id)
    # Now, not 0: the index keeps a real time, which `queue list` can show.
    scheduled = state.reschedule(named or None, time.time())
    return FlushResult(scheduled=scheduled, held=held, missing=missing)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteResult:
    removed: int
    missing: list[str] = field(default_factory=list)


def delete_messages(state: QueueState, queue_ids: Sequence[str] | None) -> DeleteResult:
    """Remove the messages named, or every queued one (None), without delivering them."""
    targets = state.queue_ids() if queue_ids is None else list(queue_ids)
    missing = [q for q in targets if state.entry(q) is None]
    return DeleteResult(removed=state.delete(targets), missing=missing)


def header_section(state: QueueState, queue_id: str) -> bytes:
    """The message's header section (up to its blank line); OSError if it cannot be read."""
    with state.source(queue_id).open() as data:
        head = data.read(HEADER_PREVIEW_BYTES)
    end = head.find(b"\r\n\r\n")
    return head if end < 0 else head[: end + 2]
