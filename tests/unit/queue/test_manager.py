"""The queue manager with a real spool, store and Maildir, and an injected clock."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.message
import email.policy
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hato.accounts import AccountStore
from hato.config import HostPort, Transport
from hato.delivery import MaildirAgent, SmtpAgent
from hato.events import EventLog
from hato.queue import QueueManager, RetryPolicy
from hato.routing import DnspythonResolver, LocalRouter, NextHopRouter
from hato.spool import Envelope, QueueState, Recipient, Spool

HOST = "mx.test.example"
LIFETIME = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    data: Path
    spool: Spool
    manager: QueueManager
    clock: Clock
    maildir: MaildirAgent
    events_path: Path
    log: EventLog
    reports: list[tuple[Envelope, bytes]]

    async def queue(
        self,
        *recipients: str,
        body: bytes = b"Subject: t\r\n\r\nbody\r\n",
        notify: tuple[str, ...] = (),
        sender: str = "sender@localhost",
        envid: str | None = None,
    ) -> str:
        writer = self.spool.new_message()
        writer.write(body)
        envelope = Envelope(
            reverse_path=sender,
            recipients=tuple(Recipient(address=r, notify=notify) for r in recipients),
            arrival=self.clock.now,
            envid=envid,
        )
        await writer.commit(envelope)
        self.manager.notify(writer.queue_id)
        return writer.queue_id

    async def settle(self) -> None:
        for _ in range(500):
            await asyncio.sleep(0.01)
            if self.manager.idle:
                self.log.flush()
                return
        raise AssertionError("queue manager did not settle")

    def events(self, name: str) -> list[dict[str, object]]:
        self.log.flush()
        lines = self.events_path.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["event"] == name]

    def park(self, local: str) -> Path:
        path = self.maildir.mailbox_dir("localhost", local)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a file where the maildir belongs")
        return path


@contextlib.asynccontextmanager
async def open_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    spool = Spool(tmp_path)
    spool.open()
    accounts = AccountStore(tmp_path / "accounts.sqlite3", config_domains=("localhost",))
    for user in ("carol", "dave", "sender"):
        accounts.add_user(f"{user}@localhost")
    router = LocalRouter(accounts, config_domains=("localhost",), hostname=HOST)
    maildir = MaildirAgent(tmp_path / "mailboxes", hostname=HOST)
    clock = Clock()
    events_path = tmp_path / "events.jsonl"
    log = EventLog(json_path=events_path)
    reports: list[tuple[Envelope, bytes]] = []

    async def submit(envelope: Envelope, data: bytes) -> str:
        # Reports go through the same spool intake as any message.
        writer = spool.new_message()
        writer.write(data)
        await writer.commit(envelope)
        reports.append((envelope, data))
        manager.notify(writer.queue_id)
        return writer.queue_id

    # Remote domains route to a closed loopback port; no test here relays.
    closed = HostPort("127.0.0.1", 9)
    next_hops = NextHopRouter(
        DnspythonResolver([closed], timeout=1.0), transports=[Transport("remote.example", closed)]
    )
    manager = QueueManager(
        state=QueueState(tmp_path),
        router=router,
        maildir=maildir,
        remote=SmtpAgent(next_hops, local_hostname=HOST, connect_timeout=2.0),
        submit=submit,
        hostname=HOST,
        retry=RetryPolicy(initial=300.0, maximum=3600.0, lifetime=LIFETIME),
        log=log,
        clock=clock,
        rng=lambda: 0.0,
    )
    await manager.start()
    try:
        yield Rig(tmp_path, spool, manager, clock, maildir, events_path, log, reports)
    finally:
        await manager.stop()
        manager.state.close()
        spool.close()
        accounts.close()
        log.close()


def test_rig_runs_under_asyncio(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path) as rig:
            queue_id = await rig.queue("carol@localhost")
            await rig.settle()
            (message,) = rig.maildir.messages("localhost", "carol")
            assert message.path.read_bytes().endswith(b"body\r\n")
            assert rig.manager.state.entry(queue_id) is None
            assert [e["queue_id"] for e in rig.events("removed")] == [queue_id]

    asyncio.run(scenario())


def test_transient_failure_backs_off_then_delivers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path) as rig:
            blocker = rig.park("carol")
            queue_id = await rig.queue("carol@localhost", "dave@localhost")
            await rig.settle()
            entry = rig.manager.state.entry(queue_id)
            assert entry is not None
            carol, dave = entry.recipients
            assert (carol.state, carol.attempts) == ("deferred", 1)
            assert carol.next_attempt == rig.clock.now + 300.0
            assert carol.status is not None and carol.status.startswith("4.")
            assert dave.state == "delivered"
            # Not yet due: nothing happens when the clock has not moved.
            await rig.settle()
            assert rig.manager.state.entry(queue_id) == entry
            blocker.unlink()
            rig.clock.now += 301.0
            rig.manager.notify(queue_id)
            await rig.settle()
            assert rig.manager.state.entry(queue_id) is None
            assert len(rig.maildir.messages("localhost", "carol")) == 1
            assert len(rig.maildir.messages("localhost", "dave")) == 1  # not twice

    asyncio.run(scenario())


def test_second_failure_waits_twice_as_long_and_expiry_fails(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path) as rig:
            rig.park("carol")
            queue_id = await rig.queue("carol@localhost")
            await rig.settle()
            rig.clock.now += 300.0
            rig.manager.notify(queue_id)
            await rig.settle()
            entry = rig.manager.state.entry(queue_id)
            assert entry is not None
            assert entry.recipients[0].attempts == 2
            assert entry.recipients[0].next_attempt == rig.clock.now + 600.0
            rig.clock.now += LIFETIME
            rig.manager.notify(queue_id)
            await rig.settle()
            assert rig.manager.state.entry(queue_id) is None
            (failed,) = rig.events("failed")
            assert failed["status"] == "4.4.7"
            assert "expired" in str(failed["detail"])
            assert failed["reverse_path"] == "sender@localhost"

    asyncio.run(scenario())


def test_unknown_and_loop_fail_permanently(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path) as rig:
            looped = b"Delivered-To: dave@localhost\r\nSubject: loop\r\n\r\nx\r\n"
            loop_id = await rig.queue("dave@localhost", body=looped)
            gone_id = await rig.queue("nobody@localhost")
            await rig.settle()
            failed = {e["queue_id"]: e for e in rig.events("failed")}
            assert failed[loop_id]["status"] == "5.4.6"
            assert failed[gone_id]["status"] == "5.1.1"
            assert rig.manager.state.entries() == []
            assert rig.maildir.messages("localhost", "dave") == []

    asyncio.run(scenario())


def report_parts(data: bytes) -> tuple[email.message.EmailMessage, list[email.message.Message]]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    status = next(p for p in message.walk() if p.get_content_type() == "message/delivery-status")
    blocks = [b for b in status.get_payload()]  # the per-message block, then per recipient
    return message, blocks


def test_failure_report_reaches_the_sender(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path) as rig:
            await rig.queue("nobody@localhost", envid="ENV-42")
            await rig.settle()
            await rig.settle()
            (envelope, data) = rig.reports[0]
            assert (
                envelope.reverse_path == "" and envelope.recipients[0].address == "sender@localhost"
            )
            _, blocks = report_parts(data)
            assert blocks[0]["Original-Envelope-Id"] == "ENV-42"
            assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == "5.1.1"
            assert "nobody@localhost" in blocks[1]["Final-Recipient"]
            inbox = rig.maildir.messages("localhost", "sender")
            assert len(inbox) == 1 and inbox[0].path.read_bytes().endswith(data)
            assert rig.manager.state.entries() == []

    asyncio.run(scenario())


def test_success_report_only_when_asked(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path) as rig:
            await rig.queue("carol@localhost", notify=("SUCCESS", "FAILURE"))
            await rig.queue("dave@localhost", notify=("NEVER",))
            await rig.queue("nobody@localhost", notify=("NEVER",))
            await rig.queue("nobody@localhost", sender="")  # a bounce never bounces
            await rig.settle()
            assert len(rig.reports) == 1
            _, blocks = report_parts(rig.reports[0][1])
            assert blocks[1]["Action"] == "delivered" and blocks[1]["Status"].startswith("2.")

    asyncio.run(scenario())


def test_delay_report_once_after_the_warning_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path) as rig:
            rig.park("carol")
            queue_id = await rig.queue("carol@localhost", notify=("DELAY", "FAILURE"))
            await rig.settle()
            assert rig.reports == []  # deferred, but not for long yet
            for _ in range(2):
                rig.clock.now += 5 * 3600.0  # past the 4 h warning
                rig.manager.notify(queue_id)
                await rig.settle()
            delays = [r for r in rig.reports if b"delayed" in r[1]]
            assert len(delays) == 1
            _, blocks = report_parts(delays[0][1])
            assert blocks[1]["Action"] == "delayed" and blocks[1]["Will-Retry-Until"]

    asyncio.run(scenario())


@pytest.mark.parametrize("turns", range(6))
def test_stop_ends_however_it_meets_a_wakeup(tmp_path: Path, turns: int) -> None:
    """The queue is woken (a message queued) a few loop turns before stop() cancels its
    runner: the cancellation must not be lost, whichever turn it lands on."""

    async def scenario() -> None:
        async with open_rig(tmp_path) as rig:
            rig.park("carol")
            queue_id = await rig.queue("carol@localhost")
            await rig.settle()  # deferred: the runner now waits with a time limit
            rig.manager.notify("no-such-message")  # wakes the runner, finds nothing to do
            for _ in range(turns):
                await asyncio.sleep(0)
            began = time.monotonic()
            async with asyncio.timeout(5):  # (stop() itself swallows this cancellation)
                await rig.manager.stop()
            assert time.monotonic() - began < 2.5, "stop() waited for its runner"
            assert rig.manager.state.entry(queue_id) is not None

    asyncio.run(scenario())
