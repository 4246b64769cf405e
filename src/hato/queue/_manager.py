"""The queue manager: picks up queued messages, delivers them, records every outcome.

Promises:
- Every message in the spool is eventually delivered, failed or expired: the schedule is
  rebuilt from the spool at start, so nothing queued before a restart is forgotten.
- An outcome is recorded durably (``QueueState.record``) only after the agent returned,
  i.e. after the mailbox file is durable or the next hop said 250; a crash in between is
  healed by the Maildir agent's idempotent file names (messages recovered at start are
  delivered with ``recheck``). Remotely, a crash there may send a message twice (as
  every MTA may: RFC 5321 6.1), never lose it.
- Reports a sender is owed are queued through the intake before the outcomes are
  recorded, and a message leaves the queue in the transaction that records its last one.
- Local deliveries go in batches through one worker; remote ones run concurrently, at most
  ``concurrency`` at once and ``per_destination`` per domain, so a slow or dead
  destination never holds up the rest of the queue.
- Held messages are never attempted; ``hato queue`` changes made by another process are
  noticed within ``ADMIN_POLL`` seconds.
- Mail for local mailboxes only, with no report owed, may be delivered while its client
  waits (``deliver_in_data``): the server answers 250 once the mailbox copies are durable
  and the message never enters the queue. Copies of many sessions share one sync, as a
  batch of the local worker does. When anything stands in the way, the message is queued
  as usual, and the copies already made are found again by name, never stored twice.
- With an LMTP server for local mailboxes (``mailbox_lmtp``, from ``accounts.delivery``),
  mailboxes are handed to it as remote targets are to the remote agent (concurrently, per
  domain), and never delivered in the DATA phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from ..config import DsnSettings
from ..delivery import (
    MaildirAgent,
    MaildirJob,
    RemoteAgent,
    RemoteJob,
    RemoteTarget,
    Result,
    Status,
)
from ..events import Delivered, EventLog, InternalError, MessageRemoved, ReportQueued
from ..policy import RelayPolicy
from ..routing import LocalRouter, Mailbox
from ..spool import (
    Envelope,
    MessageSource,
    QueueEntry,
    QueueState,
    RecipientState,
    SpoolError,
)
from ._outcomes import Notice, Plan, Verdict, conclude, removed_event
from ._reports import render_notice
from ._retry import RetryPolicy

__all__ = ["ADMIN_POLL", "BATCH", "LOCAL_WORKERS", "QueueManager", "Submit"]

# Most messages handed to one local batch: their mailbox files share one sync.
BATCH = 64
# Batches of local (Maildir) deliveries in progress at once.
LOCAL_WORKERS = 1
# How often another process's hold/release/flush/delete is looked for.
ADMIN_POLL = 1.0

# How a report enters the queue: the same intake as SMTP (durable, then queued).
Submit = Callable[[Envelope, bytes], Awaitable[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Setup:
    hostname: str
    dsn: DsnSettings
    trusted: RelayPolicy
    concurrency: int
    per_destination: int


class QueueManager:
    def __init__(
        self,
        *,
        state: QueueState,
        router: LocalRouter,
        maildir: MaildirAgent,
        remote: RemoteAgent,
        submit: Submit,
        retry: RetryPolicy,
        log: EventLog,
        hostname: str,
        dsn: DsnSettings | None = None,
        trusted_networks: Iterable[str] = (),
        concurrency: int = 8,
        per_destination: int = 4,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        rewrite_forwarded_sender: Callable[[str], str] | None = None,
        mailbox_lmtp: RemoteAgent | None = None,
    ) -> None:
        self.state = state
        self.mailbox_lmtp = mailbox_lmtp
        # SRS: the envelope sender of mail an alias forwards to a remote address, as the
        # next hop sees it (the stored envelope keeps the original, for reports).
        self.rewrite_forwarded_sender = rewrite_forwarded_sender
        self.router = router
        self.maildir = maildir
        self.remote = remote
        self.submit = submit
        self.retry = retry
        self.log = log
        self.clock = clock
        self.rng = rng
        self.setup = _Setup(
            hostname=hostname,
            dsn=dsn or DsnSettings(),
            trusted=RelayPolicy(trusted_networks),
            concurrency=concurrency,
            per_destination=per_destination,
        )
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}
        self._inflight: set[str] = set()
        self._recheck: set[str] = set()
        self._wakeup = asyncio.Event()
        # Mailbox files are made durable per batch with one sync of their file system, so
        # parallel local batches would only compete for that sync: one worker, growing
        # batches (group commit again).
        self._local = asyncio.Semaphore(LOCAL_WORKERS)
        self._remote = asyncio.Semaphore(concurrency)
        self._destinations: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(per_destination)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._generation = -1
        # deliver_in_data: the jobs waiting for the next shared sync, and the task syncing.
        self._in_data: list[tuple[list[MaildirJob], asyncio.Future[list[Result] | None]]] = []
        self._in_data_task: asyncio.Task[None] | None = None

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
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.remote.close()
        if self.mailbox_lmtp is not None:
            await self.mailbox_lmtp.close()

    def notify(self, queue_id: str) -> None:
        """A message was just queued: deliver it now."""
        self._schedule(queue_id, 0.0)

    @property
    def idle(self) -> bool:
        now = self.clock()
        return not self._inflight and not any(due <= now for due in self._due.values())

    # -- delivery while the client waits -------------------------------------------------

    async def deliver_in_data(
        self,
        queue_id: str,
        envelope: Envelope,
        source: MessageSource,
        announce: Callable[[], None],
    ) -> bool:
        """Deliver a just-received message into its local mailboxes before it is queued.

        True: every copy is durable; ``announce`` was called (the server logs the message
        as queued) and the delivery events follow, so the log reads as for any message.
        False: the message is not for local mailboxes only, a report is owed, or a copy
        could not be made; queue it (the queue's attempt finds copies made here by name).
        """
        jobs = (
            [] if self.mailbox_lmtp is not None else self._in_data_jobs(queue_id, envelope, source)
        )
        if not jobs:
            return False
        future: asyncio.Future[list[Result] | None] = asyncio.get_running_loop().create_future()
        self._in_data.append((jobs, future))
        if self._in_data_task is None:
            self._in_data_task = asyncio.ensure_future(self._in_data_batches())
        results = await future
        if results is None or any(r.status is not Status.DELIVERED for r in results):
            return False
        announce()
        for job, result in zip(jobs, results, strict=True):
            self.log.emit(
                Delivered(
                    queue_id=queue_id,
                    recipient=envelope.recipients[job.recipient_index].address,
                    mailbox=job.delivered_to,
                    status=result.enhanced,
                    detail=result.detail,
                )
            )
        self.log.emit(
            MessageRemoved(queue_id=queue_id, delivered=len(envelope.recipients), failed=0)
        )
        return True

    def _in_data_jobs(
        self, queue_id: str, envelope: Envelope, source: MessageSource
    ) -> list[MaildirJob]:
        """The mailbox jobs of a message that may be delivered in the DATA phase; [] if not."""
        jobs: list[MaildirJob] = []
        for position, recipient in enumerate(envelope.recipients):
            if "SUCCESS" in recipient.notify:
                return []  # a "delivered" report is owed: the queue writes reports
            expansion = self.router.expand(recipient.address)
            if expansion.failures or expansion.remote or not expansion.mailboxes:
                return []
            jobs.extend(
                _mailbox_jobs(
                    queue_id,
                    position,
                    envelope,
                    expansion.mailboxes,
                    source,
                )
            )
        return jobs

    async def _in_data_batches(self) -> None:
        """One MaildirAgent batch (one sync) for every session waiting, until none waits."""
        try:
            while self._in_data:
                waiting, self._in_data = self._in_data, []
                jobs = [job for batch, _ in waiting for job in batch]
                try:
                    results: list[Result] | None = await asyncio.to_thread(
                        self.maildir.deliver, jobs
                    )
                except Exception as error:  # the queue gets these messages instead
                    where = "delivery in the DATA phase"
                    self.log.emit(InternalError(where=where, error=repr(error)))
                    results = None
                start = 0
                for batch, future in waiting:
                    part = None if results is None else results[start : start + len(batch)]
                    start += len(batch)
                    if not future.done():
                        future.set_result(part)
        finally:
            self._in_data_task = None

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
            elif not entry.held and entry.queue_id not in self._inflight:
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
                # asyncio.timeout, not wait_for: in Python 3.11 wait_for returns normally
                # when it is cancelled just as the event is set (CPython gh-86296), and this
                # loop would then never see stop()'s cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wakeup.wait()
                continue
            await self._local.acquire()
            self._inflight.update(batch)
            self._spawn(self._attempt(batch))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self, queue_ids: Sequence[str]) -> None:
        """Work on these messages is over (their next attempts are already scheduled)."""
        self._inflight.difference_update(queue_ids)
        self._recheck.difference_update(queue_ids)
        self._wakeup.set()

    # -- one batch ---------------------------------------------------------------------

    async def _attempt(self, batch: list[str]) -> None:
        remote_later: set[str] = set()
        try:
            plans = await asyncio.to_thread(self._plan_batch, batch)
            jobs = [job for plan in plans for job in plan.jobs]
            if jobs:
                results = await asyncio.to_thread(self.maildir.deliver, jobs)
                _attach_local(plans, results)
            by_message: dict[str, list[Plan]] = defaultdict(list)
            for plan in plans:
                by_message[plan.entry.queue_id].append(plan)
            local = [p for p in plans if not any(_later(q) for q in by_message[p.entry.queue_id])]
            await self._finish(local)
            for queue_id, message_plans in by_message.items():
                if any(_later(plan) for plan in message_plans):
                    remote_later.add(queue_id)
                    self._spawn(self._attempt_remote(message_plans))
        except Exception as error:  # keep the queue running; try the batch again later
            self.log.emit(InternalError(where="queue", error=repr(error)))
            for queue_id in batch:
                self._schedule(queue_id, self.clock() + self.retry.initial)
        finally:
            self._local.release()
            self._release([q for q in batch if q not in remote_later])

    def _plan_batch(self, batch: list[str]) -> list[Plan]:
        plans: list[Plan] = []
        for queue_id in batch:
            entry = self.state.entry(queue_id)
            if entry is None or entry.held:
                continue  # deleted or held meanwhile
            recheck = queue_id in self._recheck
            for recipient in entry.pending:
                plans.append(self._plan(entry, recipient, recheck or recipient.attempts > 0))
        return plans

    def _plan(self, entry: QueueEntry, recipient: RecipientState, recheck: bool) -> Plan:
        plan = Plan(entry, recipient)
        expansion = self.router.expand(recipient.address)
        for failure in expansion.failures:
            result = Result.failed(failure.status, failure.reason)
            plan.verdicts.append(Verdict(target=failure.address, result=result))
        plan.remote.extend(expansion.remote)
        if expansion.remote:
            domain = recipient.address.rpartition("@")[2]
            plan.forwarded = self.router.is_local_domain(domain)
        if self.mailbox_lmtp is not None:
            plan.lmtp.extend(mailbox.address for mailbox in expansion.mailboxes)
            return plan
        plan.jobs.extend(
            _mailbox_jobs(
                entry.queue_id,
                recipient.position,
                entry.envelope,
                expansion.mailboxes,
                self.state.source(entry.queue_id),
                recheck=recheck,
            )
        )
        return plan

    async def _attempt_remote(self, plans: list[Plan]) -> None:
        entry = plans[0].entry
        try:
            async with self._remote:
                groups: dict[tuple[str, bool, bool], list[tuple[Plan, RemoteTarget]]]
                groups = defaultdict(list)
                for plan in plans:
                    for lmtp, addresses in ((False, plan.remote), (True, plan.lmtp)):
                        for address in addresses:
                            target = RemoteTarget(
                                position=plan.recipient.position,
                                address=address,
                                notify=plan.recipient.notify,
                                orcpt=plan.recipient.orcpt,
                            )
                            domain = address.rpartition("@")[2].lower()
                            key = (domain, plan.forwarded and not lmtp, lmtp)
                            groups[key].append((plan, target))
                await asyncio.gather(
                    *(
                        self._deliver_domain(entry, domain, pairs, forwarded=forwarded, lmtp=lmtp)
                        for (domain, forwarded, lmtp), pairs in groups.items()
                    )
                )
            await self._finish(plans)
        except Exception as error:
            self.log.emit(InternalError(where="queue", error=repr(error)))
            self._schedule(entry.queue_id, self.clock() + self.retry.initial)
        finally:
            self._release([entry.queue_id])

    async def _deliver_domain(
        self,
        entry: QueueEntry,
        domain: str,
        pairs: list[tuple[Plan, RemoteTarget]],
        *,
        forwarded: bool = False,
        lmtp: bool = False,
    ) -> None:
        envelope = entry.envelope
        if forwarded:
            envelope = self._forwarded_envelope(envelope)
        job = RemoteJob(
            queue_id=entry.queue_id,
            domain=domain,
            envelope=envelope,
            targets=tuple(target for _, target in pairs),
            source=self.state.source(entry.queue_id),
            size=entry.size,
        )
        agent = self.mailbox_lmtp if lmtp and self.mailbox_lmtp is not None else self.remote
        async with self._destinations[domain]:
            results = await agent.deliver(job)
        for (plan, _), outcome in zip(pairs, results, strict=True):
            plan.verdicts.append(
                Verdict(
                    target=outcome.target.address,
                    result=outcome.result,
                    remote=not lmtp,
                    remote_mta=outcome.remote_mta,
                    diagnostic=outcome.diagnostic,
                    dsn_forwarded=outcome.dsn_forwarded,
                    command=outcome.command,
                )
            )

    def _forwarded_envelope(self, envelope: Envelope) -> Envelope:
        """The envelope as a forwarder sends it: a sender outside our domains rewritten
        (SRS), so the next hop's SPF check sees our address, not one we may not send for."""
        rewrite, sender = self.rewrite_forwarded_sender, envelope.reverse_path
        if rewrite is None or not sender or "@" not in sender:
            return envelope
        if self.router.is_local_domain(sender.rpartition("@")[2]):
            return envelope
        try:
            rewritten = rewrite(sender)
        except ValueError:
            return envelope  # an address SRS cannot hold: sent as it is
        return dataclasses.replace(envelope, reverse_path=rewritten)

    # -- concluding: reports, records, events, the next attempt ------------------------

    async def _finish(self, plans: Sequence[Plan]) -> None:
        if not plans:
            return
        now = self.clock()
        setup = self.setup
        outcomes, events, notices = conclude(
            plans, now=now, retry=self.retry, dsn=setup.dsn, rng=self.rng
        )
        for notice in notices:
            await self._send_report(notice, now)
        removed = await asyncio.to_thread(self.state.record, outcomes)
        entries = {plan.entry.queue_id: plan.entry for plan in plans}
        events += [removed_event(entries[queue_id], outcomes) for queue_id in removed]
        for event in events:
            self.log.emit(event)
        for outcome in outcomes:
            if outcome.queue_id not in removed and outcome.next_attempt:
                self._schedule(outcome.queue_id, outcome.next_attempt)

    async def _send_report(self, notice: Notice, now: float) -> None:
        envelope, data = await asyncio.to_thread(
            render_notice,
            notice,
            hostname=self.setup.hostname,
            source=self.state.source(notice.entry.queue_id),
            dsn=self.setup.dsn,
            retry=self.retry,
            now=now,
            trusted=self.setup.trusted,
        )
        report_id = await self.submit(envelope, data)
        self.log.emit(
            ReportQueued(
                queue_id=notice.entry.queue_id,
                report_id=report_id,
                action=str(notice.action),
                recipients=tuple(recipient.address for recipient, _, _ in notice.recipients),
                sender=notice.entry.envelope.reverse_path,
            )
        )


def _mailbox_jobs(
    queue_id: str,
    position: int,
    envelope: Envelope,
    mailboxes: Sequence[Mailbox],
    source: MessageSource,
    *,
    recheck: bool = False,
) -> list[MaildirJob]:
    """One Maildir job per mailbox a recipient leads to; the same for the queue's attempts
    and for delivery while the client waits, so both name the copies alike."""
    return [
        MaildirJob(
            queue_id=queue_id,
            recipient_index=position,
            domain=mailbox.domain,
            local_part=mailbox.local_part,
            delivered_to=mailbox.address,
            reverse_path=envelope.reverse_path,
            source=source,
            arrival=envelope.arrival,
            recheck=recheck,
            folder=envelope.folder,
        )
        for mailbox in mailboxes
    ]


def _later(plan: Plan) -> bool:
    """Whether the plan has deliveries beyond the local batch (remote or LMTP)."""
    return bool(plan.remote or plan.lmtp)


def _attach_local(plans: Sequence[Plan], results: Sequence[Result]) -> None:
    found = iter(results)
    for plan in plans:
        for job in plan.jobs:
            plan.verdicts.append(Verdict(target=job.delivered_to, result=next(found)))
