"""The ordered list of filters, and how each stage runs them."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..smtp import reply
from ..spool import Envelope, Origin
from ._edits import apply_edits
from ._filter import (
    ACCEPT,
    ENVELOPE_STAGES,
    Action,
    HeaderEdit,
    Message,
    MessageFilter,
    Stage,
    Verdict,
)

__all__ = ["LISTENERS", "ON_ERROR", "Pipeline", "Step"]

ON_ERROR = ("tempfail", "accept")
LISTENERS = ("smtp", "submission", "implicit_tls")
R_FILTER_TEMPFAIL = reply(451, "4.7.1", "Error: message check failed, try again later")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """A filter in its place: which ways in it applies to, its time limit, and what a
    failure or a timeout means (``tempfail``: 451 to the sender; ``accept``: the message
    goes on, with a warning event)."""

    filter: MessageFilter
    origins: frozenset[Origin] = frozenset(Origin)
    timeout: float = 30.0
    on_error: str = "tempfail"
    # The SMTP listeners whose sessions the envelope stages run in (a filter with any).
    listeners: frozenset[str] = field(default=frozenset(LISTENERS))

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}: {self.on_error!r}")
        if self.timeout <= 0:
            raise ValueError("a filter's timeout must be positive")


# (filter name, verdict, seconds) for each verdict that is not a plain accept.
Recorder = Callable[[str, Verdict, float], None]
# The message as the next filter sees it: fields added above, and the whole message after
# an earlier filter's edits (None: as stored).
MessageAt = Callable[[bytes, bytes | None], Message]


@dataclass(slots=True)
class _Changes:
    """What the end filters changed so far, beyond the first refusal."""

    added: bytes = b""
    content: bytes | None = None  # the message after edits (``added`` goes above it)
    drop: set[int] = field(default_factory=set)
    sender: str | None = None
    add_recipients: list[str] = field(default_factory=list)
    delete_recipients: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)


class Pipeline:
    """The filters in order. Each origin's steps per stage are worked out once, here, so a
    stage no filter takes part in is never entered."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self.steps = tuple(steps)
        self._by_stage: dict[tuple[Origin, Stage], tuple[Step, ...]] = {
            (origin, stage): tuple(
                s for s in self.steps if origin in s.origins and stage in s.filter.stages
            )
            for origin in Origin
            for stage in (Stage.OPENING, Stage.HEADER, Stage.END)
        }

    def names(self, origin: Origin) -> list[str]:
        return [s.filter.name for s in self.steps if origin in s.origins]

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        steps = self._by_stage[origin, Stage.OPENING]
        return b"".join(s.filter.opening(queue_id, envelope, origin) for s in steps)

    def header(self, message: Message) -> bytes:
        steps = self._by_stage[message.origin, Stage.HEADER]
        return b"".join(s.filter.header(message) for s in steps)

    def envelope_steps(self, listener: str) -> tuple[Step, ...]:
        """The steps that take part in an SMTP session on ``listener`` before the data."""
        return tuple(
            s for s in self.steps if s.filter.stages & ENVELOPE_STAGES and listener in s.listeners
        )

    async def end(self, message_at: MessageAt, record: Recorder) -> Verdict:
        """Run the end filters in order: the first refusal or discard wins; the fields they
        add are collected (each filter sees those of the filters before it), and so are
        their edits (applied at once: the next filter sees the edited message) and envelope
        changes; a quarantine mark holds for the rest of the run."""
        steps = self._by_stage[message_at(b"", None).origin, Stage.END]
        if not steps:
            return ACCEPT
        changes = _Changes()
        for step in steps:
            started = time.monotonic()
            verdict = await self._run(step, message_at(changes.added, changes.content))
            elapsed = time.monotonic() - started
            if verdict.action is not Action.ACCEPT or verdict.reason:
                record(step.filter.name, verdict, elapsed)
            if verdict.action in (Action.REJECT, Action.DEFER, Action.DISCARD):
                return verdict
            # Each filter's fields go above the ones before it, as each hop's would.
            changes.added = verdict.prepend + changes.added
            if changes.content is None:
                changes.drop.update(verdict.drop)
            if verdict.rewrites:
                await self._rewrite(changes, message_at, verdict.edits, verdict.body)
            if verdict.sender is not None:
                changes.sender = verdict.sender
            changes.add_recipients += verdict.add_recipients
            changes.delete_recipients += verdict.delete_recipients
            if verdict.action is Action.QUARANTINE:
                changes.quarantine.append(f"{step.filter.name}: {verdict.reason}")
        return _final(changes)

    @staticmethod
    async def _rewrite(
        changes: _Changes,
        message_at: MessageAt,
        edits: tuple[HeaderEdit, ...],
        body: bytes | None,
    ) -> None:
        view = message_at(changes.added, changes.content)
        drop = tuple(sorted(changes.drop))

        def rewritten() -> bytes:
            if changes.content is not None:
                whole = changes.added + changes.content
            else:
                whole = view.read_without(drop)  # the fields added so far included
            return apply_edits(whole, edits, body)

        # The message may be a file of many megabytes: read and rewritten in a thread.
        changes.content = await asyncio.to_thread(rewritten)
        changes.added, changes.drop = b"", set()

    async def _run(self, step: Step, message: Message) -> Verdict:
        try:
            async with asyncio.timeout(step.timeout):  # not wait_for: see queue._manager
                return await step.filter.end(message)
        except Exception as error:  # a filter's failure must never lose or stall mail
            what = "timed out" if isinstance(error, TimeoutError) else f"failed: {error!r}"
            if step.on_error == "accept":
                return Verdict.accept(reason=f"{what}; accepted unchecked")
            return Verdict.defer(R_FILTER_TEMPFAIL, f"{what}; sender told to try again")


def _final(changes: _Changes) -> Verdict:
    dropped = tuple(sorted(changes.drop))
    verdict = Verdict.quarantine("; ".join(changes.quarantine)) if changes.quarantine else ACCEPT
    return dataclasses.replace(
        verdict,
        prepend=changes.added,
        drop=dropped,
        content=changes.content,
        sender=changes.sender,
        add_recipients=tuple(changes.add_recipients),
        delete_recipients=tuple(changes.delete_recipients),
    )
