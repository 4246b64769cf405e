"""The recorder and its store with real SQLite files: what goes in comes out as a story."""

from __future__ import annotations

from pathlib import Path

from hato.events import (
    Connected,
    Deferred,
    Delivered,
    Disconnected,
    HeloReceived,
    Queued,
    Rejected,
    ReportQueued,
)
from hato.trace import Attempt, Recorder, TraceStore, render_story, render_summaries

T0 = 1_800_000_000.0


def record(path: Path, *, retention: float = 86400.0, now: float = T0 + 100) -> Recorder:
    # Fed before it starts, so one batch writes everything and then prunes once.
    recorder = Recorder(path, retention=retention, clock=lambda: now)
    ev = recorder.event
    ev(T0, Connected(session="s1", client_ip="192.0.2.7", client_port=4000, listener="l"))
    ev(T0 + 0.1, HeloReceived(session="s1", helo="client", extended=True))  # not kept
    recorder.session_lines("s1", [("S", "220 hi"), ("C", "EHLO client")], T0 + 0.1)
    recorder.session_lines("s1", [("C", "RCPT TO:<x@y>"), ("S", "550 no")], T0 + 0.2)
    ev(
        T0 + 0.15,
        Rejected(session="s1", client_ip="192.0.2.7", command="RCPT", reply="550 no", reason="why"),
    )
    recorder.session_lines("s1", [("S", "250 2.0.0 Ok: queued as Q1")], T0 + 0.3)
    ev(
        T0 + 0.3,
        Queued(
            session="s1",
            queue_id="Q1",
            size=10,
            reverse_path="a@example.org",
            recipients=("b@example.net",),
            client_ip="192.0.2.7",
            message_id="<m@example.org>",
        ),
    )
    ev(
        T0 + 0.4,
        Disconnected(
            session="s1",
            client_ip="",
            messages=1,
            recipients=1,
            errors=1,
            seconds=0.4,
            reason="client closed",
        ),
    )
    recorder.attempt(
        Attempt(
            queue_id="Q1",
            domain="example.net",
            host="mx.example.net",
            address="198.51.100.1",
            port=25,
            started=T0 + 1,
            tls="",
            reused=False,
            outcome="not taken: busy",
            lines=((T0 + 1.1, "S", "451 busy"),),
        )
    )
    ev(
        T0 + 1.2,
        Deferred(
            queue_id="Q1",
            recipient="b@example.net",
            status="4.3.0",
            detail="busy",
            attempts=1,
            next_attempt=T0 + 60,
        ),
    )
    ev(
        T0 + 60,
        Delivered(
            queue_id="Q1",
            recipient="b@example.net",
            mailbox="b@example.net",
            status="2.0.0",
            detail="ok",
        ),
    )
    ev(
        T0 + 61,
        Queued(
            session="",
            queue_id="R1",
            size=5,
            reverse_path="",
            recipients=("a@example.org",),
            client_ip="",
        ),
    )
    ev(
        T0 + 61,
        ReportQueued(
            queue_id="Q1",
            report_id="R1",
            action="delivered",
            recipients=("b@example.net",),
            sender="a@example.org",
        ),
    )
    recorder.start()
    recorder.close()
    return recorder


def test_a_story_comes_back_in_time_order(tmp_path: Path) -> None:
    record(tmp_path / "trace.sqlite3")
    with TraceStore(tmp_path / "trace.sqlite3", readonly=True) as store:
        story = store.story("Q1")
        assert story is not None
        assert [s.get("event", s["kind"]) for s in story["steps"]] == [
            "session",
            "queued",
            "attempt",
            "deferred",
            "delivered",
            "report",
        ]
        session = story["steps"][0]
        assert session["client"] == "[192.0.2.7]:4000" and session["end_reason"] == "client closed"
        assert [line["text"] for line in session["transcript"]][-1] == "250 2.0.0 Ok: queued as Q1"
        assert [e["event"] for e in session["events"]] == ["reject"]  # HELO is in the lines
        assert story["status"] == "delivered"
        assert story["reports"] == [{"queue_id": "R1", "action": "delivered"}]
        assert store.summary("R1") is not None and store.story("R1")["report_of"] == "Q1"  # type: ignore[index]
        text = render_story(story)
        # The refusal is shown right after the reply it explains.
        assert "S: 550 no\n" in text and text.index("S: 550 no") < text.index("refused RCPT: why")
        assert "next attempt at " in text and "(hato trace R1)" in text
        assert store.story("nothing") is None


def test_searches(tmp_path: Path) -> None:
    record(tmp_path / "trace.sqlite3")
    with TraceStore(tmp_path / "trace.sqlite3", readonly=True) as store:
        assert [s.queue_id for s in store.find(message_id="m@example.org")] == ["Q1"]
        assert [s.queue_id for s in store.find(message_id="<m@example.org>")] == ["Q1"]
        assert [s.queue_id for s in store.find(sender="A@EXAMPLE")] == ["Q1"]
        assert [s.queue_id for s in store.find(recipient="a@example.org")] == ["R1"]
        assert [s.queue_id for s in store.find(since=T0 + 30)] == ["R1"]
        assert store.find(sender="nobody") == []
        assert "report about Q1" in render_summaries(store.find())


def test_prune_keeps_only_what_is_young_enough(tmp_path: Path) -> None:
    path = tmp_path / "trace.sqlite3"
    # "now" is T0 + 30.5 with a retention of 30 s: everything before T0 + 0.5 goes.
    record(path, retention=30.0, now=T0 + 30.5)
    with TraceStore(path, readonly=True) as store:
        story = store.story("Q1")
        assert story is not None
        assert "sender" not in story  # its queueing (T0 + 0.3) is gone...
        assert [s.get("event", s["kind"]) for s in story["steps"]] == [
            "attempt",
            "deferred",
            "delivered",
            "report",
        ]  # ...its later steps are not
        assert "older than the trace" in render_story(story)


def test_an_overloaded_recorder_drops_instead_of_growing(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "trace.sqlite3", retention=10)
    for _ in range(100_001):  # not started: nothing is written meanwhile
        recorder.session_lines("s", [("C", "NOOP")], T0)
    assert recorder.dropped == 1
