"""Events, attempts and the queue's state to Prometheus metrics, as a scraper reads them."""

from __future__ import annotations

import asyncio
import io
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hato.events import (
    AuthChecked,
    AuthSucceeded,
    Connected,
    Deferred,
    Delivered,
    DeliveryFailed,
    Disconnected,
    EventLog,
    FilterVerdict,
    HeloReceived,
    OpsEvent,
    Queued,
    Rejected,
    TlsFailed,
    TlsStarted,
)
from hato.metrics import Metrics, MetricsListener, metrics_app
from hato.spool import DEFERRED, Envelope, Outcome, QueueState, QueueSummary, Recipient, Spool
from hato.trace import Attempt

NOW = 1_800_000_000.0


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """The sample as scraped; 0 for a series that does not exist (yet)."""
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def connected(session: str = "s1") -> Connected:
    return Connected(session=session, client_ip="192.0.2.1", client_port=4000, listener="0:25")


def queued(session: str = "s1", elapsed: float = 0.003) -> Queued:
    return Queued(
        session=session,
        queue_id="Q1",
        size=100,
        reverse_path="a@example.com",
        recipients=("b@example.net",),
        client_ip="192.0.2.1" if session else "",
        elapsed=elapsed,
    )


def rejected(command: str, rule: str = "", reply: str = "554 5.7.1 no") -> Rejected:
    return Rejected(
        session="s1", client_ip="192.0.2.1", command=command, reply=reply, reason="r", rule=rule
    )


def delivered(remote: bool) -> Delivered:
    return Delivered(
        queue_id="Q1",
        recipient="b@example.net",
        mailbox="b@example.net",
        status="2.0.0",
        detail="ok",
        remote=remote,
    )


def deferred(remote: bool) -> Deferred:
    return Deferred(
        queue_id="Q1",
        recipient="b@example.net",
        status="4.4.1",
        detail="no answer",
        attempts=1,
        next_attempt=NOW + 300,
        remote=remote,
    )


def failed(remote: bool) -> DeliveryFailed:
    return DeliveryFailed(
        queue_id="Q1",
        recipient="b@example.net",
        status="5.1.1",
        detail="no such user",
        reverse_path="a@example.com",
        remote=remote,
    )


# (event, the sample it moves, its labels): each moves by exactly one.
ONE_EACH: list[tuple[OpsEvent, str, dict[str, str]]] = [
    (connected(), "hato_connections_total", {"listener": "0:25"}),
    (queued(), "hato_messages_received_total", {"origin": "smtp"}),
    (queued(session=""), "hato_messages_received_total", {"origin": "report"}),
    (queued(), "hato_message_accept_seconds_count", {}),
    (delivered(False), "hato_messages_delivered_total", {"class": "local"}),
    (delivered(True), "hato_messages_delivered_total", {"class": "remote"}),
    (
        deferred(True),
        "hato_messages_deferred_total",
        {"class": "remote", "reason_class": "unknown"},
    ),
    (
        deferred(False),
        "hato_messages_deferred_total",
        {"class": "local", "reason_class": "unknown"},
    ),
    (failed(True), "hato_messages_bounced_total", {"class": "remote", "reason_class": "unknown"}),
    (failed(False), "hato_messages_bounced_total", {"class": "local", "reason_class": "unknown"}),
    (
        rejected("RCPT", "no-spammers"),
        "hato_refusals_total",
        {"stage": "RCPT", "rule": "no-spammers"},
    ),
    (rejected("MAIL"), "hato_refusals_total", {"stage": "MAIL", "rule": "none"}),
    (rejected("CONNECT", "dnsbl"), "hato_refusals_total", {"stage": "CONNECT", "rule": "dnsbl"}),
    (
        rejected("AUTH", reply="535 5.7.8 Authentication credentials invalid"),
        "hato_auth_failures_total",
        {"reply": "535"},
    ),
    (rejected("AUTH"), "hato_refusals_total", {"stage": "AUTH", "rule": "none"}),
    (
        TlsStarted(
            session="s1", version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", implicit=False
        ),
        "hato_tls_handshakes_total",
        {"version": "TLSv1.3"},
    ),
    (
        TlsFailed(session="s1", client_ip="192.0.2.1", reason="wrong version"),
        "hato_tls_handshake_failures_total",
        {},
    ),
    (
        AuthSucceeded(session="s1", client_ip="192.0.2.1", user="u@example.com", mechanism="PLAIN"),
        "hato_auth_successes_total",
        {"mechanism": "PLAIN"},
    ),
    (
        FilterVerdict(session="s1", queue_id="Q1", filter="mailauth", action="reject", reason="r"),
        "hato_filter_verdicts_total",
        {"filter": "mailauth", "action": "reject"},
    ),
]


@pytest.mark.parametrize(
    ("event", "name", "labels"), ONE_EACH, ids=[f"{e.name}-{n}" for e, n, _ in ONE_EACH]
)
def test_each_event_moves_its_metric_by_one(
    event: OpsEvent, name: str, labels: dict[str, str]
) -> None:
    metrics = Metrics()
    before = value(metrics, name, **labels)
    metrics.event(NOW, event)
    assert value(metrics, name, **labels) == before + 1
    metrics.event(NOW, event)
    assert value(metrics, name, **labels) == before + 2


def test_events_through_the_event_log_are_counted() -> None:
    metrics = Metrics()
    log = EventLog(stream=io.StringIO())
    log.subscribe(metrics.event)
    for _ in range(3):
        log.emit(queued())
    assert value(metrics, "hato_messages_received_total", origin="smtp") == 3


def test_a_stage_a_client_made_up_is_unknown() -> None:
    metrics = Metrics()
    metrics.event(NOW, rejected("XYZZY-\x1b[31m", reply="502 5.5.2 what"))
    metrics.event(NOW, rejected("", reply="500 5.5.2 empty"))
    assert value(metrics, "hato_refusals_total", stage="unknown", rule="none") == 2
    text = metrics.registry.get_sample_value  # no series names the client's text
    assert text("hato_refusals_total", {"stage": "XYZZY-\x1b[31m", "rule": "none"}) is None


def test_sessions_open_follow_connect_and_disconnect() -> None:
    metrics = Metrics()
    for session in ("s1", "s2", "s3"):
        metrics.event(NOW, connected(session))
    metrics.event(
        NOW,
        Disconnected(
            session="s2",
            client_ip="192.0.2.1",
            messages=0,
            recipients=0,
            errors=0,
            seconds=1.0,
            reason="QUIT",
        ),
    )
    assert value(metrics, "hato_sessions_open") == 2
    assert value(metrics, "hato_connections_total", listener="0:25") == 3


def test_mail_authentication_results_per_method() -> None:
    metrics = Metrics()
    metrics.event(
        NOW,
        AuthChecked(session="s1", queue_id="Q1", spf="pass", dkim="fail", dmarc="fail", arc="none"),
    )
    metrics.event(
        NOW,
        AuthChecked(session="s2", queue_id="Q2", spf="pass", dkim="pass", dmarc="pass", arc="none"),
    )
    assert value(metrics, "hato_mailauth_results_total", method="spf", result="pass") == 2
    assert value(metrics, "hato_mailauth_results_total", method="dkim", result="fail") == 1
    assert value(metrics, "hato_mailauth_results_total", method="dkim", result="pass") == 1
    assert value(metrics, "hato_mailauth_results_total", method="dmarc", result="fail") == 1
    assert value(metrics, "hato_mailauth_results_total", method="arc", result="none") == 2


def test_the_time_to_250_is_observed_for_clients_only() -> None:
    metrics = Metrics()
    metrics.event(NOW, queued(elapsed=0.004))
    metrics.event(NOW, queued(elapsed=0.3))
    metrics.event(NOW, queued(session="", elapsed=9.0))  # a report: nobody waited for it
    assert value(metrics, "hato_message_accept_seconds_count") == 2
    assert value(metrics, "hato_message_accept_seconds_sum") == pytest.approx(0.304)
    assert value(metrics, "hato_message_accept_seconds_bucket", le="0.005") == 1
    assert value(metrics, "hato_message_accept_seconds_bucket", le="0.5") == 2


def test_delivery_attempts_are_timed_from_their_start() -> None:
    metrics = Metrics(clock=lambda: NOW)
    for took in (0.2, 45.0):
        metrics.attempt(
            Attempt(
                queue_id="Q1",
                domain="example.net",
                host="mx.example.net",
                address="192.0.2.25",
                port=25,
                started=NOW - took,
                tls="",
                reused=False,
                outcome="accepted",
                lines=(),
            )
        )
    labels = {"class": "remote"}
    assert value(metrics, "hato_delivery_attempt_seconds_count", **labels) == 2
    assert value(metrics, "hato_delivery_attempt_seconds_sum", **labels) == pytest.approx(45.2)
    assert value(metrics, "hato_delivery_attempt_seconds_bucket", le="0.25", **labels) == 1
    assert value(metrics, "hato_delivery_attempt_seconds_bucket", le="30.0", **labels) == 1
    assert value(metrics, "hato_delivery_attempt_seconds_bucket", le="60.0", **labels) == 2


def test_events_without_metrics_are_ignored() -> None:
    metrics = Metrics()
    metrics.event(NOW, HeloReceived(session="s1", helo="client.example", extended=True))
    families = list(text_string_to_metric_families(render(metrics)))
    assert all(s.value == 0 for f in families for s in f.samples if not s.name.endswith("_created"))


# -- the queue, read when scraped --------------------------------------------------------


def queue_messages(data_dir: Path, arrivals: list[float]) -> list[str]:
    async def run() -> list[str]:
        ids = []
        with Spool(data_dir) as spool:
            spool.open()
            for arrival in arrivals:
                writer = spool.new_message()
                writer.write(b"Subject: x\r\n\r\nbody\r\n")
                envelope = Envelope(
                    reverse_path="a@example.com",
                    recipients=(Recipient(address="u@localhost"), Recipient(address="v@localhost")),
                    arrival=arrival,
                )
                await writer.commit(envelope)
                ids.append(writer.queue_id)
        return ids

    return asyncio.run(run())


def test_queue_gauges_read_the_queue_state(tmp_path: Path) -> None:
    ids = queue_messages(tmp_path, [NOW - 600, NOW - 60, NOW - 5, NOW - 1])
    with QueueState(tmp_path) as state:
        state.record(
            [
                Outcome(
                    queue_id=ids[1],
                    position=1,
                    state=DEFERRED,
                    attempts=1,
                    next_attempt=NOW + 300,
                    last_attempt=NOW,
                    status="4.4.1",
                    detail="no answer",
                )
            ]
        )
        state.set_held(ids[2], True)
        metrics = Metrics(queue_summary=state.summary, clock=lambda: NOW)
        assert value(metrics, "hato_queue_messages", state="queued") == 2
        assert value(metrics, "hato_queue_messages", state="deferred") == 1
        assert value(metrics, "hato_queue_messages", state="held") == 1
        assert value(metrics, "hato_queue_oldest_message_age_seconds") == pytest.approx(600)
        state.delete([ids[0]])
        assert value(metrics, "hato_queue_oldest_message_age_seconds") == pytest.approx(60)
        assert value(metrics, "hato_queue_messages", state="queued") == 1


def test_an_empty_or_unstarted_queue(tmp_path: Path) -> None:
    empty = Metrics(queue_summary=lambda: QueueSummary(messages={}, oldest_arrival=None))
    assert value(empty, "hato_queue_messages", state="queued") == 0
    assert value(empty, "hato_queue_oldest_message_age_seconds") == 0
    unstarted = Metrics(queue_summary=lambda: None)
    assert unstarted.registry.get_sample_value("hato_queue_messages", {"state": "queued"}) is None


# -- serving -----------------------------------------------------------------------------


def render(metrics: Metrics) -> str:
    async def get() -> str:
        transport = httpx.ASGITransport(app=metrics_app(metrics.registry))
        async with httpx.AsyncClient(transport=transport, base_url="http://hato") as client:
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=")
            return response.text

    return asyncio.run(get())


def test_the_asgi_app_serves_the_text_format() -> None:
    metrics = Metrics()
    metrics.event(NOW, connected())
    families = {f.name: f for f in text_string_to_metric_families(render(metrics))}
    samples = families["hato_connections"].samples
    assert [(s.labels, s.value) for s in samples if s.name == "hato_connections_total"] == [
        ({"listener": "0:25"}, 1.0)
    ]


def test_the_asgi_app_speaks_openmetrics_and_refuses_other_methods() -> None:
    async def run() -> None:
        transport = httpx.ASGITransport(app=metrics_app(Metrics().registry))
        async with httpx.AsyncClient(transport=transport, base_url="http://hato") as client:
            asked = await client.get(
                "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
            assert asked.headers["content-type"].startswith("application/openmetrics-text")
            assert asked.text.endswith("# EOF\n")
            posted = await client.post("/metrics", content=b"x")
            assert posted.status_code == 405

    asyncio.run(run())


def test_the_listener_serves_on_its_own_socket_until_stopped() -> None:
    metrics = Metrics()
    metrics.event(NOW, queued())
    listener = MetricsListener(metrics.registry)
    listener.start([("127.0.0.1", 0)])
    try:
        host, port = listener.bound[0]
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        received = [s for s in samples if s.name == "hato_messages_received_total"]
        assert {s.labels["origin"]: s.value for s in received} == {"smtp": 1.0, "report": 0.0}
    finally:
        listener.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5)


def test_a_listener_that_cannot_bind_says_so() -> None:
    first = MetricsListener(Metrics().registry)
    first.start([("127.0.0.1", 0)])
    try:
        taken = first.bound[0]
        second = MetricsListener(Metrics().registry)
        with pytest.raises(OSError):
            second.start([("127.0.0.1", 0), taken])
        # The socket it had bound before the failure is closed again.
        with pytest.raises(urllib.error.URLError):
            host, port = second.bound[0]
            urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5)
    finally:
        first.stop()
