"""``hato trace`` for relayed mail: deferred then delivered, and bounced with its report.

A real ``hato serve`` relays to a scripted next hop (scripted_smtp.py) found through a real
DNS server (tests/dns_server.py); clients are plain ``smtplib``; the trace is read with the
real ``hato trace`` command, as an administrator would.

    d.test  MX 10 mx.d.test  127.0.0.5  the scripted server
"""

from __future__ import annotations

import contextlib
import json
import smtplib
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from scripted_smtp import ACCEPTED, ScriptedSmtp

from dns_server import DnsServer, dns_server_fixture  # noqa: F401

if TYPE_CHECKING:
    from conftest import HatoProcess

SENDER_HOST, HOP_HOST = "127.0.0.2", "127.0.0.5"
BUSY = "451 4.3.0 Mailbox busy, try again later"
UNKNOWN = "550 5.1.1 <nobody@d.test>: user unknown"
BODY_MARK = "the-body-never-goes-into-the-trace"


def _shared_port() -> int:
    """A port free on both loopback addresses (the next hop is reached on relay.port)."""
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind((SENDER_HOST, 0))
            port: int = first.getsockname()[1]
            try:
                stack.enter_context(socket.socket()).bind((HOP_HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no shared port")


@pytest.fixture
def relay(
    dns_server: DnsServer, hato_factory: Callable[..., HatoProcess]
) -> Iterator[Callable[..., tuple[HatoProcess, ScriptedSmtp]]]:
    """Start the next hop (``replies`` as ScriptedSmtp takes them) and a Hato relaying to it."""
    dns_server.add("d.test", "MX", "10 mx.d.test")
    dns_server.add("mx.d.test", "A", HOP_HOST)
    dns_server.add("a.test", "MX", "10 mx.a.test")
    dns_server.add("mx.a.test", "A", SENDER_HOST)
    hops: list[ScriptedSmtp] = []

    def start(**replies: Any) -> tuple[HatoProcess, ScriptedSmtp]:
        port = _shared_port()
        hop = ScriptedSmtp(HOP_HOST, port, hostname="mx.d.test", **replies)
        hop.start()
        hops.append(hop)
        options = [
            f'dns.nameservers=["{dns_server.address}"]',
            f"relay.port={port}",
            "queue.retry_initial=1",
            "queue.retry_max=2",
            'relay.trusted_networks=["127.0.0.0/8"]',
            "relay.session_reuse=0",
        ]
        hato = hato_factory(
            listen=f"{SENDER_HOST}:{port}",
            accept_all=False,
            name="a",
            extra_args=tuple(arg for option in options for arg in ("-o", option)),
        )
        hato.hostname = "mx.a.test"
        hato.start()
        for args in (("domain", "add", "a.test"), ("user", "add", "alice@a.test")):
            done = hato.cli(*args)
            assert done.returncode == 0, done.stderr
        return hato, hop

    yield start
    for hop in hops:
        hop.stop()
        assert not hop.errors, "\n".join(hop.errors)


def send(hato: HatoProcess, recipients: list[str], message_id: str) -> None:
    body = f"Subject: trace me\r\nMessage-ID: {message_id}\r\n\r\n{BODY_MARK}\r\n".encode()
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail("alice@a.test")[0] == 250
        for address in recipients:
            assert client.rcpt(address)[0] == 250
        assert client.data(body)[0] == 250


def trace(hato: HatoProcess, *args: str) -> subprocess.CompletedProcess[str]:
    done = hato.cli("trace", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def story(hato: HatoProcess, what: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The --json story once ``done`` says it is complete (the recorder writes in batches)."""

    def ready() -> dict[str, Any] | None:
        result = hato.cli("trace", what, "--json")
        if result.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(result.stdout)
        return found if done(found) else None

    found: dict[str, Any] = hato.poll(ready, what=f"the trace of {what}")
    return found


def kinds(found: dict[str, Any]) -> list[str]:
    return [step.get("event", step["kind"]) for step in found["steps"]]


def test_trace_of_a_message_deferred_then_delivered(
    relay: Callable[..., tuple[HatoProcess, ScriptedSmtp]],
) -> None:
    hato, _ = relay(replies={"later@d.test": [BUSY, ACCEPTED]})
    send(hato, ["later@d.test"], "<retry@a.test>")
    queue_id = hato.wait_for_event("removed")["queue_id"]

    found = story(hato, queue_id, lambda s: "removed" in kinds(s))
    assert found["status"] == "delivered"
    assert found["message_id"] == "<retry@a.test>"
    assert kinds(found) == [
        "session",
        "queued",
        "attempt",
        "deferred",
        "attempt",
        "delivered",
        "removed",
    ]
    session, _, first, deferred, second, _, _ = found["steps"]
    said = [f"{line['direction']}: {line['text']}" for line in session["transcript"]]
    assert "C: mail FROM:<alice@a.test>" in said
    assert f"S: 250 2.0.0 Ok: queued as {queue_id}" in said
    assert session["client"].startswith("[127.0.0.1]:")
    # Each attempt: where it went and the whole conversation, the refusal included.
    assert (first["host"], first["address"], first["domain"]) == ("mx.d.test", HOP_HOST, "d.test")
    first_lines = [f"{line['direction']}: {line['text']}" for line in first["transcript"]]
    assert first_lines[0].startswith("S: 220 mx.d.test")
    assert "C: RCPT TO:<later@d.test>" in first_lines
    assert f"S: {BUSY}" in first_lines
    assert first["outcome"] == f"not taken: mx.d.test said: {BUSY}"
    assert deferred["data"]["next_attempt"] > deferred["ts"]
    second_lines = [f"{line['direction']}: {line['text']}" for line in second["transcript"]]
    assert "S: 250 2.0.0 Ok: queued" in second_lines and "C: <message data, " in "\n".join(
        second_lines
    )
    assert "delivered 2.0.0" in second["outcome"]

    text = trace(hato, queue_id).stdout
    assert f"Queue ID {queue_id}" in text and "status: delivered" in text
    assert "delivery attempt to mx.d.test [127.0.0.5]" in text
    assert f"S: {BUSY}" in text
    assert "next attempt at " in text
    # By Message-ID, with or without the angle brackets, the same story.
    assert trace(hato, "<retry@a.test>").stdout == text
    assert trace(hato, "retry@a.test").stdout == text
    assert BODY_MARK.encode() not in (hato.data_dir / "trace.sqlite3").read_bytes()


def test_trace_of_a_bounce_names_the_report_and_the_report_quotes_the_refusal(
    relay: Callable[..., tuple[HatoProcess, ScriptedSmtp]],
) -> None:
    hato, _ = relay(replies={"nobody@d.test": [UNKNOWN]})
    send(hato, ["nobody@d.test"], "<lost@a.test>")
    report_event = hato.wait_for_event("report")
    queue_id, report_id = report_event["queue_id"], report_event["report_id"]

    found = story(hato, queue_id, lambda s: "removed" in kinds(s))
    assert found["status"] == "failed"
    assert found["reports"] == [{"queue_id": report_id, "action": "failed"}]
    assert kinds(found) == ["session", "queued", "attempt", "report", "failed", "removed"]
    text = trace(hato, queue_id).stdout
    assert f"S: {UNKNOWN}" in text
    assert f"(hato trace {report_id})" in text

    # The report has a story of its own that says whom it reports on.
    report = story(hato, report_id, lambda s: "removed" in kinds(s))
    assert report["report_of"] == queue_id and report["sender"] == ""
    assert report["status"] == "delivered"

    # The report in alice's mailbox names the queue ID and quotes command and reply.
    (stored,) = hato.poll(
        lambda: list((hato.data_dir / "mailboxes" / "a.test" / "alice" / "new").iterdir()),
        what="the report in alice's mailbox",
    )
    raw = stored.read_text()
    human = raw[: raw.index("Content-Type: message/delivery-status")]
    assert f"queue ID {queue_id}" in human
    assert "Our mail system said to mx.d.test:\n        RCPT TO:<nobody@d.test>" in human
    assert f"and it answered:\n        {UNKNOWN}" in human

    # Searches find both, by sender and by recipient.
    listed = trace(hato, "--sender", "alice@a.test").stdout
    assert queue_id in listed and report_id not in listed
    listed = trace(hato, "--recipient", "alice@a.test", "--since", "1h").stdout
    assert report_id in listed and f"report about {queue_id}" in listed
    assert (
        json.loads(trace(hato, "--recipient", "nobody@d.test", "--json").stdout)[0]["queue_id"]
        == queue_id
    )
