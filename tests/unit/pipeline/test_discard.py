"""``Action.DISCARD``: accepted (the sender is told so), stored nowhere, later filters skipped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import pytest

from hato.events import EventLog, FilterVerdict, OpsEvent, Queued
from hato.pipeline import ACCEPT, Action, Message, Pipeline, PipelineIntake, Stage, Step, Verdict
from hato.spool import Accepted, Envelope, Origin, Recipient, Spool

BODY = b"Subject: probe\r\nMessage-ID: <p1@example.org>\r\n\r\nbody\r\n"


class Answer:
    name: ClassVar[str] = "answer"
    stages: ClassVar[Stage] = Stage.END

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.calls = 0

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        self.calls += 1
        return self.verdict


@pytest.mark.parametrize("in_data", [False, True], ids=["queued", "delivered-in-data"])
async def test_discarded_message_is_accepted_and_kept_nowhere(
    tmp_path: Path, in_data: bool
) -> None:
    spool = Spool(tmp_path / "data", sync="fsync")
    spool.open()
    seen: list[OpsEvent] = []
    log = EventLog()
    log.subscribe(lambda _ts, event: seen.append(event))
    delivered: list[str] = []

    async def deliver(queue_id: str, *_: object) -> bool:
        delivered.append(queue_id)
        return True

    notified: list[str] = []
    discarding, later = Answer(Verdict.discard("taken by the test address")), Answer(ACCEPT)
    intake = PipelineIntake(
        spool=spool,
        pipeline=Pipeline([Step(filter=discarding), Step(filter=later)]),
        log=log,
        notify=notified.append,
        deliver_in_data=deliver if in_data else None,
    )
    envelope = Envelope(
        reverse_path="a@example.org",
        recipients=(Recipient(address="probe-x@example.net"),),
        session_id="s1",
    )
    try:
        message = intake.open(envelope, Origin.SMTP)
        message.write(BODY)
        outcome = await message.finish()
        assert isinstance(outcome, Accepted)
        assert later.calls == 0  # the discard ends the run
        assert spool.list() == [] and not list((spool.data_dir / "spool" / "msg").glob("*/*"))
        assert notified == [] and delivered == []
        assert not [e for e in seen if isinstance(e, Queued)]
        (event,) = [e for e in seen if isinstance(e, FilterVerdict)]
        assert isinstance(event, FilterVerdict)
        assert (event.action, event.reason) == ("discard", "taken by the test address")
    finally:
        await asyncio.to_thread(spool.close)


def test_discard_verdict_carries_no_reply() -> None:
    verdict = Verdict.discard("why")
    assert verdict.action is Action.DISCARD and verdict.reply is None
