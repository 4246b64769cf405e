"""Queue state in the spool index: outcomes, removal, hold, flush, delete, generation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hato.spool import (
    DEFERRED,
    DELIVERED,
    FAILED,
    Envelope,
    Outcome,
    QueueState,
    Recipient,
    Spool,
    SpoolError,
    message_path,
)


def queue_one(data_dir: Path, *recipients: str) -> str:
    async def run() -> str:
        with Spool(data_dir) as spool:
            spool.open()
            writer = spool.new_message()
            writer.write(b"Subject: x\r\n\r\nbody\r\n")
            envelope = Envelope(
                reverse_path="a@example.com",
                recipients=tuple(Recipient(address=r) for r in recipients),
                arrival=1000.0,
            )
            await writer.commit(envelope)
            return writer.queue_id

    return asyncio.run(run())


def outcome(queue_id: str, position: int, state: str, next_attempt: float = 0.0) -> Outcome:
    return Outcome(
        queue_id=queue_id,
        position=position,
        state=state,
        attempts=1,
        next_attempt=next_attempt,
        last_attempt=2000.0,
        status={DELIVERED: "2.0.0", DEFERRED: "4.3.0", FAILED: "5.1.1"}[state],
        detail=f"{state} in a test",
    )


def test_new_messages_are_due_at_once(tmp_path: Path) -> None:
    queue_id = queue_one(tmp_path, "u@localhost", "v@localhost")
    with QueueState(tmp_path) as state:
        entry = state.entry(queue_id)
    assert entry is not None
    assert [r.state for r in entry.recipients] == ["queued", "queued"]
    assert entry.due == 0.0
    assert entry.envelope.reverse_path == "a@example.com"


def test_outcomes_are_kept_and_pending_shrinks(tmp_path: Path) -> None:
    queue_id = queue_one(tmp_path, "u@localhost", "v@localhost")
    with QueueState(tmp_path) as state:
        state.record([outcome(queue_id, 0, DELIVERED), outcome(queue_id, 1, DEFERRED, 5000.0)])
    with QueueState(tmp_path) as state:  # a new connection: it was committed
        entry = state.entry(queue_id)
    assert entry is not None
    assert [r.state for r in entry.recipients] == [DELIVERED, DEFERRED]
    assert [r.address for r in entry.pending] == ["v@localhost"]
    assert entry.due == 5000.0
    assert entry.recipients[1].detail == "deferred in a test"


def test_finished_message_leaves_queue_and_disk(tmp_path: Path) -> None:
    queue_id = queue_one(tmp_path, "u@localhost")
    path = message_path(tmp_path, queue_id)
    assert path.exists()
    with QueueState(tmp_path) as state:
        state.record([outcome(queue_id, 0, FAILED)], finished=[queue_id])
        assert state.entry(queue_id) is None
        assert state.entries() == []
    assert not path.exists()


def test_admin_changes_bump_the_generation(tmp_path: Path) -> None:
    queue_id = queue_one(tmp_path, "u@localhost")
    with QueueState(tmp_path) as state:
        first = state.generation()
        assert state.set_held(queue_id, True) == "changed"
        entry = state.entry(queue_id)
        assert entry is not None and entry.held
        assert state.generation() == first + 1
        # Holding it again changes nothing, says so, and does not make the queue reload.
        assert state.set_held(queue_id, True) == "unchanged"
        assert state.generation() == first + 1
        state.record([outcome(queue_id, 0, DEFERRED, 9999.0)])
        assert state.reschedule([queue_id], 0.0) == 1
        entry = state.entry(queue_id)
        assert entry is not None and entry.due == 0.0
        assert state.set_held("NOSUCHMESSAGE0", True) == "missing"
        assert state.queue_ids() == [queue_id]
        assert state.delete([queue_id]) == 1
        assert state.entry(queue_id) is None
        assert state.generation() == first + 3
    assert not message_path(tmp_path, queue_id).exists()


def test_no_spool_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="no spool"):
        QueueState(tmp_path)
