"""What the HTTP service remembers on a real ``hato serve``: the dashboard's counts
(``/api/v1/activity``) survive a restart, rebuilt from the event log; the live event
stream (httpx streaming) numbers its events and a client reconnecting with
``Last-Event-ID`` gets the events it missed."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess


@pytest.fixture(scope="module")
def server(module_hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    return module_hato_factory("webactivity")


@pytest.fixture(scope="module")
def token(server: HatoProcess) -> dict[str, str]:
    made = server.cli("web", "token", "add", "activity-reader", "--read-only")
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


def _client(server: HatoProcess, token: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", headers=token, timeout=10)


def _send(server: HatoProcess, subject: str) -> str:
    """Send one message; its queue ID once the server has queued it."""
    message = f"From: a@example.org\r\nTo: b@{server.hostname}\r\nSubject: {subject}\r\n"
    message += f"Message-ID: <{subject}@example.org>\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail("a@example.org", [f"b@{server.hostname}"], message)
    queued = server.wait_for_event("queued", message_id=f"<{subject}@example.org>")
    return str(queued["queue_id"])


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Each server-sent event of a stream as {"id", "event", "data"}; comments skipped."""
    fields: dict[str, Any] = {}
    for line in lines:
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value


def _until_queued(events: Iterator[dict[str, Any]], queue_ids: set[str]) -> list[dict[str, Any]]:
    """The events up to the ``queued`` ones of every queue ID in ``queue_ids``."""
    seen: list[dict[str, Any]] = []
    waiting = set(queue_ids)
    for event in events:
        seen.append(event)
        if event.get("event") == "queued":
            waiting.discard(event["data"]["queue_id"])
        if not waiting:
            return seen
    pytest.fail(f"the stream ended before {waiting} were queued")


def test_a_reconnect_with_last_event_id_gets_what_it_missed(
    server: HatoProcess, token: dict[str, str]
) -> None:
    with _client(server, token) as client:
        with client.stream("GET", "/api/v1/events") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith(":")  # open before the mail
            first = _send(server, "resume-first")
            seen = _until_queued(_events(lines), {first})
        last_id = seen[-1]["id"]
        assert all(e["id"].isdigit() for e in seen)
        # Disconnected: two messages arrive meanwhile.
        missed = {_send(server, "resume-second"), _send(server, "resume-third")}
        resumed = {"Last-Event-ID": last_id}
        with client.stream("GET", "/api/v1/events", headers=resumed) as stream:
            replayed = _until_queued(_events(stream.iter_lines()), missed)
        assert all(e["event"] != "missed" for e in replayed)
        ids = [int(e["id"]) for e in replayed]
        assert ids == sorted(ids) and ids[0] > int(last_id)
        # Nothing seen before the disconnect comes again.
        assert ("queued", first) not in [(e["event"], e["data"].get("queue_id")) for e in replayed]

        # An id the buffer cannot reach back to (an older run's): what it holds, and a notice.
        with client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": "1"}) as stream:
            events = _events(stream.iter_lines())
            notice = next(events)
            assert notice["event"] == "missed" and notice["data"]["missed"] is None
            assert notice["data"]["replayed"] >= 3
            _until_queued(events, {first, *missed})

        bad = client.get("/api/v1/events", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]


def _activity(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/api/v1/activity", params={"minutes": 60})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_dashboard_counts_survive_a_restart(server: HatoProcess, token: dict[str, str]) -> None:
    for n in range(2):
        _send(server, f"history-{n}")
    # Every message so far: this module's (received counts messages).
    received = len(server.events("queued"))
    with _client(server, token) as client:
        before = server.poll(
            lambda: (a := _activity(client))["totals"]["received"] == received and a,
            timeout=10,
            what="the live counts",
        )
    server.restart()
    with _client(server, token) as client:
        after = server.poll(
            lambda: (a := _activity(client))["totals"]["received"] == received and a,
            timeout=20,
            what="the counts rebuilt from the event log",
        )
        restarted = server.events("server_started")[-1]["ts"]
        assert after["since"] < restarted  # the day reaches back before the restart
        assert "events of the day before start" in after["history"]
        assert after["totals"]["deferred"] >= before["totals"]["deferred"]
        # New mail is counted on top, once.
        _send(server, "history-after")
        server.poll(
            lambda: _activity(client)["totals"]["received"] == received + 1,
            timeout=10,
            what="the new message counted",
        )
        assert client.get("/api/v1/activity", params={"minutes": 0}).status_code == 400
