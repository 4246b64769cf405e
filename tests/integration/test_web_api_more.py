"""The API over ``hato test``'s engine on a real ``hato serve``: DNS records per local domain
checked against a test zone (tests/dns_server.py, the server's own ``dns.nameservers``),
diagnostics streamed as server-sent events against a second ``hato serve`` (and a port that
never answers, for the time bound and the limit on runs at once), and test addresses whose
mail is analysed."""

from __future__ import annotations

import json
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from dns_server import DnsServer
from hato.mailauth import DkimKeys, dns_record

if TYPE_CHECKING:
    from conftest import HatoProcess

GOOD = "good.test"  # publishes everything
BARE = "bare.test"  # publishes nothing
HOSTNAME = "mx.test.example"  # the conftest servers' hostname


@pytest.fixture(scope="module")
def zone() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server
    assert not server.errors, "the test DNS server failed:\n" + "\n".join(server.errors)


@pytest.fixture(scope="module")
def server(module_hato_factory: Callable[..., HatoProcess], zone: DnsServer) -> HatoProcess:
    return module_hato_factory(
        "webmore",
        f'dns.nameservers=["{zone.address}"]',
        "dns.timeout=2",
        f'server.local_domains=["{GOOD}", "{BARE}"]',
    )


@pytest.fixture(scope="module")
def target(module_hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    """The server the diagnostics talk to."""
    return module_hato_factory("diagtarget")


@pytest.fixture(scope="module")
def base(server: HatoProcess) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def _token(server: HatoProcess, name: str, *read_only: str) -> dict[str, str]:
    made = server.cli("web", "token", "add", name, *read_only)
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


@pytest.fixture(scope="module")
def admin(server: HatoProcess) -> dict[str, str]:
    return _token(server, "more-admin")


@pytest.fixture(scope="module")
def reader(server: HatoProcess) -> dict[str, str]:
    return _token(server, "more-reader", "--read-only")


def _txt(zone: DnsServer, name: str, *strings: str) -> None:
    zone.add(name, "TXT", " ".join(f'"{s}"' for s in strings))


# -- DNS --------------------------------------------------------------------------------------


def test_dns_lists_the_local_domains(base: str, reader: dict[str, str]) -> None:
    with httpx.Client(base_url=base, headers=reader) as client:
        listed = client.get("/api/v1/dns")
        assert listed.status_code == 200, listed.text
        domains = [row["domain"] for row in listed.json()["domains"]]
        assert GOOD in domains and BARE in domains
        assert "localhost" not in domains
        assert client.get("/api/v1/dns", headers={"Authorization": ""}).status_code == 401


def test_dns_records_of_a_domain_that_publishes_them(
    server: HatoProcess, base: str, reader: dict[str, str], zone: DnsServer
) -> None:
    key = DkimKeys(server.data_dir / "dkim").generate(GOOD)
    wanted = dns_record(key)
    _txt(zone, wanted.name, *wanted.strings)
    zone.add(GOOD, "MX", f"10 {HOSTNAME}.")
    _txt(zone, GOOD, "v=spf1 mx -all")
    _txt(zone, f"_dmarc.{GOOD}", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test")
    _txt(zone, f"_mta-sts.{GOOD}", "v=STSv1; id=20240101T000000")
    with httpx.Client(base_url=base, headers=reader, timeout=30) as client:
        found = client.get(f"/api/v1/dns/{GOOD}")
    assert found.status_code == 200, found.text
    body = found.json()
    records = {(r["kind"], r["name"]): r for r in body["records"]}
    mx = records[("mx", GOOD)]
    assert mx["value"] == f"10 {HOSTNAME}."
    assert mx["status"] == "ok", mx
    spf = records[("spf", GOOD)]
    assert spf["value"].startswith("v=spf1 mx") and spf["value"].endswith(" -all")
    assert spf["published"] == ["v=spf1 mx -all"] and spf["status"] == "ok", spf
    dkim = records[("dkim", wanted.name)]
    assert dkim["value"] == wanted.value and dkim["zone"] == wanted.zone_line
    assert dkim["status"] == "ok", dkim
    dmarc = records[("dmarc", f"_dmarc.{GOOD}")]
    assert dmarc["value"].startswith("v=DMARC1; p=") and dmarc["status"] == "ok", dmarc
    sts = records[("mta-sts", f"_mta-sts.{GOOD}")]
    assert sts["value"] == "v=STSv1; id=20240101T000000" and sts["status"] == "ok"
    assert ("tls-rpt", f"_smtp._tls.{GOOD}") not in records  # not published, not suggested
    assert {c["name"] for c in body["checks"]} >= {"spf", "dmarc", "dkim", "mta-sts", "tls-rpt"}
    assert body["passed"] is True, body["verdict"]


def test_dns_records_of_a_domain_that_publishes_nothing(
    server: HatoProcess, base: str, reader: dict[str, str], zone: DnsServer
) -> None:
    zone.add(BARE, "MX", "10 elsewhere.example.")
    with httpx.Client(base_url=base, headers=reader, timeout=30) as client:
        body = client.get(f"/api/v1/dns/{BARE}").json()
    records = {r["kind"]: r for r in body["records"]}
    assert records["mx"]["status"] == "differs"
    assert records["mx"]["published"] == ["10 elsewhere.example."]
    assert records["spf"]["status"] == "missing" and records["spf"]["published"] == []
    assert records["dmarc"]["status"] == "missing"
    assert records["dkim"]["status"] == "missing"  # no key made: make one with hato dkim
    assert "mta-sts" not in records
    assert body["passed"] is False


def test_dns_of_a_domain_not_local_or_not_a_domain(base: str, reader: dict[str, str]) -> None:
    with httpx.Client(base_url=base, headers=reader) as client:
        other = client.get("/api/v1/dns/example.org")
        assert other.status_code == 404
        assert "not a local domain" in other.json()["error"]
        bad = client.get("/api/v1/dns/no..dots")
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]


# -- diagnostics ------------------------------------------------------------------------------


def _events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event is not None:
            yield event, json.loads(line.removeprefix("data: "))
            event = None


def test_diagnostics_stream_each_step_then_the_report(
    base: str, admin: dict[str, str], target: HatoProcess
) -> None:
    body = {
        "target": f"127.0.0.1:{target.port}",
        "to": f"postmaster@{HOSTNAME}",
        "timeout": 10,
    }
    with (
        httpx.Client(base_url=base, headers=admin, timeout=60) as client,
        client.stream("POST", "/api/v1/diagnostics", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(_events(response))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "report", kinds
    steps = [data for kind, data in events if kind == "step"]
    names = [step["name"] for step in steps]
    for expected in ("connect", "banner", "ehlo", "starttls", "mail", "rcpt", "quit"):
        assert any(name.lower().startswith(expected) for name in names), names
    assert all(step["port"] == target.port and step["address"] == "127.0.0.1" for step in steps)
    report = events[-1][1]
    assert [s["name"] for s in report["hosts"][0]["steps"]] == names
    assert report["passed"] is True, report["verdict"]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_diagnostics_are_bounded_and_limited(
    base: str, admin: dict[str, str], silent_port: int
) -> None:
    body = {"target": f"127.0.0.1:{silent_port}", "timeout": 1}
    started = time.monotonic()
    with httpx.Client(base_url=base, headers=admin, timeout=30) as client:
        with client.stream("POST", "/api/v1/diagnostics", json=body) as response:
            events = list(_events(response))
        assert time.monotonic() - started < 15
        kind, report = events[-1]
        assert kind == "report"
        codes = [f["code"] for host in report["hosts"] for f in host["findings"]]
        assert "no-banner" in codes, codes
        # Two runs at once, then a third is refused until one has finished.
        slow = {"target": f"127.0.0.1:{silent_port}", "timeout": 5}
        with (
            client.stream("POST", "/api/v1/diagnostics", json=slow) as first,
            client.stream("POST", "/api/v1/diagnostics", json=slow) as second,
        ):
            assert first.status_code == second.status_code == 200
            third = client.post("/api/v1/diagnostics", json=slow)
            assert third.status_code == 429, third.text
            assert "at most" in third.json()["error"]
        # Both clients went away: their runs stopped and gave their places back.
        deadline = time.monotonic() + 10
        while True:
            with client.stream("POST", "/api/v1/diagnostics", json=body) as again:
                if again.status_code == 200:
                    assert list(_events(again))[-1][0] == "report"
                    break
            assert time.monotonic() < deadline, "the runs of clients gone were not stopped"
            time.sleep(0.2)


def test_diagnostics_need_an_admin_and_good_options(
    base: str, admin: dict[str, str], reader: dict[str, str]
) -> None:
    with httpx.Client(base_url=base, headers=admin) as client:
        refused = client.post(
            "/api/v1/diagnostics", headers=reader, json={"target": "127.0.0.1:25"}
        )
        assert refused.status_code == 403
        cases = [
            {},
            {"target": ""},
            {"target": 5},
            {"target": "user@"},
            {"target": "127.0.0.1", "timeout": 0},
            {"target": "127.0.0.1", "timeout": "30"},
            {"target": "127.0.0.1", "tls": "maybe"},
            {"target": "127.0.0.1", "send": "yes"},
            {"target": "127.0.0.1", "from": "nobody"},
            {"target": "127.0.0.1", "auth_password": "x"},
            {"target": "127.0.0.1", "wait": 10},
            {"target": "127.0.0.1", "server": "a b:c"},
        ]
        for case in cases:
            response = client.post("/api/v1/diagnostics", json=case)
            assert response.status_code == 400, (case, response.text)
            assert isinstance(response.json()["error"], str)
        not_json = client.post("/api/v1/diagnostics", content=b"{")
        assert not_json.status_code == 400


# -- test addresses ---------------------------------------------------------------------------


def test_a_test_address_and_what_arrived_at_it(
    server: HatoProcess, base: str, admin: dict[str, str], reader: dict[str, str]
) -> None:
    with httpx.Client(base_url=base, headers=admin, timeout=30) as client:
        made = client.post("/api/v1/probes", json={})
        assert made.status_code == 201, made.text
        probe = made.json()
        address = probe["address"]
        assert address.startswith("probe-") and address.endswith(f"@{GOOD}")
        assert probe["state"] == "waiting" and probe["analyses"] == []
        assert client.post("/api/v1/probes", headers=reader, json={}).status_code == 403
        waiting = client.get(f"/api/v1/probes/{address}", headers=reader)
        assert waiting.status_code == 200 and waiting.json()["state"] == "waiting"
        message = (
            f"From: <alice@{HOSTNAME}>\r\nTo: <{address}>\r\nSubject: probe\r\n"
            f"Message-ID: <p1@{HOSTNAME}>\r\n\r\nhello\r\n"
        )
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
            smtp.sendmail(f"alice@{HOSTNAME}", [address], message)
        deadline = time.monotonic() + 20
        while True:
            shown = client.get(f"/api/v1/probes/{address}", headers=reader).json()
            if shown["analyses"]:
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        assert shown["state"] == "received"
        analysis = shown["analyses"][0]
        assert json.dumps(analysis).count(f"alice@{HOSTNAME}") >= 1
        elsewhere = client.post("/api/v1/probes", json={"domain": BARE})
        assert elsewhere.status_code == 201 and elsewhere.json()["address"].endswith(BARE)


def test_test_addresses_unknown_or_bad(base: str, admin: dict[str, str]) -> None:
    with httpx.Client(base_url=base, headers=admin) as client:
        unknown = client.get(f"/api/v1/probes/probe-zzzzzzzz@{GOOD}")
        assert unknown.status_code == 404
        assert "no test address" in unknown.json()["error"]
        for bad in ("someone@good.test", "probe-"):
            assert client.get(f"/api/v1/probes/{bad}").status_code == 400
        for body in ({"domain": "example.org"}, {"domain": 3}, {"domains": GOOD}):
            response = client.post("/api/v1/probes", json=body)
            assert response.status_code == 400, (body, response.text)


def test_the_openapi_document_describes_them(base: str) -> None:
    paths = httpx.get(f"{base}/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/dns", "/api/v1/dns/{domain}", "/api/v1/probes"} <= paths.keys()
    diagnostics = paths["/api/v1/diagnostics"]["post"]
    assert "429" in diagnostics["responses"]
    assert (
        "target"
        in diagnostics["requestBody"]["content"]["application/json"]["schema"]["properties"]
    )
    assert "get" in paths["/api/v1/probes/{address}"]
