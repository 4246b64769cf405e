"""The intake against a real spool on disk: filters' verdicts, fields, durability."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from hato.events import EventLog, FilterVerdict, OpsEvent, Queued
from hato.pipeline import (
    ACCEPT,
    MAX_HEADER_READ,
    Message,
    Pipeline,
    PipelineIntake,
    ReceivedField,
    Stage,
    Step,
    SubmissionFields,
    Verdict,
    parse_header,
)
from hato.smtp import reply
from hato.spool import Accepted, Envelope, Origin, Recipient, Refusal, Spool

BODY = b"Subject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nbody line\r\n"


def envelope(**changes: object) -> Envelope:
    base = Envelope(
        reverse_path="alice@example.org",
        recipients=(Recipient(address="bob@example.net"),),
        client_ip="192.0.2.1",
        helo="client.example.org",
        protocol="ESMTP",
        arrival=1_700_000_000.0,
        session_id="s1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class Events:
    def __init__(self) -> None:
        self.seen: list[OpsEvent] = []
        self.log = EventLog()
        self.log.subscribe(lambda _ts, event: self.seen.append(event))

    def of(self, kind: type[OpsEvent]) -> list[OpsEvent]:
        return [e for e in self.seen if isinstance(e, kind)]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "data", sync="fsync")
    s.open()
    yield s
    s.close()


class Fixed:
    """A filter that answers what it is told, after an optional delay or with an error."""

    name: ClassVar[str] = "fixed"
    stages: ClassVar[Stage] = Stage.END

    def __init__(
        self, verdict: Verdict = ACCEPT, *, delay: float = 0.0, error: bool = False
    ) -> None:
        self.verdict, self.delay, self.error = verdict, delay, error
        self.seen: list[Message] = []
        self.read: list[bytes] = []  # the whole message as each call could read it

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        raise AssertionError("not an opening filter")

    def header(self, message: Message) -> bytes:
        raise AssertionError("not a header filter")

    async def end(self, message: Message) -> Verdict:
        self.seen.append(message)
        self.read.append(message.read_all())
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error:
            raise RuntimeError("filter broke")
        return self.verdict


def intake_with(spool: Spool, events: Events, *steps: Step, deliver_in_data=None) -> PipelineIntake:  # type: ignore[no-untyped-def]
    notified: list[str] = []
    intake = PipelineIntake(
        spool=spool,
        pipeline=Pipeline(steps),
        log=events.log,
        notify=notified.append,
        deliver_in_data=deliver_in_data,
    )
    intake.notified = notified  # type: ignore[attr-defined]
    return intake


async def take(intake: PipelineIntake, data: bytes, origin: Origin = Origin.SMTP, **env: object):  # type: ignore[no-untyped-def]
    message = intake.open(envelope(**env), origin)
    # In odd pieces, so that the header section arrives split.
    for start in range(0, len(data), 7):
        message.write(data[start : start + 7])
    return await message.finish()


def stored(spool: Spool, queue_id: str) -> bytes:
    with spool.open_data(queue_id) as data:
        return data.read()


async def test_accepted_message_is_durable_queued_and_announced(spool: Spool) -> None:
    events = Events()
    intake = intake_with(spool, events)
    outcome = await take(intake, BODY)
    assert isinstance(outcome, Accepted) and not outcome.delivered
    assert stored(spool, outcome.queue_id) == BODY
    assert intake.notified == [outcome.queue_id]  # type: ignore[attr-defined]
    (queued,) = events.of(Queued)
    assert isinstance(queued, Queued)
    assert (queued.queue_id, queued.message_id, queued.session) == (
        outcome.queue_id,
        "<m1@example.org>",
        "s1",
    )
    # Durable: a spool opened afresh on the same directory has it.
    again = Spool.open_readonly(spool.data_dir)
    try:
        assert again.get(outcome.queue_id) is not None
    finally:
        again.close()


async def test_empty_pipeline_calls_no_stage(spool: Spool) -> None:
    pipeline = Pipeline([])
    assert pipeline.opening("ID", envelope(), Origin.SMTP) == b""
    message = Message(
        queue_id="ID", envelope=envelope(), origin=Origin.SMTP, header=parse_header(b""), size=0
    )
    assert pipeline.header(message) == b""
    assert await pipeline.end(lambda _added, _content: message, lambda *_: None) is ACCEPT


@pytest.mark.parametrize(
    ("verdict", "code"),
    [
        (Verdict.reject(reply(550, "5.7.1", "spam"), "looks like spam"), 550),
        (Verdict.defer(reply(451, "4.7.1", "greylisted"), "first time"), 451),
    ],
)
async def test_refusal_keeps_nothing_and_is_recorded(
    spool: Spool, verdict: Verdict, code: int
) -> None:
    events = Events()
    intake = intake_with(spool, events, Step(filter=Fixed(verdict)))
    outcome = await take(intake, BODY)
    assert isinstance(outcome, Refusal) and outcome.reply.code == code
    assert spool.list() == [] and not list((spool.data_dir / "spool" / "msg").glob("*/*"))
    (event,) = events.of(FilterVerdict)
    assert isinstance(event, FilterVerdict)
    assert (event.filter, event.action, event.reason) == (
        "fixed",
        verdict.action.value,
        verdict.reason,
    )
    assert not events.of(Queued)


@pytest.mark.parametrize("size", [1_000, 600_000], ids=["in-memory", "spilled-to-file"])
async def test_added_fields_go_on_top(spool: Spool, size: int) -> None:
    events = Events()
    first = Fixed(Verdict.accept(b"X-First: 1\r\n"))
    second = Fixed(Verdict.accept(b"X-Second: 2\r\n"))
    intake = PipelineIntake(
        spool=spool,
        pipeline=Pipeline([Step(filter=first), Step(filter=second)]),
        log=events.log,
        notify=lambda _id: None,
        deliver_in_data=lambda *_: asyncio.sleep(0, False),  # keeps it in memory until the end
    )
    data = BODY + b"x" * size + b"\r\n"
    outcome = await take(intake, data)
    assert isinstance(outcome, Accepted)
    # Each filter saw the fields of the ones before it; the later one's go above.
    assert second.seen[0].added == b"X-First: 1\r\n"
    assert second.read == [b"X-First: 1\r\n" + data]
    assert stored(spool, outcome.queue_id) == b"X-Second: 2\r\nX-First: 1\r\n" + data
    queued = spool.get(outcome.queue_id)
    assert queued is not None and queued.size == len(data) + 25


async def test_quarantine_marks_the_envelope_for_junk(spool: Spool) -> None:
    events = Events()
    intake = intake_with(spool, events, Step(filter=Fixed(Verdict.quarantine("score 12"))))
    outcome = await take(intake, BODY)
    assert isinstance(outcome, Accepted)
    queued = spool.get(outcome.queue_id)
    assert queued is not None and queued.envelope.folder == "Junk"
    (event,) = events.of(FilterVerdict)
    assert isinstance(event, FilterVerdict) and event.action == "quarantine"


@pytest.mark.parametrize("broken", ["timeout", "error"])
async def test_failing_filter_tempfails_by_default(spool: Spool, broken: str) -> None:
    events = Events()
    bad = Fixed(delay=5.0) if broken == "timeout" else Fixed(error=True)
    intake = intake_with(spool, events, Step(filter=bad, timeout=0.2))
    outcome = await take(intake, BODY)
    assert isinstance(outcome, Refusal)
    assert (outcome.reply.code, outcome.reply.enhanced) == (451, "4.7.1")
    assert spool.list() == []


async def test_failing_filter_may_be_taken_as_accept(spool: Spool) -> None:
    events = Events()
    intake = intake_with(spool, events, Step(filter=Fixed(error=True), on_error="accept"))
    outcome = await take(intake, BODY)
    assert isinstance(outcome, Accepted)
    (event,) = events.of(FilterVerdict)
    assert isinstance(event, FilterVerdict)
    assert event.action == "accept" and "accepted unchecked" in event.reason


async def test_filters_apply_to_their_origins_only(spool: Spool) -> None:
    events = Events()
    refuse = Fixed(Verdict.reject(reply(550, "5.7.1", "no"), "no"))
    intake = intake_with(spool, events, Step(filter=refuse, origins=frozenset({Origin.SMTP})))
    assert isinstance(await take(intake, BODY, Origin.REPORT), Accepted)
    assert isinstance(await take(intake, BODY, Origin.SMTP), Refusal)


async def test_received_is_written_first(spool: Spool) -> None:
    events = Events()
    intake = intake_with(spool, events, Step(filter=ReceivedField(hostname="mx.test", version="9")))
    outcome = await take(intake, BODY, tls="TLSv1.3 TLS_AES_128_GCM_SHA256")
    assert isinstance(outcome, Accepted)
    data = stored(spool, outcome.queue_id)
    assert data.startswith(b"Received: from client.example.org (unknown [192.0.2.1])\r\n")
    assert b"\tby mx.test (Hato 9) with ESMTP id " + outcome.queue_id.encode() in data
    assert b"(using TLSv1.3" in data and b"for <bob@example.net>;" in data
    assert data.endswith(BODY)


@pytest.mark.parametrize(
    ("message", "added"),
    [
        (b"Subject: x\r\n\r\nbody\r\n", {"Date", "Message-ID"}),
        (b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: x\r\n\r\nbody\r\n", {"Message-ID"}),
        (b"message-id: <a@b>\r\nDATE: x\r\n\r\nbody\r\n", set()),
        (b"\r\nbody only\r\n", {"Date", "Message-ID"}),
        (b"X-Long: " + b"y" * (MAX_HEADER_READ + 10) + b"\r\n\r\nbody\r\n", set()),
    ],
    ids=["none", "has-date", "has-both", "empty-header", "too-long-to-read"],
)
async def test_submission_fields(spool: Spool, message: bytes, added: set[str]) -> None:
    events = Events()
    fields = SubmissionFields(hostname="mx.test")
    intake = intake_with(spool, events, Step(filter=fields, origins=frozenset({Origin.SUBMISSION})))
    outcome = await take(intake, message, Origin.SUBMISSION)
    assert isinstance(outcome, Accepted)
    data = stored(spool, outcome.queue_id)
    assert data.endswith(message)
    top = parse_header(data[: len(data) - len(message)])
    assert {name for name, _ in top.fields} == added
    # Not for mail that is not submission.
    plain = await take(intake, message, Origin.SMTP)
    assert isinstance(plain, Accepted) and stored(spool, plain.queue_id) == message


async def test_delivered_while_waiting_never_queued(spool: Spool) -> None:
    events = Events()
    taken: list[bytes] = []

    async def deliver_in_data(queue_id, env, source, announce) -> bool:  # type: ignore[no-untyped-def]
        taken.append(source)
        announce()
        return True

    intake = intake_with(spool, events, deliver_in_data=deliver_in_data)
    outcome = await take(intake, BODY)
    assert isinstance(outcome, Accepted) and outcome.delivered
    assert [t.data for t in taken] == [BODY]
    assert spool.list() == [] and intake.notified == []  # type: ignore[attr-defined]
    assert len(events.of(Queued)) == 1


def test_verdicts_check_their_reply() -> None:
    with pytest.raises(ValueError, match="5xx"):
        Verdict.reject(reply(451, "4.7.1", "x"), "wrong class")
    with pytest.raises(ValueError, match="CRLF"):
        Verdict.accept(b"X-Bad: no line end")


def test_parse_header_unfolds_and_keeps_order() -> None:
    header = parse_header(b"Subject: a\r\n b\r\nFrom: <x@y>\r\nnot a field\r\n")
    assert header.fields == (("Subject", b"a b"), ("From", b"<x@y>"))
    assert header.get("subject") == b"a b" and not header.has("Date")
