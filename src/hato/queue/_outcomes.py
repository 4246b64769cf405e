"""From what the agents said to what the queue records, logs and reports (pure functions).

One spool recipient may have expanded into several targets (an alias): any transient
failure among them means the recipient is retried (the delivered targets are not
repeated: agents are idempotent); it is delivered when no target was deferred and at
least one was delivered; otherwise it failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..config import DsnSettings
from ..delivery import MaildirJob, Reason, Result, Status
from ..dsn import Action, should_report, wants_report
from ..events import Deferred, Delivered, DeliveryFailed, MessageRemoved, OpsEvent
from ..spool import DEFERRED, DELIVERED, FAILED, Outcome, QueueEntry, RecipientState
from ._retry import RetryPolicy

__all__ = ["Notice", "Plan", "Verdict", "conclude", "removed_event"]


@dataclass(slots=True, kw_only=True)
class Verdict:
    target: str
    result: Result
    remote: bool = False
    remote_mta: str | None = None
    diagnostic: str | None = None
    dsn_forwarded: bool = False
    command: str | None = None  # the command line the diagnostic answered


@dataclass(slots=True)
class Plan:
    """One recipient's attempt: the jobs its address expanded to, then their verdicts."""

    entry: QueueEntry
    recipient: RecipientState
    jobs: list[MaildirJob] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    # Local mailboxes delivered by the LMTP server of ``accounts.delivery``, not Maildir.
    lmtp: list[str] = field(default_factory=list)
    # The remote addresses are an alias's: the message is forwarded, not relayed for the
    # sender, so its envelope sender is rewritten (SRS) when a rewriter is configured.
    forwarded: bool = False
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass(slots=True)
class Notice:
    """A delivery report owed to a sender: one per message and action per attempt."""

    entry: QueueEntry
    action: Action
    recipients: list[tuple[RecipientState, Outcome, Verdict]] = field(default_factory=list)


def combine(verdicts: Sequence[Verdict]) -> tuple[str, Verdict]:
    if not verdicts:
        failed = Result.failed("5.1.1", "the address leads nowhere")
        return FAILED, Verdict(target="", result=failed)
    for status, state in ((Status.DEFERRED, DEFERRED), (Status.DELIVERED, DELIVERED)):
        for verdict in verdicts:
            if verdict.result.status is status:
                return state, verdict
    return FAILED, verdicts[0]


def conclude(
    plans: Sequence[Plan],
    *,
    now: float,
    retry: RetryPolicy,
    dsn: DsnSettings,
    rng: Callable[[], float],
) -> tuple[list[Outcome], list[OpsEvent], list[Notice]]:
    outcomes: list[Outcome] = []
    events: list[OpsEvent] = []
    notices: dict[tuple[str, Action], Notice] = {}
    for plan in plans:
        outcome, verdict = _outcome(plan, now=now, retry=retry, dsn=dsn, rng=rng)
        outcomes.append(outcome)
        events += _events(plan, outcome, verdict)
        action = _report_action(plan, outcome, dsn=dsn)
        if action is not None:
            key = (plan.entry.queue_id, action)
            notices.setdefault(key, Notice(entry=plan.entry, action=action)).recipients.append(
                (plan.recipient, outcome, verdict)
            )
    return outcomes, events, list(notices.values())


def _outcome(
    plan: Plan, *, now: float, retry: RetryPolicy, dsn: DsnSettings, rng: Callable[[], float]
) -> tuple[Outcome, Verdict]:
    state, verdict = combine(plan.verdicts)
    recipient, envelope = plan.recipient, plan.entry.envelope
    attempts = recipient.attempts + 1
    next_attempt = 0.0
    detail, status = verdict.result.detail, verdict.result.enhanced
    if state == DEFERRED:
        if retry.expired(envelope.arrival, now):
            state, status = FAILED, "4.4.7"
            days = retry.lifetime / 86400
            detail = f"message expired after {days:g} days in the queue; last: {detail}"
            # The class stays the last attempt's: why it never got there.
            expired = Result.failed("4.4.7", detail, verdict.result.reason or Reason.OTHER)
            verdict = dataclasses.replace(verdict, result=expired)
        else:
            next_attempt = now + retry.delay(attempts, rng)
    outcome = Outcome(
        queue_id=plan.entry.queue_id,
        position=recipient.position,
        state=state,
        attempts=attempts,
        next_attempt=next_attempt,
        last_attempt=now,
        status=status,
        detail=detail,
        warned=recipient.warned or _delay_due(plan, state, now, dsn),
        remote_mta=verdict.remote_mta,
        reason=None if state == DELIVERED else _reason(verdict),
        destination=(verdict.target or recipient.address).rpartition("@")[2].lower() or None,
    )
    return outcome, verdict


def _reason(verdict: Verdict) -> str:
    return str(verdict.result.reason or Reason.OTHER)


def _delay_due(plan: Plan, state: str, now: float, dsn: DsnSettings) -> bool:
    if state != DEFERRED or plan.recipient.warned or dsn.delay_warning <= 0:
        return False
    if now - plan.entry.envelope.arrival < dsn.delay_warning:
        return False
    return wants_report(
        plan.recipient.notify,
        Action.DELAYED,
        delay_without_notify=dsn.delay_warning_without_notify,
    )


def _report_action(plan: Plan, outcome: Outcome, *, dsn: DsnSettings) -> Action | None:
    """Which report this recipient's outcome owes its sender, if any (RFC 3461 4.1)."""
    if outcome.state == FAILED:
        action = Action.FAILED
    elif outcome.state == DEFERRED:
        if not outcome.warned or plan.recipient.warned:
            return None  # no warning due yet, or one went out already
        action = Action.DELAYED
    elif any(v.remote and not v.dsn_forwarded for v in plan.verdicts):
        action = Action.RELAYED  # the next hop cannot report delivery itself
    elif any(v.remote for v in plan.verdicts):
        return None  # NOTIFY went on with the message; the next hop reports
    else:
        action = Action.DELIVERED
    # A report to <> would be a bounce of a bounce: should_report says no to it.
    owed = should_report(
        plan.entry.envelope.reverse_path,
        plan.recipient.notify,
        action,
        delay_without_notify=dsn.delay_warning_without_notify,
    )
    return action if owed else None


def _events(plan: Plan, outcome: Outcome, verdict: Verdict) -> list[OpsEvent]:
    entry, address = plan.entry, plan.recipient.address
    events: list[OpsEvent] = [
        Delivered(
            queue_id=entry.queue_id,
            recipient=address,
            mailbox=v.target,
            status=v.result.enhanced,
            detail=v.result.detail,
            remote=v.remote,
        )
        for v in plan.verdicts
        if v.result.status is Status.DELIVERED
    ]
    # Name the address that deferred or failed (an alias's target), and the queued one.
    target = verdict.target or address
    original = None if target == address else address
    if outcome.state == DEFERRED:
        events.append(
            Deferred(
                queue_id=entry.queue_id,
                recipient=target,
                original=original,
                status=outcome.status,
                detail=outcome.detail,
                attempts=outcome.attempts,
                next_attempt=outcome.next_attempt,
                reason_class=outcome.reason,
                remote=verdict.remote,
            )
        )
    elif outcome.state == FAILED:
        events.append(
            DeliveryFailed(
                queue_id=entry.queue_id,
                recipient=target,
                original=original,
                status=outcome.status,
                detail=outcome.detail,
                reverse_path=entry.envelope.reverse_path,
                reason_class=outcome.reason,
                remote=verdict.remote,
            )
        )
    return events


def removed_event(entry: QueueEntry, outcomes: Sequence[Outcome]) -> MessageRemoved:
    final = {r.position: r.state for r in entry.recipients}
    final.update({o.position: o.state for o in outcomes if o.queue_id == entry.queue_id})
    return MessageRemoved(
        queue_id=entry.queue_id,
        delivered=sum(state == DELIVERED for state in final.values()),
        failed=sum(state == FAILED for state in final.values()),
    )
