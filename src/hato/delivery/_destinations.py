"""Where deferred mail is stuck, per destination domain, and why (a pure summary).

``destinations(entries)`` reads what the queue state keeps for each recipient (its last
outcome, the class of it, the domain that attempt went to) and answers one
``Destination`` per domain with deferred mail: how many recipients and messages, since
when, the last reply and the reason in plain words with a next step. ``hato queue
destinations`` prints it; the console and the metrics read the same function.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hato.delivery._classify import EXPLANATIONS, Reason
from hato.spool import DEFERRED, QueueEntry, RecipientState

__all__ = ["Destination", "destinations", "reason_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    domain: str
    recipients: int  # deferred recipients for this domain
    messages: int  # messages they belong to
    held: int  # of those messages, how many are on hold
    oldest: float  # arrival time of the oldest message waiting
    last_attempt: float  # when the latest attempt was
    last_status: str  # its RFC 3463 code
    last_reply: str  # what it said (the next hop's reply, or the local failure)
    remote_mta: str | None  # the server that gave it, if one did
    reason: Reason  # the class of the latest attempt
    reasons: dict[str, int]  # deferred recipients per class, most first

    @property
    def summary(self) -> str:
        return EXPLANATIONS[self.reason].summary

    @property
    def next_step(self) -> str:
        return EXPLANATIONS[self.reason].next_step

    def line(self) -> str:
        """One line: "outlook.com: 143 deferred since 09:12, 4.7.0: your address is listed"."""
        moment = time.localtime(self.oldest)
        same_day = time.localtime()[:3] == moment[:3]
        since = time.strftime("%H:%M" if same_day else "%b %d %H:%M", moment)
        return (
            f"{self.domain}: {self.recipients} deferred since {since},"
            f" {self.last_status}: {self.summary}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "recipients": self.recipients,
            "messages": self.messages,
            "held": self.held,
            "oldest": self.oldest,
            "last_attempt": self.last_attempt,
            "last_status": self.last_status,
            "last_reply": self.last_reply,
            "remote_mta": self.remote_mta,
            "reason": str(self.reason),
            "reasons": self.reasons,
            "summary": self.summary,
            "meaning": EXPLANATIONS[self.reason].meaning,
            "next_step": self.next_step,
        }


def reason_of(recipient: RecipientState) -> Reason:
    """A recipient's stored class; OTHER when none was recorded (an older queue)."""
    try:
        return Reason(recipient.reason or Reason.OTHER)
    except ValueError:
        return Reason.OTHER


def destinations(entries: Iterable[QueueEntry]) -> list[Destination]:
    """Every domain with deferred mail, the most recipients first (then by name)."""
    groups: dict[str, list[tuple[QueueEntry, RecipientState]]] = {}
    for entry in entries:
        for recipient in entry.recipients:
            if recipient.state != DEFERRED:
                continue
            domain = recipient.destination or recipient.address.rpartition("@")[2].lower()
            groups.setdefault(domain, []).append((entry, recipient))
    found = [_summary(domain, members) for domain, members in groups.items()]
    return sorted(found, key=lambda d: (-d.recipients, d.domain))


def _summary(domain: str, members: list[tuple[QueueEntry, RecipientState]]) -> Destination:
    _, latest = max(members, key=lambda pair: pair[1].last_attempt or 0.0)
    counts: dict[str, int] = {}
    for _, recipient in members:
        key = str(reason_of(recipient))
        counts[key] = counts.get(key, 0) + 1
    messages = {entry.queue_id: entry for entry, _ in members}
    return Destination(
        domain=domain,
        recipients=len(members),
        messages=len(messages),
        held=sum(entry.held for entry in messages.values()),
        oldest=min(entry.envelope.arrival for entry in messages.values()),
        last_attempt=latest.last_attempt or 0.0,
        last_status=latest.status or "",
        last_reply=latest.detail or "",
        remote_mta=latest.remote_mta,
        reason=reason_of(latest),
        reasons=dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
    )
