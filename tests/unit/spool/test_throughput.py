"""Commits per second with 1 and 50 concurrent sessions: printed (run with -s), never asserted.

HATO_SPOOL_BENCH_MESSAGES sets the messages per run (default 1000) for a longer measurement.
"""

import asyncio
import os
import time
from pathlib import Path

import pytest

from hato.spool import Envelope, Recipient, Spool

MESSAGES = int(os.environ.get("HATO_SPOOL_BENCH_MESSAGES", "1000"))
BODY = b"Subject: bench\r\n\r\n" + b"x" * 1004 + b"\r\n"  # 1 KiB
ENVELOPE = Envelope(
    reverse_path="bench@example.org", recipients=(Recipient(address="rcpt@example.net"),)
)


async def run_sessions(spool: Spool, sessions: int, messages: int) -> float:
    async def session(count: int) -> None:
        for _ in range(count):
            writer = spool.new_message()
            writer.write(BODY)
            await writer.commit(ENVELOPE)

    share, extra = divmod(messages, sessions)
    start = time.perf_counter()
    await asyncio.gather(*(session(share + (n < extra)) for n in range(sessions)))
    return time.perf_counter() - start


@pytest.mark.parametrize("sessions", [1, 50])
@pytest.mark.parametrize("sync", ["syncfs", "fsync"])
def test_commits_per_second(tmp_path: Path, sync: str, sessions: int) -> None:
    with Spool(tmp_path, sync=sync) as spool:
        spool.open()
        elapsed = asyncio.run(run_sessions(spool, sessions, MESSAGES))
        stats = spool.stats
    assert stats.messages == MESSAGES
    print(
        f"\n{sync:>6}, {sessions:>2} sessions: {MESSAGES / elapsed:7.0f} commits/s, "
        f"{stats.messages_per_batch:5.1f} messages per batch (largest {stats.largest_batch})"
    )
