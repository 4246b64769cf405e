"""/metrics of a real ``hato serve`` ([metrics] listen), scraped before and after real SMTP:
each counter moves by exactly what was done, the gauges follow the queue."""

from __future__ import annotations

import smtplib
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dns_server import DnsServer

if TYPE_CHECKING:
    from conftest import HatoProcess

N = 7
USER = "alice@mx.test.example"
# Relayed nowhere (BASE_OPTIONS sends this domain to a closed port): deferred, kept.
HELD = "hold@relay.test.example"
STUCK = "anyone@localhost"  # the catch-all alias sends it to HELD
SENDER = "someone@sender.test"
MESSAGE = b"From: <someone@sender.test>\r\nSubject: metrics\r\n\r\nHello.\r\n"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        # SPF passes for loopback clients, DMARC passes through it (aligned), no DKIM.
        server.add("sender.test", "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"')
        server.add("_dmarc.sender.test", "TXT", '"v=DMARC1; p=none"')
        yield server


@pytest.fixture(scope="module")
def hato(module_hato_factory: Callable[..., HatoProcess], dns: DnsServer) -> HatoProcess:
    process = module_hato_factory(
        "metrics",
        'metrics.listen=["127.0.0.1:0"]',
        "mailauth.check=true",
        f'dns.nameservers=["{dns.address}"]',
        "auth.allow_plaintext=false",
        'policy.rcpt=[{action = "reject", recipient = ["nobody@mx.test.example"],'
        ' name = "no-nobody"}]',
    )
    process.add_user(USER, "right password")
    return process


def scrape(hato: HatoProcess) -> Samples:
    listening = hato.events("metrics_listening")
    assert listening, "no metrics_listening event"
    address = listening[-1]["listen"][0]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return get(after, name, **labels) - get(before, name, **labels)


def test_n_messages_move_the_counters_by_n(hato: HatoProcess) -> None:
    before = scrape(hato)
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.example")
        during = scrape(hato)
        for _ in range(N):
            client.sendmail(SENDER, [USER], MESSAGE)
    after = scrape(hato)
    listener = {"listener": "127.0.0.1:0"}
    assert moved(before, during, "hato_connections_total", **listener) == 1
    assert moved(before, during, "hato_sessions_open") == 1
    assert moved(before, after, "hato_connections_total", **listener) == 1
    assert moved(before, after, "hato_messages_received_total", origin="smtp") == N
    # Local mailboxes, delivered while the client waited: counted before each 250.
    assert moved(before, after, "hato_messages_delivered_total", **{"class": "local"}) == N
    assert moved(before, after, "hato_messages_delivered_total", **{"class": "remote"}) == 0
    assert moved(before, after, "hato_message_accept_seconds_count") == N
    assert moved(before, after, "hato_message_accept_seconds_sum") > 0
    for method, result in (("spf", "pass"), ("dkim", "none"), ("dmarc", "pass"), ("arc", "none")):
        labels = {"method": method, "result": result}
        assert moved(before, after, "hato_mailauth_results_total", **labels) == N, method
    # The session ends after QUIT's reply: the gauge comes back a moment later.
    deadline = time.monotonic() + 10
    while get(scrape(hato), "hato_sessions_open") != get(before, "hato_sessions_open"):
        assert time.monotonic() < deadline, "hato_sessions_open did not come back down"
        time.sleep(0.05)


def test_refusals_tls_and_auth_failures(hato: HatoProcess) -> None:
    before = scrape(hato)
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.example")
        client.starttls(context=ssl._create_unverified_context())
        client.ehlo("client.example")
        client.user, client.password = USER, "wrong password"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.auth("PLAIN", client.auth_plain)  # one try (login() tries each mechanism)
        client.mail(SENDER)
        assert client.rcpt("nobody@mx.test.example")[0] == 554
        assert client.rcpt("someone@elsewhere.example")[0] == 554  # no relaying
        client.rset()
    after = scrape(hato)
    assert moved(before, after, "hato_tls_handshakes_total", version="TLSv1.3") == 1
    assert moved(before, after, "hato_auth_failures_total", reply="535") == 1
    assert moved(before, after, "hato_refusals_total", stage="AUTH", rule="none") == 1
    assert moved(before, after, "hato_refusals_total", stage="RCPT", rule="no-nobody") == 1
    assert moved(before, after, "hato_refusals_total", stage="RCPT", rule="relay") == 1


def test_deferred_mail_in_the_queue_gauges_and_attempt_times(hato: HatoProcess) -> None:
    before = scrape(hato)
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.sendmail(SENDER, [STUCK], MESSAGE)
    hato.wait_for_event("deferred", recipient=HELD)
    time.sleep(0.2)  # the event is written after the outcome is recorded
    after = scrape(hato)
    remote = {"class": "remote"}
    assert moved(before, after, "hato_messages_received_total", origin="smtp") == 1
    deferred = "hato_messages_deferred_total"
    assert moved(before, after, deferred, reason_class="connection", **remote) == 1
    assert moved(before, after, "hato_delivery_attempt_seconds_count", **remote) >= 1
    assert get(after, "hato_queue_messages", state="deferred") == 1
    assert get(after, "hato_queue_messages", state="held") == 0
    assert get(after, "hato_queue_oldest_message_age_seconds") > 0
    queue_id = hato.events("deferred", recipient=HELD)[0]["queue_id"]
    assert hato.cli("queue", "hold", queue_id).returncode == 0
    held = scrape(hato)
    assert get(held, "hato_queue_messages", state="held") == 1
    assert get(held, "hato_queue_messages", state="deferred") == 0


def test_the_http_service_serves_the_same_metrics_without_a_login(hato: HatoProcess) -> None:
    # /metrics on the console's port (web.listen) needs no session or token, and reads
    # the same registry as the metrics listener: a connection made now shows on both.
    url = f"http://127.0.0.1:{hato.web_port}/metrics"
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.noop()
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    served = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    listener = scrape(hato)
    name = "hato_connections_total"
    assert sum(v for (n, _), v in served.items() if n == name) >= 1
    assert sum(v for (n, _), v in served.items() if n == name) == sum(
        v for (n, _), v in listener.items() if n == name
    )
