"""The event stream counted: one Prometheus registry per server, fed on the emitting thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..events import (
    AuthChecked,
    AuthSucceeded,
    Connected,
    Deferred,
    Delivered,
    DeliveryFailed,
    Disconnected,
    FilterVerdict,
    OpsEvent,
    Queued,
    Rejected,
    TlsFailed,
    TlsStarted,
)
from ..spool import QueueSummary
from ..trace import Attempt

__all__ = ["QUEUE_STATES", "STAGES", "Metrics"]

# A refusal's stage is the command it answered; anything else a client typed is "unknown",
# so a client cannot make up label values.
STAGES = frozenset(
    {
        "CONNECT",
        "HELO",
        "EHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "AUTH",
        "STARTTLS",
        "RSET",
        "VRFY",
        "EXPN",
        "HELP",
        "NOOP",
        "QUIT",
    }
)
QUEUE_STATES = ("queued", "deferred", "held")
# Seconds: a 250 after an in-memory delivery is about a millisecond, after filters with DNS
# a second or more; a delivery attempt to a slow server may take minutes.
ACCEPT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ATTEMPT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _class(remote: bool) -> str:
    return "remote" if remote else "local"


def _reason_class(event: OpsEvent) -> str:
    # Filled in by the classification of delivery failures where the event carries it.
    return str(getattr(event, "reason_class", "") or "unknown")


class _QueueCollector(Collector):
    """The queue read when scraped: no bookkeeping on the delivery path."""

    def __init__(self, summary: Callable[[], QueueSummary | None], clock: Callable[[], float]):
        self._summary = summary
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        summary = self._summary()
        if summary is None:  # the queue has not started yet
            return
        messages = GaugeMetricFamily(
            "hato_queue_messages",
            "Messages in the queue by state: held; deferred (a recipient is waiting for a"
            " retry); queued (not tried yet)",
            labels=["state"],
        )
        for state in QUEUE_STATES:
            messages.add_metric([state], summary.messages.get(state, 0))
        yield messages
        oldest = summary.oldest_arrival
        yield GaugeMetricFamily(
            "hato_queue_oldest_message_age_seconds",
            "Seconds since the oldest message in the queue arrived (0 when it is empty)",
            value=max(0.0, self._clock() - oldest) if oldest is not None else 0.0,
        )

    def describe(self) -> Iterable[Metric]:
        return ()  # collected afresh on every scrape, never at registration


class Metrics:
    """Counters, gauges and histograms over the event stream (``EventLog.subscribe``),
    the SMTP agent's attempts and, when scraped, the queue's state.

    ``event`` and ``attempt`` run on the emitting thread: a dictionary lookup, then an
    increment of a labelled child cached by its label values.
    """

    def __init__(
        self,
        *,
        queue_summary: Callable[[], QueueSummary | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.connections = Counter(
            "hato_connections", "SMTP connections accepted", ["listener"], registry=r
        )
        self.sessions_open = Gauge("hato_sessions_open", "SMTP sessions open now", registry=r)
        self.received = Counter(
            "hato_messages_received",
            "Messages accepted (the 250 sent, or a report written): smtp or report",
            ["origin"],
            registry=r,
        )
        self.delivered = Counter(
            "hato_messages_delivered",
            "Recipients' copies delivered: into a local mailbox or to another server",
            ["class"],
            registry=r,
        )
        self.deferred = Counter(
            "hato_messages_deferred",
            "Delivery attempts deferred (per recipient), by class and why",
            ["class", "reason_class"],
            registry=r,
        )
        self.bounced = Counter(
            "hato_messages_bounced",
            "Recipients given up on (a failure report is owed), by class and why",
            ["class", "reason_class"],
            registry=r,
        )
        self.refusals = Counter(
            "hato_refusals",
            "SMTP refusals by stage (the command refused) and rule ('none': no configured rule)",
            ["stage", "rule"],
            registry=r,
        )
        self.tls = Counter(
            "hato_tls_handshakes",
            "TLS handshakes completed with clients, by protocol version",
            ["version"],
            registry=r,
        )
        self.tls_failures = Counter(
            "hato_tls_handshake_failures", "TLS handshakes with clients that failed", registry=r
        )
        self.auth_successes = Counter(
            "hato_auth_successes", "SMTP AUTH successes by mechanism", ["mechanism"], registry=r
        )
        self.auth_failures = Counter(
            "hato_auth_failures",
            "SMTP AUTH refusals by reply code (535: wrong credentials; 421 or 454: banned or"
            " a temporary failure; 5xx others: the exchange was malformed)",
            ["reply"],
            registry=r,
        )
        self.mailauth = Counter(
            "hato_mailauth_results",
            "Results of SPF, DKIM, DMARC and ARC checks of incoming mail",
            ["method", "result"],
            registry=r,
        )
        self.filter_verdicts = Counter(
            "hato_filter_verdicts",
            "Message filter verdicts other than a plain accept",
            ["filter", "action"],
            registry=r,
        )
        self.accept_seconds = Histogram(
            "hato_message_accept_seconds",
            "Seconds from the end of a message's data to its 250 (filters, then durable)",
            buckets=ACCEPT_BUCKETS,
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "hato_delivery_attempt_seconds",
            "Seconds each delivery attempt to a next-hop host took, by class",
            ["class"],
            buckets=ATTEMPT_BUCKETS,
            registry=r,
        )
        # Series that always exist start at 0, so a rate over the first one is right.
        for origin in ("smtp", "report"):
            self.received.labels(origin)
        for remote in (False, True):
            self.delivered.labels(_class(remote))
        if queue_summary is not None:
            r.register(_QueueCollector(queue_summary, clock))
        self._clock = clock
        self._children: dict[tuple[Any, ...], Any] = {}
        self._handlers: dict[type[OpsEvent], Callable[[Any], None]] = {
            Connected: self._connected,
            Disconnected: self._disconnected,
            Queued: self._queued,
            Delivered: self._delivered,
            Deferred: self._deferred,
            DeliveryFailed: self._failed,
            Rejected: self._rejected,
            TlsStarted: self._tls_started,
            TlsFailed: self._tls_failed,
            AuthSucceeded: self._auth_succeeded,
            AuthChecked: self._auth_checked,
            FilterVerdict: self._filter_verdict,
        }

    # -- the feeds -----------------------------------------------------------------------

    def event(self, when: float, event: OpsEvent) -> None:
        """The ``EventLog`` listener: quick, and never raises for an event it ignores."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def attempt(self, attempt: Attempt) -> None:
        """The SMTP agent's report of one host tried (``SmtpAgent(on_attempt=...)``)."""
        elapsed = self._clock() - attempt.started
        self._child(self.attempt_seconds, "remote").observe(max(0.0, elapsed))

    # -- events to metrics ---------------------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() takes a lock and builds a tuple each time; a dictionary hit does neither.
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _connected(self, event: Connected) -> None:
        self._child(self.connections, event.listener).inc()
        self.sessions_open.inc()

    def _disconnected(self, event: Disconnected) -> None:
        self.sessions_open.dec()

    def _queued(self, event: Queued) -> None:
        self._child(self.received, "smtp" if event.session else "report").inc()
        if event.session:  # a report has no client waiting for a 250
            self.accept_seconds.observe(event.elapsed)

    def _delivered(self, event: Delivered) -> None:
        self._child(self.delivered, _class(event.remote)).inc()

    def _deferred(self, event: Deferred) -> None:
        self._child(self.deferred, _class(event.remote), _reason_class(event)).inc()

    def _failed(self, event: DeliveryFailed) -> None:
        self._child(self.bounced, _class(event.remote), _reason_class(event)).inc()

    def _rejected(self, event: Rejected) -> None:
        stage = event.command if event.command in STAGES else "unknown"
        self._child(self.refusals, stage, event.rule or "none").inc()
        if stage == "AUTH":
            self._child(self.auth_failures, event.reply[:3]).inc()

    def _tls_started(self, event: TlsStarted) -> None:
        self._child(self.tls, event.version).inc()

    def _tls_failed(self, event: TlsFailed) -> None:
        self.tls_failures.inc()

    def _auth_succeeded(self, event: AuthSucceeded) -> None:
        self._child(self.auth_successes, event.mechanism).inc()

    def _auth_checked(self, event: AuthChecked) -> None:
        for method, result in (
            ("spf", event.spf),
            ("dkim", event.dkim),
            ("dmarc", event.dmarc),
            ("arc", event.arc),
        ):
            self._child(self.mailauth, method, result).inc()

    def _filter_verdict(self, event: FilterVerdict) -> None:
        self._child(self.filter_verdicts, event.filter, event.action).inc()
