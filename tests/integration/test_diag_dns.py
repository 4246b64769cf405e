"""``hato test DOMAIN`` through a test DNS zone (tests/dns_server.py), the name server given
as Hato's own ``dns.nameservers`` setting: MX records by preference with a dead first MX,
``--all-mx``, no MX (implicit MX), null MX, NXDOMAIN, and SERVFAIL.

MX hosts are reached on port 25, so the SMTP servers here listen on port 25 of loopback
addresses no other test uses; without the right to bind there, the tests skip."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from diag_helpers import codes, run_test
from scripted_smtp import ScriptedSmtp

from dns_server import DnsServer, dns_server_fixture  # noqa: F401

LIVE = "127.0.83.1"  # an MX that answers (port 25)
DEAD = "127.0.83.2"  # an MX where nothing listens


def hato_test(dns: DnsServer, *args: str) -> tuple[int, dict[str, Any]]:
    """``hato test`` with the test zone's name server as Hato's own ``dns.nameservers``."""
    nameservers = f'dns.nameservers=["{dns.address}"]'
    status, report, _ = run_test(*args, "--no-tls", "-o", nameservers, timeout=5)
    return status, report


@pytest.fixture
def mx_server() -> Iterator[ScriptedSmtp]:
    server = ScriptedSmtp(LIVE, 25, hostname="mx2.zone.test")
    try:
        server.start()
    except PermissionError:
        pytest.skip("binding port 25 on loopback needs root")
    except OSError as error:
        pytest.skip(f"{LIVE}:25 is not free: {error}")
    yield server
    server.stop()


def test_mx_records_by_preference_first_dead(
    dns_server: DnsServer, mx_server: ScriptedSmtp
) -> None:
    dns_server.add("zone.test", "MX", "20 mx2.zone.test")
    dns_server.add("zone.test", "MX", "10 mx1.zone.test")
    dns_server.add("mx1.zone.test", "A", DEAD)
    dns_server.add("mx2.zone.test", "A", LIVE)
    status, report = hato_test(dns_server, "user@zone.test")
    assert status == 0, report
    dns = report["dns"]
    assert dns["kind"] == "mx"
    assert dns["nameservers"] == [dns_server.address]
    assert [(r["preference"], r["host"], r["addresses"]) for r in dns["records"]] == [
        (10, "mx1.zone.test", [DEAD]),
        (20, "mx2.zone.test", [LIVE]),
    ]
    assert dns["order"] == ["mx1.zone.test", "mx2.zone.test"]
    first, second = report["hosts"]
    assert (first["host"], first["preference"]) == ("mx1.zone.test", 10)
    # Senders move on to the next MX, so a dead first one is a warning, not a failure.
    assert [(f["code"], f["severity"]) for f in first["findings"]] == [
        ("connection-refused", "warn")
    ]
    assert second["banner_host"] == "mx2.zone.test"
    assert mx_server.transactions[0].recipients == ["RCPT TO:<user@zone.test>"]


def test_all_mx_fails_when_one_is_dead(dns_server: DnsServer, mx_server: ScriptedSmtp) -> None:
    dns_server.add("zone.test", "MX", "10 mx2.zone.test")
    dns_server.add("zone.test", "MX", "20 mx1.zone.test")
    dns_server.add("mx1.zone.test", "A", DEAD)
    dns_server.add("mx2.zone.test", "A", LIVE)
    status, report = hato_test(dns_server, "zone.test", "--all-mx")
    assert status == 1
    assert [host["host"] for host in report["hosts"]] == ["mx2.zone.test", "mx1.zone.test"]
    assert report["recipient"] == "postmaster@zone.test"
    assert report["hosts"][1]["findings"][0]["severity"] == "fail"


def test_no_mx_is_implicit_mx(dns_server: DnsServer, mx_server: ScriptedSmtp) -> None:
    dns_server.add("bare.test", "A", LIVE)
    status, report = hato_test(dns_server, "user@bare.test")
    assert status == 0, report
    assert report["dns"]["kind"] == "implicit"
    assert [(r["host"], r["addresses"]) for r in report["dns"]["records"]] == [
        ("bare.test", [LIVE])
    ]
    assert codes(report) == ["implicit-mx"]
    assert report["hosts"][0]["address"] == LIVE


def test_null_mx(dns_server: DnsServer) -> None:
    dns_server.add("nomail.test", "MX", "0 .")
    status, report = hato_test(dns_server, "user@nomail.test")
    assert status == 1
    assert report["dns"]["kind"] == "null"
    assert codes(report) == ["null-mx"]
    assert report["hosts"] == []
    assert "accepts no mail" in report["verdict"]


def test_nxdomain(dns_server: DnsServer) -> None:
    dns_server.add("other.test", "A", LIVE)
    status, report = hato_test(dns_server, "user@missing.test")
    assert status == 1
    assert report["dns"]["kind"] == "nxdomain"
    assert codes(report) == ["nxdomain"]
    assert "dig NS missing.test" in report["dns"]["findings"][0]["next_steps"]


def test_no_mx_and_no_address(dns_server: DnsServer) -> None:
    dns_server.add("empty.test", "TXT", '"v=spf1 -all"')
    status, report = hato_test(dns_server, "empty.test")
    assert status == 1
    assert codes(report) == ["no-mx-no-address"]


def test_servfail_is_temporary(dns_server: DnsServer) -> None:
    dns_server.servfail("broken.test")
    status, report = hato_test(dns_server, "broken.test")
    assert status == 1
    assert report["dns"]["kind"] == "temporary"
    assert codes(report) == ["dns-temporary"]
