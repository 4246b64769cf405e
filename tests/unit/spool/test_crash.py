"""kill -9 a real process that commits messages: every acknowledged one must survive, whole."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hato.spool import Spool

HELPER = Path(__file__).with_name("crash_writer.py")
# Enough acknowledged messages that the kill lands mid-DATA and mid-commit for some sessions.
ACKNOWLEDGED_BEFORE_KILL = 300


def read_acknowledged(proc: subprocess.Popen[str], count: int) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while len(lines) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    return lines


@pytest.mark.parametrize("sync", ["syncfs", "fsync"])
def test_kill_9_loses_no_acknowledged_message(tmp_path: Path, sync: str) -> None:
    with subprocess.Popen(
        [sys.executable, str(HELPER), str(tmp_path), sync, "8"],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            lines = read_acknowledged(proc, ACKNOWLEDGED_BEFORE_KILL)
            assert len(lines) == ACKNOWLEDGED_BEFORE_KILL, "the writer stopped early"
            with Spool.open_readonly(tmp_path) as reader:  # another process, while it writes
                assert len(reader.list()) >= len(lines)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            rest, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # A line cut short by the kill was never a complete acknowledgement.
    lines += [line for line in rest.splitlines(keepends=True) if line.endswith("\n")]

    acknowledged = {line.split()[0] for line in lines}
    with Spool.open_readonly(tmp_path) as reader:  # the CLI, before the server restarts
        assert acknowledged <= {m.queue_id for m in reader.list()}

    with Spool(tmp_path, sync=sync) as spool:
        report = spool.open()
        assert report.broken == ()
        queued = {m.queue_id: m for m in spool.list()}
        for line in lines:
            queue_id, digest, size = line.split()
            message = queued[queue_id]
            assert message.size == int(size)
            with spool.open_data(queue_id) as f:
                assert hashlib.sha256(f.read()).hexdigest() == digest
        on_disk = {p.name for p in (tmp_path / "spool" / "msg").glob("*/*")}
        assert on_disk == set(queued), "a file without a row, or a row without a file"
        print(f"\n{sync}: {len(lines)} acknowledged, {len(queued)} queued, report {report}")
