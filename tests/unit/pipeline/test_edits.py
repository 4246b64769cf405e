"""Verdicts that change a message: header edits and a new body applied to its bytes, the
envelope readdressed, and through the intake into what the spool keeps (in memory and
spilled to a file), with each later filter seeing the changed message."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from hato.events import EventLog
from hato.pipeline import (
    HeaderEdit,
    Message,
    Pipeline,
    PipelineIntake,
    Stage,
    Step,
    Verdict,
    apply_edits,
    readdress,
)
from hato.spool import Accepted, Envelope, Origin, Recipient, Spool

F, S1, XA, S2 = (
    b"From: a@example.org\r\n",
    b"Subject: one\r\n",
    b"X-A: 1\r\n\tfolded\r\n",
    b"Subject: two\r\n",
)
MESSAGE = F + S1 + XA + S2 + b"\r\nbody\r\n"


def edit(action: str, name: str, value: bytes, index: int = 0) -> HeaderEdit:
    return HeaderEdit(action=action, name=name, value=value, index=index)


@pytest.mark.parametrize(
    ("edits", "expected_header"),
    [
        (
            [edit("add", "X-B", b" 2")],
            F + S1 + XA + S2 + b"X-B: 2\r\n",
        ),
        (
            [edit("insert", "X-B", b" 2", 0)],
            b"X-B: 2\r\n" + F + S1 + XA + S2,
        ),
        (
            [edit("insert", "X-B", b" 2", 2)],
            F + S1 + b"X-B: 2\r\n" + XA + S2,
        ),
        (
            [edit("change", "subject", b" new", 2)],
            b"From: a@example.org\r\nSubject: one\r\nX-A: 1\r\n\tfolded\r\nsubject: new\r\n",
        ),
        (
            [edit("change", "X-A", b"", 1)],
            b"From: a@example.org\r\nSubject: one\r\nSubject: two\r\n",
        ),
        (
            [edit("change", "X-C", b" 3", 1)],
            F + S1 + XA + S2 + b"X-C: 3\r\n",
        ),
        (
            [edit("add", "X-F", b" a\n\tb")],
            F + S1 + XA + S2 + b"X-F: a\r\n\tb\r\n",
        ),
        ([edit("change", "X-Z", b"", 1)], MESSAGE.partition(b"\r\n\r\n")[0] + b"\r\n"),
    ],
)
def test_header_edits(edits: list[HeaderEdit], expected_header: bytes) -> None:
    assert apply_edits(MESSAGE, edits, None) == expected_header + b"\r\nbody\r\n"


def test_a_new_body_is_stored_with_crlf() -> None:
    assert apply_edits(MESSAGE, [], b"new\nbody\r\n").endswith(
        b"Subject: two\r\n\r\nnew\r\nbody\r\n"
    )
    assert apply_edits(b"\r\nonly a body\r\n", [edit("add", "X-B", b" 2")], None) == (
        b"X-B: 2\r\n\r\nonly a body\r\n"
    )


def test_header_edits_check_what_they_are_given() -> None:
    for bad in ("bad name", "", "a:b"):
        with pytest.raises(ValueError, match="header field name"):
            edit("add", bad, b" x")
    with pytest.raises(ValueError, match="one of"):
        edit("replace", "X-A", b" x")


ENVELOPE = Envelope(
    reverse_path="a@example.org",
    recipients=(Recipient(address="b@example.org"), Recipient(address="c@example.org")),
)


def test_readdress() -> None:
    found = readdress(
        ENVELOPE, sender="", add=["d@example.org", "B@example.org"], delete=["C@EXAMPLE.org"]
    )
    assert found is not None
    assert found.reverse_path == ""
    assert [r.address for r in found.recipients] == ["b@example.org", "d@example.org"]
    assert (
        readdress(ENVELOPE, sender=None, add=[], delete=["b@example.org", "c@example.org"]) is None
    )


class Editing:
    stages: ClassVar[Stage] = Stage.END

    def __init__(self, name: str, verdict: Verdict) -> None:
        self.name, self.verdict = name, verdict
        self.seen: list[bytes] = []

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        self.seen.append(message.read_all())
        return self.verdict


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "file"])
async def test_the_intake_stores_the_changes_and_later_filters_see_them(
    tmp_path: Path, in_memory: bool
) -> None:
    spool = Spool(tmp_path / "data", sync="fsync")
    spool.open()
    first = Editing("first", Verdict.accept(prepend=b"X-First: 1\r\n"))
    second = Editing(
        "second",
        Verdict(
            edits=(edit("change", "Subject", b" changed", 1), edit("insert", "X-Top", b" t", 0)),
            body=b"replaced\r\n",
            sender="bounce@example.org",
            add_recipients=("d@example.org",),
            delete_recipients=("c@example.org",),
        ),
    )
    third = Editing("third", Verdict.accept(prepend=b"X-Third: 3\r\n"))
    fourth = Editing("fourth", Verdict.accept())

    async def deliver(*_: object) -> bool:
        return False

    intake = PipelineIntake(
        spool=spool,
        pipeline=Pipeline([Step(filter=f) for f in (first, second, third, fourth)]),
        log=EventLog(),
        notify=lambda _id: None,
        deliver_in_data=deliver if in_memory else None,
    )
    incoming = intake.open(ENVELOPE, Origin.SMTP)
    incoming.write(MESSAGE)
    outcome = await incoming.finish()
    assert isinstance(outcome, Accepted)
    top = b"X-Third: 3\r\nX-Top: t\r\nX-First: 1\r\n"
    expected = top + F + b"Subject: changed\r\n" + XA + S2 + b"\r\nreplaced\r\n"
    assert third.seen == [expected.removeprefix(b"X-Third: 3\r\n")]
    assert fourth.seen == [expected]
    stored = spool.get(outcome.queue_id)
    assert stored is not None
    with spool.open_data(outcome.queue_id) as data:
        assert data.read() == expected
    assert stored.envelope.reverse_path == "bounce@example.org"
    assert [r.address for r in stored.envelope.recipients] == ["b@example.org", "d@example.org"]
    spool.close()
