"""The queue manager: picks up queued messages, delivers them, records every outcome.

Promises:
- Every message in the spool is eventually delivered, failed or expired: the schedule is
  rebuilt from the spool at start, so nothing queued before a restart is forgotten.
- An outcome is recorded durably (``QueueState.record``) only after the delivery agent
  returned, i.e. after the mailbox file is durable; a crash in between is healed by the
  agent's idempotent file names (messages recovered at start are delivered with
  ``recheck``), so no mailbox gets a message twice.
- A message leaves the queue in the same transaction that records its last outcome.
- Held messages are never attempted; ``hato queue`` changes made by another process are
  noticed within ``ADMIN_POLL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..delivery import MaildirAgent, MaildirJob, Result, Status
from ..events import (
    Deferred,
    Delivered,
    DeliveryFailed,
    EventLog,
    InternalError,
    MessageRemoved,
    OpsEvent,
)
from ..routing import LocalRouter
from ..spool import (
    DEFERRED,
    DELIVERED,
    FAILED,
    Outcome,
    QueueEntry,
    QueueState,
    RecipientState,
    SpoolError,
    message_path,
)
from ._retry import RetryPolicy

__all__ = ["QueueManager"]

# Most messages handed to one worker batch: their mailbox files share one sync.
BATCH = 64
# Batches of local (Maildir) deliveries in progress at once.
LOCAL_WORKERS = 1
# How often another process's hold/release/flush/delete is looked for.
ADMIN_POLL = 1.0
# Status when a recipient routes to a remote domain and no relay transport exists yet.
NO_RELAY = ("4.3.5", "remote delivery is not configured on this server")


@dataclass(slots=True)
class _Plan:
    """One recipient's attempt: the mailbox jobs its address expanded to, or a verdict."""

    entry: QueueEntry
    recipient: RecipientState
    jobs: list[MaildirJob] = field(default_factory=list)
    verdicts: list[tuple[str, Result]] = field(default_factory=list)  # (target, result)


class QueueManager:
    def __init__(
        self,
        *,
        state: QueueState,
        router: LocalRouter,
        maildir: MaildirAgent,
        retry: RetryPolicy,
        log: EventLog,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.state = state
        self.router = router
        self.maildir = maildir
        self.retry = retry
        self.log = log
        self.concurrency = concurrency
        self.clock = clock
        self.rng = rng
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}
        self._inflight: set[str] = set()
        self._recheck: set[str] = set()
        self._wakeup = asyncio.Event()
        # Mailbox files are made durable per batch with one sync of their file system, so
        # parallel local batches only compete for that sync: one worker, growing batches
        # (group commit again). ``concurrency`` bounds deliveries that wait on the network.
        self._slots = asyncio.Semaphore(LOCAL_WORKERS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._generation = -1

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._reload(recovering=True)
        self._runner = asyncio.ensure_future(self._run())
        self._watcher = asyncio.ensure_future(self._watch_admin())

    async def stop(self) -> None:
        for task in (self._runner, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def notify(self, queue_id: str) -> None:
        """A message was just queued: deliver it now."""
        self._schedule(queue_id, 0.0)

    async def flush(self) -> None:
        """Make everything pending due now (tests and ``hato queue flush``)."""
        await asyncio.to_thread(self.state.reschedule, None, 0.0)
        await self._reload(recovering=False)

    @property
    def idle(self) -> bool:
        now = self.clock()
        return not self._inflight and not any(due <= now for due in self._due.values())

    # -- the schedule ------------------------------------------------------------------

    def _schedule(self, queue_id: str, due: float) -> None:
        current = self._due.get(queue_id)
        if current is not None and current <= due:
            return
        self._due[queue_id] = due
        heapq.heappush(self._heap, (due, queue_id))
        self._wakeup.set()

    async def _reload(self, *, recovering: bool) -> None:
        generation = await asyncio.to_thread(self.state.generation)
        entries = await asyncio.to_thread(self.state.entries)
        self._generation = generation
        self._heap, self._due = [], {}
        finished = []
        for entry in entries:
            due = entry.due
            if due is None:
                finished.append(entry.queue_id)  # all outcomes recorded; removal was cut short
            elif not entry.held:
                if recovering:
                    self._recheck.add(entry.queue_id)
                self._schedule(entry.queue_id, due)
        if finished:
            await asyncio.to_thread(self.state.record, [], finished)
        self._wakeup.set()

    async def _watch_admin(self) -> None:
        while True:
            await asyncio.sleep(ADMIN_POLL)
            try:
                generation = await asyncio.to_thread(self.state.generation)
                if generation != self._generation:
                    await self._reload(recovering=False)
            except SpoolError as error:
                self.log.emit(InternalError(where="queue", error=str(error)))

    def _take_due(self) -> list[str]:
        now = self.clock()
        batch: list[str] = []
        while self._heap and self._heap[0][0] <= now and len(batch) < BATCH:
            due, queue_id = heapq.heappop(self._heap)
            if self._due.get(queue_id) != due or queue_id in self._inflight:
                continue  # superseded by a later schedule, or being worked on
            del self._due[queue_id]
            batch.append(queue_id)
        return batch

    async def _run(self) -> None:
        while True:
            batch = self._take_due()
            if not batch:
                self._wakeup.clear()
                timeout = self._heap[0][0] - self.clock() if self._heap else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                continue
            await self._slots.acquire()
            self._inflight.update(batch)
            task = asyncio.ensure_future(self._attempt(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _attempt(self, batch: list[str]) -> None:
        try:
            events, reschedule = await asyncio.to_thread(self._deliver, batch)
        except Exception as error:  # keep the queue running; try the batch again later
            self.log.emit(InternalError(where="queue", error=repr(error)))
            retry_at = self.clock() + self.retry.initial
            events, reschedule = [], [(queue_id, retry_at) for queue_id in batch]
        finally:
            self._inflight.difference_update(batch)
            self._slots.release()
        for event in events:
            self.log.emit(event)
        for queue_id, due in reschedule:
            self._schedule(queue_id, due)

    # -- one batch, in a worker thread ---------------------------------------------------

    def _deliver(self, batch: list[str]) -> tuple[list[OpsEvent], list[tuple[str, float]]]:
        now = self.clock()
        plans: list[_Plan] = []
        for queue_id in batch:
            entry = self.state.entry(queue_id)
            if entry is None or entry.held:
                continue  # deleted or held meanwhile
            recheck = queue_id in self._recheck
            for recipient in entry.pending:
                plans.append(self._plan(entry, recipient, recheck or recipient.attempts > 0))
        jobs = [job for plan in plans for job in plan.jobs]
        results = iter(self.maildir.deliver(jobs)) if jobs else iter(())
        for plan in plans:
            plan.verdicts += [(f"{j.local_part}@{j.domain}", next(results)) for j in plan.jobs]
        events, outcomes = self._outcomes(plans, now)
        entries = {p.entry.queue_id: p.entry for p in plans}
        deferred = {o.queue_id for o in outcomes if o.state == DEFERRED}
        finished = [queue_id for queue_id in entries if queue_id not in deferred]
        self.state.record(outcomes, finished)
        self._recheck.difference_update(batch)
        events += [_removed(entries[queue_id], outcomes) for queue_id in finished]
        reschedule = [(o.queue_id, o.next_attempt) for o in outcomes if o.state == DEFERRED]
        return events, reschedule

    def _plan(self, entry: QueueEntry, recipient: RecipientState, recheck: bool) -> _Plan:
        plan = _Plan(entry=entry, recipient=recipient)
        expansion = self.router.expand(recipient.address)
        for failure in expansion.failures:
            result = Result(status=Status.FAILED, enhanced=failure.status, detail=failure.reason)
            plan.verdicts.append((failure.address, result))
        for address in expansion.remote:
            status, detail = NO_RELAY
            result = Result(status=Status.DEFERRED, enhanced=status, detail=detail)
            plan.verdicts.append((address, result))
        envelope = entry.envelope
        for mailbox in expansion.mailboxes:
            plan.jobs.append(
                MaildirJob(
                    queue_id=entry.queue_id,
                    recipient_index=recipient.position,
                    domain=mailbox.domain,
                    local_part=mailbox.local_part,
                    delivered_to=mailbox.address,
                    reverse_path=envelope.reverse_path,
                    message_path=message_path(self.state.data_dir, entry.queue_id),
                    arrival=envelope.arrival,
                    recheck=recheck,
                )
            )
        return plan

    def _outcomes(self, plans: Sequence[_Plan], now: float) -> tuple[list[OpsEvent], list[Outcome]]:
        events: list[OpsEvent] = []
        outcomes: list[Outcome] = []
        for plan in plans:
            state, result = _combine([r for _, r in plan.verdicts])
            recipient, entry = plan.recipient, plan.entry
            attempts = recipient.attempts + 1
            next_attempt = 0.0
            detail = result.detail
            if state == DEFERRED:
                if self.retry.expired(entry.envelope.arrival, now):
                    state, detail = FAILED, f"message expired in the queue; last: {detail}"
                    result = Result(status=Status.FAILED, enhanced="4.4.7", detail=detail)
                else:
                    next_attempt = now + self.retry.delay(attempts, self.rng)
            outcomes.append(
                Outcome(
                    queue_id=entry.queue_id,
                    position=recipient.position,
                    state=state,
                    attempts=attempts,
                    next_attempt=next_attempt,
                    last_attempt=now,
                    status=result.enhanced,
                    detail=detail,
                )
            )
            events += _events(plan, state, result, attempts, next_attempt, detail)
        return events, outcomes


def _combine(results: Sequence[Result]) -> tuple[str, Result]:
    """One recipient may expand to several targets: any transient failure means retry."""
    if not results:
        return FAILED, Result(status=Status.FAILED, enhanced="5.1.1", detail="no destination")
    for status, state in ((Status.DEFERRED, DEFERRED), (Status.DELIVERED, DELIVERED)):
        for result in results:
            if result.status is status:
                return state, result
    return FAILED, results[0]


def _events(
    plan: _Plan, state: str, result: Result, attempts: int, next_attempt: float, detail: str
) -> list[OpsEvent]:
    entry, address = plan.entry, plan.recipient.address
    events: list[OpsEvent] = []
    for target, verdict in plan.verdicts:
        if verdict.status is Status.DELIVERED:
            events.append(
                Delivered(
                    queue_id=entry.queue_id,
                    recipient=address,
                    mailbox=target,
                    status=verdict.enhanced,
                    detail=verdict.detail,
                )
            )
    if state == DEFERRED:
        events.append(
            Deferred(
                queue_id=entry.queue_id,
                recipient=address,
                status=result.enhanced,
                detail=detail,
                attempts=attempts,
                next_attempt=next_attempt,
            )
        )
    elif state == FAILED:
        events.append(
            DeliveryFailed(
                queue_id=entry.queue_id,
                recipient=address,
                status=result.enhanced,
                detail=detail,
                reverse_path=entry.envelope.reverse_path,
            )
        )
    return events


def _removed(entry: QueueEntry, outcomes: Sequence[Outcome]) -> MessageRemoved:
    final = {r.position: r.state for r in entry.recipients}
    final.update({o.position: o.state for o in outcomes if o.queue_id == entry.queue_id})
    return MessageRemoved(
        queue_id=entry.queue_id,
        delivered=sum(state == DELIVERED for state in final.values()),
        failed=sum(state == FAILED for state in final.values()),
    )
