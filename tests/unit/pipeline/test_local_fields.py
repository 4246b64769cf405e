"""What the intake adds to mail from local programs (sendmail, the pickup directory),
through the built pipeline, against a real spool on disk."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest

from hato.config import load_settings
from hato.events import EventLog, OpsEvent, Queued
from hato.pipeline import PipelineIntake, build_pipeline
from hato.spool import (
    ANNOTATION_FULL_NAME,
    ANNOTATION_SENDER_SET,
    ANNOTATION_USER,
    Accepted,
    Envelope,
    Origin,
    Recipient,
    Spool,
)

HOSTNAME = "mx.local.test"


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "data", sync="fsync")
    s.open()
    yield s
    s.close()


def run(spool: Spool, data: bytes, origin: Origin, annotations: dict[str, object]):  # type: ignore[no-untyped-def]
    settings = load_settings(
        None, overrides={"server.hostname": HOSTNAME, "server.data_dir": str(spool.data_dir)}
    )
    seen: list[OpsEvent] = []
    log = EventLog()
    log.subscribe(lambda _ts, event: seen.append(event))
    intake = PipelineIntake(
        spool=spool, pipeline=build_pipeline(settings), log=log, notify=lambda _id: None
    )
    envelope = Envelope(
        reverse_path="ceo@local.test",
        recipients=(Recipient(address="bob@local.test"),),
        protocol="local",
        arrival=1_700_000_000.0,
    )

    async def take() -> Accepted:
        message = intake.open(envelope, origin, annotations=annotations)
        message.write(data)
        outcome = await message.finish()
        assert isinstance(outcome, Accepted)
        return outcome

    outcome = asyncio.run(take())
    with spool.open_data(outcome.queue_id) as stored:
        parsed = email.message_from_bytes(stored.read(), policy=email.policy.default)
    (queued,) = [e for e in seen if isinstance(e, Queued)]
    return outcome.queue_id, parsed, queued


def test_a_user_setting_the_sender_is_recorded(spool: Spool) -> None:
    annotations = {
        ANNOTATION_USER: "65534 nobody",
        ANNOTATION_FULL_NAME: "Nobody Special",
        ANNOTATION_SENDER_SET: True,
    }
    queue_id, message, queued = run(
        spool, b"Subject: s\r\n\r\nbody\r\n", Origin.SENDMAIL, annotations
    )
    received = message["Received"]
    assert received.startswith(f"by {HOSTNAME} (Hato ") and "from userid 65534 (nobody)" in received
    assert f"id {queue_id}" in received and "for <bob@local.test>" in received
    assert message["X-Authentication-Warning"] == (
        f"{HOSTNAME}: nobody set sender to ceo@local.test using -f"
    )
    assert message["From"] == "Nobody Special <ceo@local.test>"
    assert message["Date"] and message["Message-ID"].endswith(f"@{HOSTNAME}>")
    assert queued.origin == "sendmail" and "(from sendmail)" in queued.describe()


def test_fields_a_message_has_are_kept_and_pickup_is_named(spool: Spool) -> None:
    data = (
        b"From: a@local.test\r\nDate: Tue, 1 Oct 2024 10:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n"
    )
    _, message, queued = run(spool, data, Origin.PICKUP, {})
    assert "from the pickup directory" in message["Received"]
    assert message["X-Authentication-Warning"] is None
    assert message.get_all("From") == ["a@local.test"] and message["Message-ID"] == "<x@y>"
    assert len(message.get_all("Date")) == 1
    assert queued.origin == "pickup"
