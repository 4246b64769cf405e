"""``kill -9`` under load: every message acknowledged with 250 survives, whole, exactly once,
and nothing that was not completely received is ever in the spool.

A message may be durable while its 250 is lost in the kill: that is allowed (the client
retries; RFC 5321 6.1 accepts the duplicate), so the spool may hold a few messages that were
never acknowledged, but each of them must be one a client sent in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

CLIENTS = 30
# Long enough for hundreds of commits; the kill then lands mid-DATA and mid-commit.
RUN_SECONDS = 2.0
MIN_ACKNOWLEDGED = 50
TOKEN = re.compile(rb"X-Token: (tok-\d+-\d+)\r\n")
QUEUED = re.compile(rb"^250 2\.0\.0 Ok: queued as (\S+)\r\n$")


@dataclass
class Ledger:
    """What the clients did: every message sent (before its first byte) and every 250."""

    sent: dict[str, bytes] = field(default_factory=dict)
    acknowledged: dict[str, str] = field(default_factory=dict)
    refused: list[bytes] = field(default_factory=list)


def make_content(token: str, number: int) -> bytes:
    # Sizes from under 1 KB to about 100 KB, so some messages are cut short by the kill.
    lines = 8 + (number * 7919) % 1300
    body = b"".join(
        b"%s line %06d of the message body ..........\r\n" % (token.encode(), i)
        for i in range(lines)
    )
    header = f"From: crash@test.com\r\nTo: user@localhost\r\nX-Token: {token}\r\n\r\n"
    return header.encode() + body + f"end of {token}\r\n".encode()


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """The last line of a reply; b"" once the server is gone."""
    while True:
        line = await reader.readline()
        if len(line) < 4 or line[3:4] != b"-":
            return line


async def client(port: int, number: int, ledger: Ledger) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return  # the kill came first
    try:
        await read_reply(reader)
        writer.write(b"EHLO crash.example\r\n")
        if not (await read_reply(reader)).startswith(b"250 "):
            return
        for sequence in range(1_000_000):
            token = f"tok-{number}-{sequence}"
            content = make_content(token, number + sequence)
            ledger.sent[token] = content
            writer.write(b"MAIL FROM:<crash@test.com>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n")
            for expected in (b"250 ", b"250 ", b"354 "):
                line = await read_reply(reader)
                if not line.startswith(expected):
                    ledger.refused += [line] if line else []
                    return
            writer.write(content + b".\r\n")
            line = await read_reply(reader)
            if not line:
                return
            match = QUEUED.match(line)
            if match is None:
                ledger.refused.append(line)
                return
            ledger.acknowledged[token] = match.group(1).decode()
    except (ConnectionError, OSError):
        return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def load_then_kill(hato: HatoProcess, ledger: Ledger) -> None:
    tasks = [asyncio.ensure_future(client(hato.port, n, ledger)) for n in range(CLIENTS)]
    started = time.monotonic()
    deadline = started + 60
    while time.monotonic() - started < RUN_SECONDS or len(ledger.acknowledged) < MIN_ACKNOWLEDGED:
        assert time.monotonic() < deadline, f"only {len(ledger.acknowledged)} acknowledged"
        assert not all(task.done() for task in tasks), f"clients gave up: {ledger.refused[:3]}"
        await asyncio.sleep(0.05)
    hato.signal(signal.SIGKILL)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


@pytest.mark.parametrize("sync", ["auto", "fsync"])
def test_kill_9_under_load(hato_factory: Callable[..., HatoProcess], sync: str) -> None:
    hato = hato_factory(config=f'[spool]\nsync = "{sync}"\n')
    hato.start()
    ledger = Ledger()
    asyncio.run(load_then_kill(hato, ledger))
    assert hato.wait() == -signal.SIGKILL
    assert ledger.refused == [], "a message was refused before the kill"

    hato.start()
    recovered = hato.events("spool_recovered")[-1]
    assert recovered["broken"] == []
    stored = hato.messages()
    assert recovered["queued"] == len(stored)

    by_token: dict[str, str] = {}
    for queue_id, data in stored.items():
        received, rest = hato.split_received(data)
        assert f"id {queue_id}".encode() in received
        found = TOKEN.search(rest)
        assert found is not None, f"{queue_id} is not a message any client sent: {rest[:200]!r}"
        token = found.group(1).decode()
        assert token not in by_token, f"{token} is queued twice: {by_token[token]}, {queue_id}"
        by_token[token] = queue_id
        assert rest == ledger.sent[token], f"{queue_id} ({token}) is not what was sent"

    for token, queue_id in ledger.acknowledged.items():
        assert by_token.get(token) == queue_id, f"acknowledged {token} ({queue_id}) was lost"
    # Each client has at most one message in flight: only those can be queued unacknowledged.
    unacknowledged = set(by_token) - set(ledger.acknowledged)
    assert len(unacknowledged) <= CLIENTS

    # The restarted server takes mail again, on top of what survived.
    with smtplib.SMTP("127.0.0.1", hato.port) as smtp:
        assert smtp.sendmail("a@test.com", ["user@localhost"], b"Subject: after\r\n\r\n.") == {}
    assert len(hato.queue()) == len(stored) + 1
    assert hato.stop() == 0
