"""The HTTP service of a real ``hato serve``: access control, login, the queue API (checked
against ``hato queue list --json``), accounts, and the live event stream."""

from __future__ import annotations

import json
import re
import smtplib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

# Two failed logins are allowed, the third is banned; no delay, so the test is quick.
OPTIONS = ("auth.failure_delay=0", "auth.max_failures=2")


@pytest.fixture(scope="module")
def server(module_hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    return module_hato_factory("web", *OPTIONS)


@pytest.fixture(scope="module")
def base(server: HatoProcess) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def _token(server: HatoProcess, name: str, *read_only: str) -> str:
    made = server.cli("web", "token", "add", name, *read_only)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture(scope="module")
def admin(server: HatoProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(server, 'test-admin')}"}


@pytest.fixture(scope="module")
def reader(server: HatoProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(server, 'test-reader', '--read-only')}"}


def _send(server: HatoProcess, sender: str, recipient: str, subject: str) -> None:
    message = f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail(sender, [recipient], message)


def _cli_queue(server: HatoProcess) -> dict[str, dict[str, Any]]:
    listed = server.cli("queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {m["queue_id"]: m for m in json.loads(listed.stdout)}


def _wait_deferred(server: HatoProcess, count: int) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        queue = _cli_queue(server)
        deferred = {
            q: m for q, m in queue.items() if all(r["state"] == "deferred" for r in m["recipients"])
        }
        if len(deferred) >= count:
            return queue
        assert time.monotonic() < deadline, queue
        time.sleep(0.1)


def test_access_needs_credentials_and_the_right_role(
    base: str, admin: dict[str, str], reader: dict[str, str]
) -> None:
    with httpx.Client(base_url=base) as client:
        anonymous = client.get("/api/v1/queue")
        assert anonymous.status_code == 401
        assert "error" in anonymous.json()
        bad = client.get("/api/v1/queue", headers={"Authorization": "Bearer hato_wrong"})
        assert bad.status_code == 401
        assert client.get("/api/v1/queue", headers=reader).status_code == 200
        refused = client.post("/api/v1/queue/flush", headers=reader, json={"all": True})
        assert refused.status_code == 403
        assert "read-only" in refused.json()["error"]
        done = client.post("/api/v1/queue/flush", headers=admin, json={"all": True})
        assert done.status_code == 200, done.text
        unknown = client.get("/api/v1/nothing-here", headers=admin)
        assert unknown.status_code == 404
        assert unknown.json()["error"].startswith("no such resource")
        document = client.get("/api/v1/openapi.json").json()
        assert "/api/v1/queue" in document["paths"]
        assert document["openapi"].startswith("3.")


def test_bad_input_is_a_4xx_json_error(base: str, admin: dict[str, str]) -> None:
    with httpx.Client(base_url=base, headers=admin) as client:
        cases = [
            client.get("/api/v1/queue", params={"limit": "many"}),
            client.get("/api/v1/queue", params={"state": "lost"}),
            client.get("/api/v1/queue", params={"age": "soon"}),
            client.get("/api/v1/queue/not-an-id"),
            client.post("/api/v1/queue/hold", content=b"{not json"),
            client.post("/api/v1/queue/hold", json={"queue_ids": "x"}),
            client.post("/api/v1/accounts/aliases", json={"source": "a@", "targets": ["b@c"]}),
        ]
        for response in cases:
            assert 400 <= response.status_code < 500, response.text
            assert isinstance(response.json()["error"], str)
        missing = client.get("/api/v1/queue/0000000000ABCD")
        assert missing.status_code in (400, 404)


def test_queue_operations_are_those_of_hato_queue(
    server: HatoProcess, base: str, admin: dict[str, str]
) -> None:
    for index in range(3):
        _send(server, f"sender{index}@example.org", "someone@mx.test.example", f"web {index}")
    queue = _wait_deferred(server, 3)
    with httpx.Client(base_url=base, headers=admin) as client:
        first = client.get("/api/v1/queue", params={"limit": 2}).json()
        assert first["total"] == len(queue)
        assert len(first["messages"]) == 2
        rest = client.get("/api/v1/queue", params={"limit": 2, "offset": first["next_offset"]})
        ids = [m["queue_id"] for m in first["messages"] + rest.json()["messages"]]
        assert sorted(ids) == sorted(queue)
        only = client.get("/api/v1/queue", params={"sender": "sender1@"}).json()
        assert [m["envelope"]["reverse_path"] for m in only["messages"]] == ["sender1@example.org"]
        target = only["messages"][0]["queue_id"]
        assert client.get(f"/api/v1/queue/{target}").json()["state"] == "deferred"

        assert client.post(f"/api/v1/queue/{target}/hold").status_code == 200
        assert _cli_queue(server)[target]["held"] is True
        held = client.get("/api/v1/queue", params={"state": "held"}).json()
        assert [m["queue_id"] for m in held["messages"]] == [target]
        assert client.post(f"/api/v1/queue/{target}/release").status_code == 200
        assert _cli_queue(server)[target]["held"] is False

        before = _cli_queue(server)[target]["recipients"][0]["next_attempt"]
        flushed = client.post("/api/v1/queue/flush", json={"destination": "mx.test.example"})
        assert flushed.json()["scheduled"] >= 3
        assert _cli_queue(server)[target]["recipients"][0]["next_attempt"] != before

        header = client.get(f"/api/v1/messages/{target}/header").json()["header"]
        assert "Subject: web 1\r\n" in header
        story = client.get(f"/api/v1/messages/{target}/story")
        assert story.status_code == 200, story.text
        assert target in json.dumps(story.json())

        assert client.delete(f"/api/v1/queue/{target}").json()["removed"] == 1
        assert target not in _cli_queue(server)
        assert client.delete(f"/api/v1/queue/{target}").status_code == 404


def test_aliases_change_through_the_account_store(
    server: HatoProcess, base: str, admin: dict[str, str]
) -> None:
    with httpx.Client(base_url=base, headers=admin) as client:
        added = client.post(
            "/api/v1/accounts/aliases",
            json={"source": "team@mx.test.example", "targets": ["a@example.org"]},
        )
        assert added.status_code == 201, added.text
        changed = client.put(
            "/api/v1/accounts/aliases/team@mx.test.example", json={"targets": ["b@example.org"]}
        )
        assert changed.json()["targets"] == ["b@example.org"]
        listed = server.cli("alias", "list", "--json")
        assert {"source": "team@mx.test.example", "targets": ["b@example.org"]} in json.loads(
            listed.stdout
        )
        assert client.delete("/api/v1/accounts/aliases/team@mx.test.example").status_code == 200
        assert client.delete("/api/v1/accounts/aliases/team@mx.test.example").status_code == 404
        domains = client.get("/api/v1/accounts/domains").json()["domains"]
        assert "mx.test.example" in [d["domain"] for d in domains]


def test_event_stream_shows_a_message_sent_now(
    server: HatoProcess, base: str, reader: dict[str, str]
) -> None:
    with (
        httpx.Client(base_url=base, headers=reader, timeout=10) as client,
        client.stream("GET", "/api/v1/events") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith(":")  # the stream is open before the message is sent
        _send(server, "live@example.org", "someone@mx.test.example", "live")
        deadline = time.monotonic() + 10
        for line in lines:
            if line.startswith("data: "):
                record = json.loads(line.removeprefix("data: "))
                if record["event"] == "queued" and record["reverse_path"] == "live@example.org":
                    break
            assert time.monotonic() < deadline
        else:
            pytest.fail("the stream ended without the message")


def _admin_password(server: HatoProcess) -> str:
    found = re.search(r"log in as admin with the password (\S+)", server.stderr())
    assert found, server.stderr()
    return found.group(1)


def _login_form(client: httpx.Client) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_login_with_csrf_then_a_session(server: HatoProcess, base: str) -> None:
    with httpx.Client(base_url=base) as client:
        csrf = _login_form(client)
        password = _admin_password(server)
        forged = client.post("/login", data={"username": "admin", "password": password})
        assert forged.status_code == 403
        logged = client.post(
            "/login", data={"username": "admin", "password": password, "csrf": csrf}
        )
        assert logged.status_code == 303, logged.text
        cookie = logged.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        who = client.get("/api/v1/whoami")
        assert who.json()["role"] == "admin"
        assert client.post("/api/v1/queue/flush", json={"all": True}).status_code == 403
        session_csrf = {"X-CSRF-Token": who.json()["csrf"]}
        allowed = client.post("/api/v1/queue/flush", json={"all": True}, headers=session_csrf)
        assert allowed.status_code == 200


def test_failed_logins_are_banned(base: str) -> None:
    # Last in the module: from here on this client address may not log in.
    with httpx.Client(base_url=base) as client:
        statuses = []
        for _ in range(4):
            csrf = _login_form(client)
            form = {"username": "admin", "password": "wrong", "csrf": csrf}
            statuses.append(client.post("/login", data=form).status_code)
        assert statuses[:2] == [401, 401]
        assert statuses[2:] == [429, 429]
