"""The dashboard's per-minute counts for the last day: live from the event stream, and at
start rebuilt from the tail of the event log file, so a restart keeps the day.

Live, ``Activity.event`` is one more listener of the event log, called on the emitting
thread: a lock, a dict lookup and an increment. At start ``load_history`` reads the JSON
lines of ``log.events_file`` in a thread of its own, only the tail that covers the last
day and never more than ``HISTORY_LIMIT`` bytes of it, and only events older than the
listener (``started``), so nothing is counted twice. Received counts messages;
delivered, deferred and bounced count recipients (each outcome is an event per recipient).
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from hato.events import (
    Connected,
    Deferred,
    Delivered,
    DeliveryFailed,
    OpsEvent,
    Queued,
    Rejected,
    TlsStarted,
)

__all__ = [
    "DAY_MINUTES",
    "HISTORY_LIMIT",
    "MAX_REASONS_PER_MINUTE",
    "SERIES",
    "Activity",
    "Window",
    "day_tail",
]

# One bucket per minute for a day: the dashboard's longest window.
DAY_MINUTES = 24 * 60
# Distinct refusal reasons kept per minute: a client cannot grow the counts without end.
MAX_REASONS_PER_MINUTE = 50
# The most of the event log read at start: a busy day's log can be gigabytes, and reading
# it shares the interpreter with SMTP; past this the dashboard's day starts later.
HISTORY_LIMIT = 64 * 1024 * 1024
# How far the search for the day's first line steps back through the file at a time.
_STEP = 1024 * 1024
SERIES = ("received", "delivered", "deferred", "bounced")
_CONNECTIONS, _TLS_IN = 4, 5
_INDEX = {
    Queued.name: 0,
    Delivered.name: 1,
    Deferred.name: 2,
    DeliveryFailed.name: 3,
    Connected.name: _CONNECTIONS,
    TlsStarted.name: _TLS_IN,
}
# The start of each line as EventLog writes it: the time and the event's name, read without
# parsing the whole line (only refusals are parsed, for their reason and rule).
_HEAD = re.compile(rb'\{"ts": ([0-9.]+), "event": "([a-z_]+)"')


def _reason(reason: str, rule: str) -> str:
    return reason + (f" (rule {rule})" if rule else "")


class Activity:
    """Per-minute counts for the last day: the events since start, and what
    ``load_history`` found of the day before it in the event log."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started = clock()
        # The earliest moment the counts cover: ``started``, earlier once history is read.
        self.since = self.started
        self.history = "not read"
        self._lock = threading.Lock()
        # minute -> [received, delivered, deferred, bounced, connections, TLS sessions]
        self._minutes: dict[int, list[int]] = {}
        self._reasons: dict[int, collections.Counter[str]] = {}

    def _bucket(self, minute: int) -> list[int]:
        counts = self._minutes.get(minute)
        if counts is None:
            counts = self._minutes[minute] = [0] * 6
            for old in [m for m in self._minutes if m <= minute - DAY_MINUTES]:
                del self._minutes[old]
                self._reasons.pop(old, None)
        return counts

    def event(self, ts: float, event: OpsEvent) -> None:
        index = _INDEX.get(event.name)
        if index is not None:
            with self._lock:
                self._bucket(int(ts // 60))[index] += 1
        elif isinstance(event, Rejected):
            self._refused(int(ts // 60), _reason(event.reason, event.rule))

    def _refused(self, minute: int, reason: str) -> None:
        with self._lock:
            self._bucket(minute)
            counts = self._reasons.setdefault(minute, collections.Counter())
            if reason in counts or len(counts) < MAX_REASONS_PER_MINUTE:
                counts[reason] += 1

    def replay(self, records: Iterable[tuple[float, str, bytes]]) -> int:
        """Count (time, event name, JSON line) from the log made before ``started``, within
        the day before it; returns how many were counted."""
        first = self.started - DAY_MINUTES * 60
        counted = 0
        earliest = self.started
        for ts, name, line in records:
            if not first <= ts < self.started:
                continue
            index = _INDEX.get(name)
            if index is not None:
                with self._lock:
                    self._bucket(int(ts // 60))[index] += 1
            elif name == Rejected.name:
                record = _parsed(line)
                if record is None:
                    continue
                self._refused(int(ts // 60), _reason(record["reason"], record["rule"]))
            else:
                continue
            counted += 1
            earliest = min(earliest, ts)
        self.since = min(self.since, earliest)
        return counted

    def load_history(self, path: Path) -> None:
        """Rebuild the day before start from the event log at ``path`` (blocking: run it
        in a thread). A missing or unreadable file leaves the counts to the live events."""
        try:
            with path.open("rb") as log:
                counted = self.replay(day_tail(log, self.started - DAY_MINUTES * 60))
        except OSError as error:
            self.history = f"the event log could not be read: {error}"
            return
        self.history = f"{counted} events of the day before start, from {path}"

    def load_history_in_thread(self, path: Path | None) -> threading.Thread | None:
        if path is None:
            self.history = "no event log (log.events_file)"
            return None
        thread = threading.Thread(
            target=self.load_history, args=(path,), name="hato-dashboard-history", daemon=True
        )
        thread.start()
        return thread

    def window(self, minutes: int) -> Window:
        now_minute = int(self._clock() // 60)
        first = now_minute - minutes + 1
        with self._lock:
            rows = [self._minutes.get(m, [0] * 6) for m in range(first, now_minute + 1)]
            reasons: collections.Counter[str] = collections.Counter()
            for minute, counts in self._reasons.items():
                if minute >= first:
                    reasons.update(counts)
        return Window(
            minutes=minutes,
            first=first * 60.0,
            series={name: [row[i] for row in rows] for i, name in enumerate(SERIES)},
            connections=sum(row[_CONNECTIONS] for row in rows),
            tls_sessions=sum(row[_TLS_IN] for row in rows),
            refusals=reasons.most_common(10),
        )


def _parsed(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    reason, rule = record.get("reason"), record.get("rule") or ""
    if not isinstance(reason, str) or not isinstance(rule, str):
        return None
    return record


def _head(line: bytes) -> tuple[float, str] | None:
    found = _HEAD.match(line)
    if found is None:
        return None
    try:
        return float(found[1]), found[2].decode("ascii")
    except ValueError:
        return None


def _time_after(log: BinaryIO, offset: int) -> float | None:
    """The time of the first whole line at or after ``offset``, or None (none there)."""
    log.seek(offset)
    if offset:
        log.readline()  # most likely the rest of a line cut by the offset
    head = _head(log.readline())
    return None if head is None else head[0]


def day_tail(
    log: BinaryIO, since: float, *, limit: int = HISTORY_LIMIT
) -> Iterator[tuple[float, str, bytes]]:
    """(time, event name, line) of the log's lines from ``since`` on, read forward from
    the first line at or before it, found by stepping back from the end; at most ``limit``
    bytes from the end are read, whatever the day holds."""
    size = log.seek(0, 2)
    floor = max(0, size - limit)
    start = size
    while start > floor:
        start = max(floor, start - _STEP)
        ts = _time_after(log, start)
        if ts is not None and ts < since:
            break
    log.seek(start)
    if start:
        log.readline()
    for line in log:
        head = _head(line)
        if head is not None and head[0] >= since:
            yield head[0], head[1], line


@dataclass(frozen=True, slots=True)
class Window:
    minutes: int
    first: float  # unix time of the first minute
    series: dict[str, list[int]]
    connections: int
    tls_sessions: int
    refusals: list[tuple[str, int]]

    def total(self, name: str) -> int:
        return sum(self.series[name])

    @property
    def tls_in(self) -> float | None:
        if not self.connections:
            return None
        return min(1.0, self.tls_sessions / self.connections)
