"""Verdicts that drop received header fields: in memory, spilled to a file, merged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from hato.events import EventLog
from hato.pipeline import (
    ACCEPT,
    MAX_HEADER_READ,
    Message,
    Pipeline,
    PipelineIntake,
    Stage,
    Step,
    Verdict,
    parse_header,
)
from hato.spool import Accepted, Envelope, Origin, Recipient, Spool

HEADER = (
    b"Authentication-Results: mx.test; dkim=pass\r\n"
    b"Subject: hello\r\n"
    b"Authentication-Results: mx.test;\r\n\tspf=pass\r\n"
    b"From: <alice@example.org>\r\n"
)
KEPT = b"Subject: hello\r\nFrom: <alice@example.org>\r\n"
RECEIVED = b"Received: from client by mx.test\r\n"
STAMP = b"X-Header-Stage: 1\r\n"


def envelope() -> Envelope:
    return Envelope(
        reverse_path="alice@example.org",
        recipients=(Recipient(address="bob@example.net"),),
        client_ip="192.0.2.1",
        helo="client.example.org",
        protocol="ESMTP",
        arrival=1_700_000_000.0,
        session_id="s1",
    )


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "data", sync="fsync")
    s.open()
    yield s
    s.close()


class Tracing:
    """Opening and header stages write a field each, so the header section starts later."""

    name: ClassVar[str] = "tracing"
    stages: ClassVar[Stage] = Stage.OPENING | Stage.HEADER

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return RECEIVED

    def header(self, message: Message) -> bytes:
        return STAMP

    async def end(self, message: Message) -> Verdict:
        raise AssertionError("not an end filter")


class Dropping:
    """Drops the fields of a given name, or the given indexes, and may add one field."""

    name: ClassVar[str] = "dropping"
    stages: ClassVar[Stage] = Stage.END

    def __init__(
        self, field: str = "", *, indexes: tuple[int, ...] = (), prepend: bytes = b""
    ) -> None:
        self.field, self.indexes, self.prepend = field, indexes, prepend

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        raise AssertionError("not an opening filter")

    def header(self, message: Message) -> bytes:
        raise AssertionError("not a header filter")

    async def end(self, message: Message) -> Verdict:
        found = tuple(
            i for i, (name, _) in enumerate(message.header.fields) if name.lower() == self.field
        )
        return Verdict.accept(self.prepend, drop=found + self.indexes)


def intake(spool: Spool, *filters: object, memory: bool) -> PipelineIntake:
    async def never_delivered(*_: object) -> bool:
        return False

    return PipelineIntake(
        spool=spool,
        pipeline=Pipeline([Step(filter=f) for f in filters]),  # type: ignore[arg-type]
        log=EventLog(),
        notify=lambda _id: None,
        deliver_in_data=never_delivered if memory else None,
    )


async def take(chosen: PipelineIntake, data: bytes) -> bytes:
    message = chosen.open(envelope(), Origin.SMTP)
    for start in range(0, len(data), 7):  # in odd pieces: the section arrives split
        message.write(data[start : start + 7])
    outcome = await message.finish()
    assert isinstance(outcome, Accepted)
    with chosen.spool.open_data(outcome.queue_id) as stored:
        content = stored.read()
    queued = chosen.spool.get(outcome.queue_id)
    assert queued is not None and queued.size == len(content)
    return content


@pytest.mark.parametrize("memory", [True, False], ids=["held-in-memory", "written-to-file"])
@pytest.mark.parametrize("size", [1_000, 600_000], ids=["small", "spilled"])
async def test_dropped_fields_are_gone(spool: Spool, memory: bool, size: int) -> None:
    body = b"\r\n" + b"x" * size + b"\r\nAuthentication-Results: in the body\r\n"
    chosen = intake(
        spool,
        Tracing(),
        Dropping("authentication-results", prepend=b"Authentication-Results: mx.test; ok\r\n"),
        memory=memory,
    )
    stored = await take(chosen, HEADER + body)
    assert stored == (b"Authentication-Results: mx.test; ok\r\n" + RECEIVED + STAMP + KEPT + body)


async def test_drop_alone_and_merged_from_two_filters(spool: Spool) -> None:
    chosen = intake(spool, Dropping(indexes=(0,)), Dropping(indexes=(2, 0)), memory=True)
    stored = await take(chosen, HEADER + b"\r\nbody\r\n")
    assert stored == KEPT + b"\r\nbody\r\n"


async def test_indexes_past_the_fields_are_ignored(spool: Spool) -> None:
    chosen = intake(spool, Dropping(indexes=(1, 4, 99)), memory=False)
    stored = await take(chosen, HEADER + b"\r\nbody\r\n")
    assert stored == HEADER.replace(b"Subject: hello\r\n", b"") + b"\r\nbody\r\n"


async def test_header_only_message_last_field_can_go(spool: Spool) -> None:
    chosen = intake(spool, Dropping(indexes=(3,)), memory=True)
    assert await take(chosen, HEADER) == HEADER.replace(b"From: <alice@example.org>\r\n", b"")


async def test_a_section_cut_short_keeps_its_last_field(spool: Spool) -> None:
    # Longer than the intake holds: the field cut at the limit may go on past it.
    long_field = b"X-Long: " + b"y" * (MAX_HEADER_READ + 100) + b"\r\n"
    data = HEADER + long_field + b"\r\nbody\r\n"
    chosen = intake(spool, Dropping(indexes=(0, 4)), memory=True)
    stored = await take(chosen, data)
    assert stored == data.replace(b"Authentication-Results: mx.test; dkim=pass\r\n", b"")


async def test_no_drop_changes_nothing(spool: Spool) -> None:
    chosen = intake(spool, Dropping("x-none"), memory=False)
    assert await take(chosen, HEADER + b"\r\nb\r\n") == HEADER + b"\r\nb\r\n"


def test_negative_index_is_a_bug() -> None:
    with pytest.raises(ValueError, match="negative"):
        Verdict.accept(drop=(-1,))
    assert ACCEPT.drop == ()


def test_parse_header_spans() -> None:
    header = parse_header(HEADER + b"not a field\r\n")
    assert [HEADER[start:end] for start, end in header.spans] == [
        b"Authentication-Results: mx.test; dkim=pass\r\n",
        b"Subject: hello\r\n",
        b"Authentication-Results: mx.test;\r\n\tspf=pass\r\n",
        b"From: <alice@example.org>\r\n",
    ]
    assert len(header.spans) == len(header.fields)


@pytest.mark.parametrize("memory", [True, False])
def test_writer_prepend_leaves_out_ranges(spool: Spool, memory: bool) -> None:
    async def main() -> None:
        writer = spool.new_message(in_memory=memory)
        writer.write(b"0123456789")
        writer.prepend(b"AB", [(1, 3), (5, 6), (9, 10)])
        assert writer.size == 8
        with writer.source().open() as source:
            assert source.read() == b"AB034678"
        with pytest.raises(ValueError, match="in order"):
            writer.prepend(b"", [(4, 2)])
        with pytest.raises(ValueError, match="in order"):
            writer.prepend(b"", [(3, 5), (4, 6)])
        with pytest.raises(ValueError, match="in order"):
            writer.prepend(b"", [(7, 99)])
        writer.abort()

    asyncio.run(main())
