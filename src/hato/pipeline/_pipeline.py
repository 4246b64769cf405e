"""The ordered list of filters, and how each stage runs them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..smtp import reply
from ..spool import Envelope, Origin
from ._filter import ACCEPT, Action, Message, MessageFilter, Stage, Verdict

__all__ = ["ON_ERROR", "Pipeline", "Step"]

ON_ERROR = ("tempfail", "accept")
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

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}: {self.on_error!r}")
        if self.timeout <= 0:
            raise ValueError("a filter's timeout must be positive")


# (filter name, verdict, seconds) for each verdict that is not a plain accept.
Recorder = Callable[[str, Verdict, float], None]


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

    async def end(self, message_at: Callable[[bytes], Message], record: Recorder) -> Verdict:
        """Run the end filters in order: the first refusal or discard wins; the fields they
        add are collected (each filter sees those of the filters before it); a quarantine
        mark holds for the rest of the run."""
        steps = self._by_stage[message_at(b"").origin, Stage.END]
        if not steps:
            return ACCEPT
        added, reasons, quarantine = b"", [], False
        drop: set[int] = set()
        for step in steps:
            started = time.monotonic()
            verdict = await self._run(step, message_at(added))
            elapsed = time.monotonic() - started
            if verdict.action is not Action.ACCEPT or verdict.reason:
                record(step.filter.name, verdict, elapsed)
            if verdict.action in (Action.REJECT, Action.DEFER, Action.DISCARD):
                return verdict
            # Each filter's fields go above the ones before it, as each hop's would.
            added = verdict.prepend + added
            drop.update(verdict.drop)
            if verdict.action is Action.QUARANTINE:
                quarantine = True
                reasons.append(f"{step.filter.name}: {verdict.reason}")
        dropped = tuple(sorted(drop))
        if quarantine:
            return Verdict.quarantine("; ".join(reasons), prepend=added, drop=dropped)
        return Verdict.accept(added, drop=dropped) if added or dropped else ACCEPT

    async def _run(self, step: Step, message: Message) -> Verdict:
        try:
            async with asyncio.timeout(step.timeout):  # not wait_for: see queue._manager
                return await step.filter.end(message)
        except Exception as error:  # a filter's failure must never lose or stall mail
            what = "timed out" if isinstance(error, TimeoutError) else f"failed: {error!r}"
            if step.on_error == "accept":
                return Verdict.accept(reason=f"{what}; accepted unchecked")
            return Verdict.defer(R_FILTER_TEMPFAIL, f"{what}; sender told to try again")
