"""The spool against real files, real threads and a real event loop."""

import asyncio
import os
import sqlite3
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from hato.spool import (
    QUEUED,
    Envelope,
    MessageWriter,
    QueueIdSource,
    Recipient,
    Spool,
    SpoolError,
    is_queue_id,
)

MODES = ["syncfs", "fsync"]


def envelope(*addresses: str, sender: str = "alice@example.org") -> Envelope:
    return Envelope(
        reverse_path=sender,
        recipients=tuple(Recipient(address=a) for a in addresses or ("bob@example.net",)),
        client_ip="192.0.2.1",
        helo="client.example.org",
        protocol="ESMTP",
        arrival=1_700_000_000.5,
        session_id="s1",
    )


@pytest.fixture(params=MODES)
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "data", sync=request.param)
    s.open()
    yield s
    s.close()


def message_files(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "spool" / "msg").glob("*/*")}


async def queue(spool: Spool, data: bytes, env: Envelope | None = None) -> str:
    writer = spool.new_message()
    writer.write(data)
    await writer.commit(env or envelope())
    return writer.queue_id


def test_commit_then_reopen_shows_it(spool: Spool) -> None:
    env = Envelope(
        reverse_path="",
        recipients=(
            Recipient(address="bob@example.net", notify=("SUCCESS", "DELAY"), orcpt="rfc822;b@x"),
            Recipient(address="carol@example.net", notify=("NEVER",)),
        ),
        envid="ENV 1",
        ret="HDRS",
        body="8BITMIME",
        smtputf8=True,
        client_ip="2001:db8::1",
        client_name="mx.example.org",
        helo="mx.example.org",
        protocol="ESMTPSA",
        tls="TLSv1.3 TLS_AES_256_GCM_SHA384",
        auth="alice",
        arrival=1_700_000_000.25,
        session_id="abc",
    )
    data = b"Subject: hi\r\n\r\nhello \xc3\xa9\r\n"
    queue_id = asyncio.run(queue(spool, data, env))
    spool.close()

    reopened = Spool(spool.data_dir, sync=spool.sync)
    report = reopened.open()
    try:
        assert report.queued == 1
        assert report.orphans_removed == report.broken == ()
        message = reopened.get(queue_id)
        assert message is not None
        assert message.envelope == env
        assert message.size == len(data)
        assert message.states == (QUEUED, QUEUED)
        assert message.path.read_bytes() == data
        assert message.path.parent.name == queue_id[-1]
        with reopened.open_data(queue_id) as f:
            assert f.read() == data
        assert [m.queue_id for m in reopened.list()] == [queue_id]
    finally:
        reopened.close()


def test_abort_leaves_nothing(spool: Spool) -> None:
    writer = spool.new_message()
    writer.write(b"partial DATA")
    assert message_files(spool.data_dir) == {writer.queue_id}
    writer.abort()
    writer.abort()  # idempotent
    assert message_files(spool.data_dir) == set()
    assert spool.list() == []
    assert spool.get(writer.queue_id) is None
    with pytest.raises(RuntimeError):
        writer.write(b"more")
    spool.close()
    with Spool(spool.data_dir) as again:
        assert again.open().orphans_removed == ()


def test_concurrent_commits_share_syncs(spool: Spool) -> None:
    async def main() -> list[str]:
        writers = [spool.new_message() for _ in range(200)]
        for i, writer in enumerate(writers):
            writer.write(b"message %d\r\n" % i)
        await asyncio.gather(*(w.commit(envelope()) for w in writers))
        return [w.queue_id for w in writers]

    queue_ids = asyncio.run(main())
    stats = spool.stats
    assert stats.messages == 200
    assert stats.batches < stats.messages
    assert stats.failed == 0
    assert [m.queue_id for m in spool.list()] == queue_ids  # arrival order
    for i, queue_id in enumerate(queue_ids):
        with spool.open_data(queue_id) as f:
            assert f.read() == b"message %d\r\n" % i


def test_recovery_removes_uncommitted_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    kept = asyncio.run(queue(spool, b"kept"))
    lost = spool.new_message()
    lost.write(b"killed mid-DATA" * 10_000)  # past the buffer, so it reaches the file
    spool.close()  # as if the process died here, mid-DATA
    assert message_files(tmp_path) == {kept, lost.queue_id}

    again = Spool(tmp_path)
    report = again.open()
    again.close()
    assert report.orphans_removed == (lost.queue_id,)
    assert report.queued == 1
    assert report.broken == ()
    assert message_files(tmp_path) == {kept}
    lost.abort()  # only closes the descriptor: the file is already gone


def test_recovery_reports_rows_without_intact_file(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.open()
        missing, truncated, fine = (asyncio.run(queue(spool, b"0123456789")) for _ in range(3))
        paths = {m.queue_id: m.path for m in spool.list()}
    paths[missing].unlink()
    paths[truncated].write_bytes(b"01234")

    with Spool(tmp_path) as spool:
        report = spool.open()
        assert report.broken == (missing, truncated)
        assert report.queued == 1
        assert {m.queue_id for m in spool.list()} == {missing, truncated, fine}
        with pytest.raises(SpoolError):
            spool.open_data(missing)


@pytest.mark.parametrize("sync", MODES)
def test_streaming_50_mb_keeps_memory_low(tmp_path: Path, sync: str) -> None:
    chunk = b"x" * 65535 + b"\n"
    count = 50 * 1024 * 1024 // len(chunk)
    with Spool(tmp_path, sync=sync) as spool:
        spool.open()
        writer = spool.new_message()
        tracemalloc.start()
        try:
            for _ in range(count):
                writer.write(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024, f"peak {peak} bytes while streaming 50 MB"
        asyncio.run(writer.commit(envelope()))
        message = spool.get(writer.queue_id)
        assert message is not None
        assert message.size == writer.size == count * len(chunk)
        assert message.path.stat().st_size == message.size


def test_readonly_open_while_writer_runs(spool: Spool) -> None:
    first = asyncio.run(queue(spool, b"one"))
    in_flight = spool.new_message()
    in_flight.write(b"not yet committed")
    reader = Spool.open_readonly(spool.data_dir)
    try:
        assert [m.queue_id for m in reader.list()] == [first]
        assert in_flight.queue_id in message_files(spool.data_dir)  # no recovery on read
        asyncio.run(in_flight.commit(envelope()))
        second = asyncio.run(queue(spool, b"two"))
        assert [m.queue_id for m in reader.list()] == [first, in_flight.queue_id, second]
        with reader.open_data(second) as f:
            assert f.read() == b"two"
        with pytest.raises(SpoolError):
            reader.new_message()
        with pytest.raises(KeyError):
            reader.open_data("0" * 14)
        assert reader.get("../../etc/passwd") is None
    finally:
        reader.close()
    assert spool.stats.failed == 0


def test_readonly_open_without_a_spool_fails(tmp_path: Path) -> None:
    with pytest.raises(SpoolError):
        Spool.open_readonly(tmp_path)


def test_one_writing_process_at_a_time(spool: Spool) -> None:
    with pytest.raises(SpoolError, match="in use"):
        Spool(spool.data_dir).open()
    assert asyncio.run(queue(spool, b"still works"))


def test_commit_after_close_raises_and_removes_file(spool: Spool) -> None:
    writer = spool.new_message()
    writer.write(b"late")
    spool.close()
    spool.close()  # idempotent
    with pytest.raises(SpoolError):
        asyncio.run(writer.commit(envelope()))
    assert message_files(spool.data_dir) == set()
    with pytest.raises(SpoolError):
        writer.write(b"again")
    with pytest.raises(SpoolError):
        spool.new_message()


def test_close_finishes_pending_commits(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()

    async def main() -> MessageWriter:
        writer = spool.new_message()
        writer.write(b"in flight")
        task = asyncio.create_task(writer.commit(envelope()))
        await asyncio.sleep(0)  # submitted; its waiter is now cancelled
        task.cancel()
        spool.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        return writer

    writer = asyncio.run(main())
    with Spool.open_readonly(tmp_path) as reader:
        # A cancelled waiter does not undo the commit: a duplicate is possible, a loss is not.
        assert [m.queue_id for m in reader.list()] == [writer.queue_id]


def test_writer_misuse_is_a_bug(spool: Spool) -> None:
    writer = spool.new_message()
    asyncio.run(writer.commit(envelope()))
    writer.abort()  # no effect once committed
    assert spool.get(writer.queue_id) is not None
    assert writer.size == 0
    with pytest.raises(RuntimeError):
        writer.write(b"x")
    with pytest.raises(RuntimeError):
        asyncio.run(writer.commit(envelope()))


def test_queue_ids_unique_and_sortable() -> None:
    source = QueueIdSource()
    ids = [source.next() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert all(is_queue_id(q) and len(q) == 14 for q in ids)
    later = QueueIdSource().next()
    assert later > ids[-1][:10]


def test_spool_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Spool(tmp_path, sync="never")
    with pytest.raises(ValueError):
        Spool(tmp_path, max_batch=0)
    with pytest.raises(SpoolError):
        Spool(tmp_path).list()


def test_auto_picks_syncfs_on_linux(tmp_path: Path) -> None:
    expected = "syncfs" if os.uname().sysname == "Linux" else "fsync"
    assert Spool(tmp_path).sync == expected


def test_failed_commit_raises_and_removes_file(spool: Spool) -> None:
    writer = spool.new_message()
    writer.write(b"doomed")
    # A real index failure: another connection takes the queue ID first.
    with sqlite3.connect(spool.data_dir / "spool.sqlite3") as conn:
        conn.execute(
            "INSERT INTO message (queue_id, size, envelope) VALUES (?, 0, '{}')", (writer.queue_id,)
        )
    conn.close()
    with pytest.raises(SpoolError, match=writer.queue_id):
        asyncio.run(writer.commit(envelope()))
    assert message_files(spool.data_dir) == set()
    assert spool.stats.failed == 1
    with pytest.raises(SpoolError):  # the message is gone; the session answers 451
        writer.write(b"more")
    assert asyncio.run(queue(spool, b"the next one is fine"))


def test_open_failures_are_spool_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(SpoolError):
        Spool(tmp_path / "file").open()
    with Spool(tmp_path / "data") as spool:
        spool.open()
        with pytest.raises(SpoolError, match="already open"):
            spool.open()
