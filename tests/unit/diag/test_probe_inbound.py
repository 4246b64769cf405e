"""Test addresses: the store, the router's view of them, the Received hops, the analysis."""

from __future__ import annotations

import json
from pathlib import Path

from hato.accounts import AccountStore
from hato.diag import ProbeStore, analyse
from hato.diag._probe_inbound import received_hops
from hato.mailauth import TemporaryDnsError
from hato.pipeline import Message, parse_header
from hato.routing import LocalRouter, Probe, Unknown
from hato.spool import Envelope, Origin, Recipient


class NoDns:
    """A resolver whose every answer is "nothing there"."""

    def txt(self, name: str) -> list[bytes]:
        return []

    def query(self, name: str, rtype: str) -> list[str]:
        if name.endswith("in-addr.arpa"):
            raise TemporaryDnsError("no answer in time")
        return []


def test_store_makes_live_and_expired_addresses(tmp_path: Path) -> None:
    store = ProbeStore(tmp_path / "probes")
    live = store.create("Example.COM.")
    expired = store.create("example.com", lifetime=-1)
    assert live.address.startswith("probe-") and live.address.endswith("@example.com")
    assert store.check(live.address) is True
    assert store.check(live.address.upper()) is True
    assert store.check(expired.address) is False
    assert store.check("probe-unknown@example.com") is False
    assert store.check("probe-../../etc@example.com") is False  # never a path from a client
    assert store.check("alice@example.com") is None
    store.record(live.address, {"queue_id": "Q1"})
    found = store.get(live.address)
    assert found is not None and found.analyses == ({"queue_id": "Q1"},)
    on_disk = json.loads((tmp_path / "probes" / f"{live.address}.json").read_text())
    assert on_disk["address"] == live.address and not list((tmp_path / "probes").glob(".*"))


def test_router_takes_test_addresses_before_aliases(tmp_path: Path) -> None:
    store = ProbeStore(tmp_path / "probes")
    live, expired = store.create("example.com"), store.create("example.com", lifetime=-1)
    with AccountStore(tmp_path / "accounts.sqlite3", config_domains=("example.com",)) as accounts:
        accounts.add_alias("@example.com", ["catch@example.org"])
        router = LocalRouter(
            accounts, config_domains=("example.com",), hostname="mx.example.com", probe=store.check
        )
        assert router.lookup(live.address) == Probe(live.address)
        assert router.lookup(expired.address) == Unknown(expired.address)
        assert router.lookup("someone@example.com").source == "@example.com"  # type: ignore[union-attr]
        # Delivered nowhere: no mailbox, no remote address, no failure.
        expansion = router.expand(live.address)
        assert not (expansion.mailboxes or expansion.remote or expansion.failures)


def test_received_hops_oldest_first_with_delays() -> None:
    header = parse_header(
        b"Received: from b.example (b.example [192.0.2.2]) by c.example with ESMTPS;"
        b" Tue, 14 Nov 2023 22:15:00 +0000\r\n"
        b"Received: from a.example by b.example with ESMTP; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        b"Received: from nowhere by a.example; not a date\r\n"
    )
    hops = received_hops(header.fields, hostname="mx.example", arrival=1_700_000_160.0)
    assert [(h["from"], h["by"]) for h in hops] == [
        ("nowhere", "a.example"),
        ("a.example", "b.example"),
        ("b.example", "c.example"),
        (None, "mx.example"),
    ]
    assert [h["delay"] for h in hops] == [None, None, 100.0, 60.0]
    assert hops[2]["with"] == "ESMTPS"


def test_analysis_names_missing_tls_and_header_problems() -> None:
    section = b"From: a@sender.example\r\nSubject: hi\r\n"
    envelope = Envelope(
        reverse_path="a@other.example",
        recipients=(Recipient(address="probe-x@example.com"),),
        client_ip="192.0.2.7",
        helo="sender.example",
        session_id="s1",
        arrival=1_700_000_000.0,
    )
    message = Message(
        queue_id="Q1",
        envelope=envelope,
        origin=Origin.SMTP,
        header=parse_header(section),
        size=len(section) + 6,
    )
    found = analyse(
        NoDns(), message, section + b"\r\nhi\r\n", hostname="mx.example.com", now=1_700_000_001.0
    )
    assert found["session"]["tls_version"] is None and found["session"]["seconds"] == 1.0
    checks = {check["name"]: check for check in found["checks"]}
    assert [f["code"] for f in checks["session"]["findings"]] == ["probe-no-tls"]
    assert [f["code"] for f in checks["header"]["findings"]] == [
        "probe-no-date",
        "probe-no-message-id",
        "probe-unaligned",
    ]
    assert checks["reverse-dns"]["findings"][0]["code"] == "record-temporary"
    assert checks["spf"]["facts"]["result"] == "none"
    json.dumps(found)  # stored as JSON
