"""What a server process tree costs: CPU seconds and memory, read from /proc.

A server is measured as its whole process tree (Postfix's master and every daemon it
started), not only the process the runner started. CPU counts what the live processes
used plus what their exited children used (``cutime``/``cstime``, added to a parent when it
reaps a child), so an smtpd that exited during the run is still counted. Memory is sampled:
the sum of RSS over the tree (which counts shared pages once per process) and the sum of
PSS (each shared page divided among the processes sharing it, so the sum is what the tree
really holds).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    # The command name is in parentheses and may hold spaces: split after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def tree(root: int) -> list[int]:
    """``root`` and every live descendant (any depth)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            parent = int(_stat_fields(int(entry.name))[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU of the tree, including its reaped children."""
    total = 0
    for pid in tree(root):
        with contextlib.suppress(OSError, IndexError):
            fields = _stat_fields(pid)
            # utime, stime, cutime, cstime: fields 14-17 of stat(5), 11-14 after the name.
            total += sum(int(value) for value in fields[11:15])
    return total / TICKS


@dataclass
class Memory:
    rss_bytes: int = 0
    pss_bytes: int = 0
    processes: int = 0


def memory(root: int) -> Memory:
    """RSS and PSS summed over the tree, now."""
    found = Memory()
    for pid in tree(root):
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            for line in text.splitlines():
                if line.startswith("Rss:"):
                    found.rss_bytes += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    found.pss_bytes += int(line.split()[1]) * 1024
            found.processes += 1
    return found


class PeakSampler:
    """Samples a tree's memory in a thread; ``peak`` is the largest sum seen."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root = root
        self.interval = interval
        self.peak = Memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        now = memory(self.root)
        if now.rss_bytes > self.peak.rss_bytes:
            self.peak.rss_bytes = now.rss_bytes
        if now.pss_bytes > self.peak.pss_bytes:
            self.peak.pss_bytes = now.pss_bytes
        self.peak.processes = max(self.peak.processes, now.processes)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)
