"""Prometheus metrics of a running server (``/metrics``).

What is counted comes from three feeds, wired in ``app.py``: the event stream
(``EventLog.subscribe``: connections, messages received and delivered, deferred or
bounced by class, refusals by stage and rule, TLS, AUTH, mail authentication results,
the time from the end of the data to the 250), the SMTP agent's attempts (their
durations), and, only when scraped, the queue's state (messages by state, the oldest
one's age). Counting is an increment of a cached labelled child on the emitting thread;
nothing on the SMTP path waits for a scrape, which renders in a thread of its own.

The registry is private to the server (never prometheus_client's global one), served by
``metrics_app`` (ASGI, mounted by the HTTP service) or ``MetricsListener``
(``[metrics] listen``). Counters start at zero with each process, as Prometheus expects.
"""

from hato.metrics._metrics import QUEUE_STATES, STAGES, Metrics
from hato.metrics._serve import AsgiApp, MetricsListener, metrics_app

__all__ = ["QUEUE_STATES", "STAGES", "AsgiApp", "Metrics", "MetricsListener", "metrics_app"]
