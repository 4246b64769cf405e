"""The recorder's batches: sessions written whole when they end, or so far while open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hato.events import Connected, Disconnected, Queued, TlsStarted
from hato.trace import PARTIAL_AFTER, PARTIAL_LINES, Recorder, TraceStore, TraceVersionError

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def connect(recorder: Recorder, session: str, ts: float) -> None:
    recorder.event(
        ts, Connected(session=session, client_ip="192.0.2.9", client_port=2500, listener="l")
    )


def queue(recorder: Recorder, session: str, queue_id: str, ts: float) -> None:
    recorder.event(
        ts,
        Queued(
            session=session,
            queue_id=queue_id,
            size=1,
            reverse_path="a@example.org",
            recipients=("b@example.net",),
            client_ip="192.0.2.9",
        ),
    )


def disconnect(recorder: Recorder, session: str, ts: float) -> None:
    recorder.event(
        ts,
        Disconnected(
            session=session,
            client_ip="192.0.2.9",
            messages=1,
            recipients=1,
            errors=0,
            seconds=ts - T0,
            reason="client quit",
        ),
    )


def said(store: TraceStore, queue_id: str) -> list[str]:
    story = store.story(queue_id)
    assert story is not None and story["steps"][0]["kind"] == "session"
    return [f"{line['direction']}: {line['text']}" for line in story["steps"][0]["transcript"]]


def test_a_session_that_queued_is_written_so_far_and_the_rest_appended(tmp_path: Path) -> None:
    clock = Clock()
    recorder = Recorder(tmp_path / "trace.sqlite3", retention=86400, clock=clock)
    recorder.open_store()
    connect(recorder, "s1", T0)
    recorder.session_lines("s1", [("S", "220 hi"), ("C", "EHLO c")], T0 + 0.1)
    queue(recorder, "s1", "Q1", T0 + 0.2)
    recorder.session_lines("s1", [("S", "250 2.0.0 Ok: queued as Q1")], T0 + 0.2)
    recorder.write_pending()
    with TraceStore(tmp_path / "trace.sqlite3", readonly=True) as store:
        assert said(store, "Q1") == ["S: 220 hi", "C: EHLO c", "S: 250 2.0.0 Ok: queued as Q1"]
        assert store.story("Q1")["steps"][0]["ended"] is None  # type: ignore[index]

    recorder.event(
        T0 + 0.3, TlsStarted(session="s1", version="TLSv1.3", cipher="X", implicit=False)
    )
    recorder.session_lines("s1", [("C", "QUIT"), ("S", "221 Bye")], T0 + 0.4)
    disconnect(recorder, "s1", T0 + 0.4)
    recorder.write_pending()
    with TraceStore(tmp_path / "trace.sqlite3", readonly=True) as store:
        assert said(store, "Q1")[-2:] == ["C: QUIT", "S: 221 Bye"]
        session = store.story("Q1")["steps"][0]  # type: ignore[index]
        assert session["ended"] == T0 + 0.4 and session["end_reason"] == "client quit"
        assert [e["event"] for e in session["events"]] == ["tls_started"]


def test_an_open_session_waits_until_its_lines_are_old_or_the_recorder_closes(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "trace.sqlite3"
    recorder = Recorder(path, retention=86400, clock=clock)
    recorder.open_store()
    connect(recorder, "s1", T0)
    recorder.session_lines("s1", [("S", "220 hi")], T0)
    recorder.write_pending()
    count = "SELECT count(*) FROM sessions"
    assert sqlite3.connect(path).execute(count).fetchone() == (0,)  # kept in memory
    clock.now = T0 + PARTIAL_AFTER
    recorder.write_pending()
    assert sqlite3.connect(path).execute(count).fetchone() == (1,)
    recorder.session_lines("s1", [("C", "NOOP")], T0 + PARTIAL_AFTER)
    recorder.write_pending(everything=True)  # what close() does last
    row = sqlite3.connect(path).execute("SELECT transcript, ended FROM sessions").fetchone()
    assert row[0].count("\n") == 4 and row[1] is None


def test_an_open_session_with_many_lines_waiting_is_written_without_waiting(
    tmp_path: Path,
) -> None:
    # A client pipelining thousands of commands must not pile its transcript up in memory.
    clock = Clock()
    path = tmp_path / "trace.sqlite3"
    recorder = Recorder(path, retention=86400, clock=clock)
    recorder.open_store()
    connect(recorder, "s1", T0)
    for _ in range(PARTIAL_LINES // 1000 - 1):
        recorder.session_lines("s1", [("C", "NOOP"), ("S", "250 2.0.0 Ok")] * 500, T0)
    recorder.session_lines("s1", [("C", "NOOP")] * 999, T0)
    recorder.write_pending()
    count = "SELECT count(*) FROM sessions"
    assert sqlite3.connect(path).execute(count).fetchone() == (0,)  # one line short
    recorder.session_lines("s1", [("C", "NOOP")], T0)
    recorder.write_pending()
    row = sqlite3.connect(path).execute("SELECT transcript FROM sessions").fetchone()
    assert row[0].count("\nC") + row[0].count("\nS") == PARTIAL_LINES


def test_a_line_feed_inside_a_line_cannot_forge_a_line(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "trace.sqlite3", retention=86400)
    recorder.open_store()
    connect(recorder, "s1", T0)
    forged = "MAIL FROM:<a@example.org>\nS250 all fine"
    recorder.session_lines("s1", [("C", forged), ("S", "501 5.5.2 no")], T0 + 0.1)
    queue(recorder, "s1", "Q1", T0 + 0.2)
    recorder.session_lines("s1", [("S", "250 2.0.0 Ok: queued as Q1")], T0 + 0.2)
    disconnect(recorder, "s1", T0 + 0.3)
    recorder.write_pending()
    with TraceStore(tmp_path / "trace.sqlite3", readonly=True) as store:
        assert said(store, "Q1") == [
            f"C: {forged}",
            "S: 501 5.5.2 no",
            "S: 250 2.0.0 Ok: queued as Q1",
        ]


def test_a_file_of_another_layout_is_replaced_and_refused_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "trace.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE lines (session INTEGER, ts REAL, direction TEXT, text TEXT)")
    with pytest.raises(TraceVersionError):
        TraceStore(path, readonly=True)
    TraceStore(path).close()
    with TraceStore(path, readonly=True) as store:
        assert store.find() == []
    tables = {name for (name,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "lines" not in tables
