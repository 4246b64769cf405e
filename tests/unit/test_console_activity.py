"""The dashboard's per-minute counts (web._console.Activity) over a clock the test moves."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from hato.events import Connected, Deferred, EventLog, Queued, Rejected, TlsStarted
from hato.web import event_record
from hato.web._activity import DAY_MINUTES, MAX_REASONS_PER_MINUTE, Activity, day_tail


def _queued(n: int) -> Queued:
    return Queued(
        session="s",
        queue_id=f"Q{n}",
        size=10,
        reverse_path="a@b",
        recipients=("c@d",),
        client_ip="127.0.0.1",
    )


def _refused(reason: str, rule: str = "") -> Rejected:
    return Rejected(
        session="s", client_ip="192.0.2.1", command="RCPT", reply="550", reason=reason, rule=rule
    )


def test_counts_per_minute_and_windows() -> None:
    now = [1_000_000 * 60.0]
    activity = Activity(clock=lambda: now[0])
    start = now[0]
    activity.event(start - 120, _queued(1))  # two minutes ago
    activity.event(start, _queued(2))
    activity.event(
        start,
        Deferred(
            queue_id="Q2",
            recipient="c@d",
            status="4.4.1",
            detail="x",
            attempts=1,
            next_attempt=start + 300,
        ),
    )
    activity.event(start, _refused("relay access denied", "relay"))
    hour = activity.window(60)
    assert hour.series["received"][-1] == 1 and hour.series["received"][-3] == 1
    assert hour.total("received") == 2 and hour.total("deferred") == 1
    assert hour.refusals == [("relay access denied (rule relay)", 1)]
    assert activity.window(1).total("received") == 1

    # A day later the old minutes are gone, from the windows and from memory.
    now[0] = start + DAY_MINUTES * 60
    activity.event(now[0], _queued(3))
    day = activity.window(DAY_MINUTES)
    assert day.total("received") == 1 and day.refusals == []


def test_tls_share_and_the_cap_on_reasons() -> None:
    now = 60.0 * 5000
    activity = Activity(clock=lambda: now)
    assert activity.window(60).tls_in is None
    for _ in range(4):
        activity.event(
            now, Connected(session="s", client_ip="127.0.0.1", client_port=1, listener="l")
        )
    activity.event(now, TlsStarted(session="s", version="TLSv1.3", cipher="x", implicit=False))
    assert activity.window(60).tls_in == 0.25
    for n in range(MAX_REASONS_PER_MINUTE + 20):
        activity.event(now, _refused(f"reason {n}"))
    activity.event(now, _refused("reason 0"))
    top = dict(activity.window(60).refusals)
    assert top["reason 0"] == 2 and len(top) == 10


def test_the_day_before_start_is_rebuilt_from_the_event_log(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(json_path=path)
    written = time.time()
    for n in range(3):
        log.emit(_queued(n))
    log.emit(_refused("relay access denied", "relay"))
    log.close()
    # The server starts again ten minutes later; the log's events are in its last hour.
    now = [written + 600]
    activity = Activity(clock=lambda: now[0])
    activity.load_history(path)
    hour = activity.window(60)
    assert hour.total("received") == 3
    assert hour.refusals == [("relay access denied (rule relay)", 1)]
    assert activity.since < now[0] - 590 and "4 events" in activity.history
    # What the live listener counts after start is not in the replay, and is counted once.
    activity.event(now[0], _queued(9))
    assert activity.window(60).total("received") == 4


def test_only_the_day_before_start_and_only_events_before_it_are_replayed(tmp_path: Path) -> None:
    start = 2_000_000_000.0
    day = DAY_MINUTES * 60
    times = [start - day - 60, start - day + 60, start - 30, start + 5]
    lines = [
        json.dumps(event_record(ts, _queued(n)), ensure_ascii=False).encode() + b"\n"
        for n, ts in enumerate(times)
    ]
    # Enough older lines before them that the search steps back through the file.
    filler = json.dumps(event_record(start - 3 * day, _queued(0))).encode() + b"\n"
    data = filler * (3 * 1024 * 1024 // len(filler)) + b"".join(lines)
    activity = Activity(clock=lambda: start)
    counted = activity.replay(day_tail(io.BytesIO(data), start - day))
    assert counted == 2  # a day and a minute ago: no; a day less a minute, and 30 s: yes
    assert activity.window(DAY_MINUTES).total("received") == 2
    # A limit on what is read: only the last lines' bytes.
    tail = list(day_tail(io.BytesIO(data), 0.0, limit=len(b"".join(lines)) + 10))
    assert [ts for ts, _, _ in tail] == times


def test_a_missing_event_log_leaves_the_counts_to_the_live_events(tmp_path: Path) -> None:
    activity = Activity()
    activity.load_history(tmp_path / "none.jsonl")
    assert "could not be read" in activity.history
    assert activity.window(60).total("received") == 0
