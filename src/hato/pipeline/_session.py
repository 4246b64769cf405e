"""The envelope stages of one SMTP session: each filter that takes part before the data
(a milter) gets a session of its own at connect, and its verdicts at connect, HELO, MAIL
and RCPT are honoured there. The first refusal wins; a filter that fails or passes its
time limit counts as its step's ``on_error``."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from ..events import EventLog, FilterVerdict
from ..spool import Refusal, SessionFacts
from ._filter import Action, FilterSession, SessionFilter, Verdict
from ._pipeline import R_FILTER_TEMPFAIL, Step

__all__ = ["SessionRun"]

# A refusal at connect is a greeting: 554 (then only QUIT) or 421 (RFC 5321 3.1, 4.3.2).
_CONNECT_CODES = {5: 554, 4: 421}


class SessionRun:
    """``spool.SessionStages`` over the pipeline's envelope-stage steps for one session."""

    def __init__(self, steps: Sequence[Step], log: EventLog, session_id: str) -> None:
        self._steps = tuple(steps)
        self._log, self._session_id = log, session_id
        self.sessions: dict[str, FilterSession] = {}

    async def connect(self, facts: SessionFacts) -> Refusal | None:
        for step in self._steps:
            opened = cast(SessionFilter, step.filter).session(facts)
            self.sessions[step.filter.name] = opened
        refusal = await self._each("connect", lambda s: s.connect(facts))
        if refusal is None:
            return None
        # A greeting refusal is 554 or 421, whatever the filter's own code.
        code = _CONNECT_CODES[refusal.reply.code // 100]
        return Refusal(dataclasses.replace(refusal.reply, code=code), refusal.reason)

    async def helo(self, facts: SessionFacts) -> Refusal | None:
        return await self._each("helo", lambda s: s.helo(facts))

    async def mail(self, facts: SessionFacts, sender: str, args: Sequence[str]) -> Refusal | None:
        return await self._each("mail", lambda s: s.mail(facts, sender, args))

    async def rcpt(
        self, facts: SessionFacts, recipient: str, args: Sequence[str]
    ) -> Refusal | None:
        return await self._each("rcpt", lambda s: s.rcpt(facts, recipient, args))

    def reset(self) -> None:
        for session in self.sessions.values():
            session.reset()

    def close(self) -> None:
        sessions, self.sessions = self.sessions, {}
        for session in sessions.values():
            session.close()

    async def _each(
        self, stage: str, call: Callable[[FilterSession], Awaitable[Verdict]]
    ) -> Refusal | None:
        for step in self._steps:
            session = self.sessions.get(step.filter.name)
            if session is None:
                continue
            started = time.monotonic()
            verdict = await self._run(step, call(session))
            if verdict.action in (Action.REJECT, Action.DEFER) or verdict.reason:
                self._record(stage, step.filter.name, verdict, time.monotonic() - started)
            if verdict.action in (Action.REJECT, Action.DEFER):
                assert verdict.reply is not None
                return Refusal(verdict.reply, f"{step.filter.name}: {verdict.reason}")
        return None

    @staticmethod
    async def _run(step: Step, work: Awaitable[Verdict]) -> Verdict:
        try:
            async with asyncio.timeout(step.timeout):
                return await work
        except Exception as error:  # a filter's failure must never stall a session
            what = "timed out" if isinstance(error, TimeoutError) else f"failed: {error!r}"
            if step.on_error == "accept":
                return Verdict.accept(reason=f"{what}; accepted unchecked")
            return Verdict.defer(R_FILTER_TEMPFAIL, f"{what}; sender told to try again")

    def _record(self, stage: str, name: str, verdict: Verdict, elapsed: float) -> None:
        self._log.emit(
            FilterVerdict(
                session=self._session_id,
                queue_id="",
                filter=name,
                action=verdict.action.value,
                reason=f"at {stage}: {verdict.reason}",
                reply=str(verdict.reply) if verdict.reply is not None else "",
                elapsed=round(elapsed, 6),
            )
        )
