"""``hato test DOMAIN --dns`` and ``hato test --self`` through a test DNS zone
(tests/dns_server.py, given as Hato's own ``dns.nameservers``), run as the installed
command with ``--json``: a domain that does everything right passes with every check ok;
``+all``, too many SPF lookups, no DMARC and a DKIM record that is not Hato's key each
give their finding and exit 1. ``--self`` judges 127.0.0.1: its PTR and A records, a
blocklist listing 127.0.0.2, a local domain's SPF passing or failing, and the certificate
of a short-lived self-signed certificate made here."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from diag_helpers import hato

from dns_server import DnsServer, dns_server_fixture  # noqa: F401
from hato.mailauth import DkimKeys, dns_record

GOOD = "good.test"
HOST = "mail.good.test"


def standing(dns: DnsServer, data_dir: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """``hato test ARGS --json`` with the zone's name server; status, report, stdout."""
    data_dir.mkdir(parents=True, exist_ok=True)
    done = hato(
        "test",
        *args,
        "--json",
        "--timeout",
        "5",
        "--data-dir",
        str(data_dir),
        "-o",
        f'dns.nameservers=["{dns.address}"]',
        "-o",
        f"server.hostname={HOST}",
        "-o",
        f'server.local_domains=["{GOOD}"]',
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout), done.stdout


def txt(dns: DnsServer, name: str, *strings: str) -> None:
    dns.add(name, "TXT", " ".join(f'"{s}"' for s in strings))


def publish_key(dns: DnsServer, data_dir: Path, domain: str = GOOD) -> str:
    """A DKIM key made in the data directory and its record published; the record name."""
    key = DkimKeys(data_dir / "dkim").generate(domain)
    record = dns_record(key)
    txt(dns, record.name, *record.strings)
    return record.name


def good_domain(dns: DnsServer, data_dir: Path) -> str:
    txt(dns, GOOD, "v=spf1 mx ip4:192.0.2.0/24 -all")
    txt(dns, f"_dmarc.{GOOD}", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test")
    txt(dns, f"_mta-sts.{GOOD}", "v=STSv1; id=20240101T000000")
    txt(dns, f"_smtp._tls.{GOOD}", "v=TLSRPTv1; rua=mailto:tlsrpt@good.test")
    return publish_key(dns, data_dir)


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


def codes(report: dict[str, Any]) -> list[str]:
    return [f["code"] for check in report["checks"] for f in check["findings"]] + [
        f["code"] for f in report["findings"]
    ]


def test_good_domain_passes_with_every_check_ok(dns_server: DnsServer, tmp_path: Path) -> None:
    key_name = good_domain(dns_server, tmp_path)
    status, report, _ = standing(dns_server, tmp_path, GOOD, "--dns")
    assert status == 0, report
    assert report["passed"] and report["mode"] == "dns"
    found = checks(report)
    assert [c["name"] for c in report["checks"]] == ["spf", "dmarc", "dkim", "mta-sts", "tls-rpt"]
    assert {c["status"] for c in report["checks"]} == {"ok"}, report["checks"]
    assert codes(report) == []
    spf = found["spf"]["facts"]
    assert spf["lookups"] == 1 and spf["all"] == "-"
    assert [t["term"] for t in spf["terms"]] == ["mx", "ip4:192.0.2.0/24", "-all"]
    assert found["dmarc"]["facts"]["p"] == "reject"
    assert found["dmarc"]["facts"]["rua"] == ["mailto:dmarc@good.test"]
    assert found["dkim"]["subject"] == key_name
    assert found["dkim"]["facts"]["published"] == "match"
    assert found["mta-sts"]["facts"]["id"] == "20240101T000000"


def test_good_domain_text_report(dns_server: DnsServer, tmp_path: Path) -> None:
    good_domain(dns_server, tmp_path)
    done = hato(
        "test",
        GOOD,
        "--dns",
        "--data-dir",
        str(tmp_path),
        "-o",
        f'dns.nameservers=["{dns_server.address}"]',
        "-o",
        f'server.local_domains=["{GOOD}"]',
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^ +OK +spf +good.test +1 DNS lookup of 10, ends in -all$", done.stdout, re.M)
    assert "v=spf1 mx ip4:192.0.2.0/24 -all" in done.stdout
    assert done.stdout.rstrip().endswith("PASS: every check is ok")


def test_plus_all_is_anyone_may_send(dns_server: DnsServer, tmp_path: Path) -> None:
    txt(dns_server, "open.test", "v=spf1 +all")
    txt(dns_server, "_dmarc.open.test", "v=DMARC1; p=reject; rua=mailto:d@open.test")
    status, report, _ = standing(dns_server, tmp_path, "open.test", "--dns")
    assert status == 1
    spf = checks(report)["spf"]
    assert spf["status"] == "fail"
    [item] = spf["findings"]
    assert item["code"] == "spf-plus-all"
    assert "anyone may send as you" in item["title"]
    # Not hosted here: DKIM selectors cannot be listed, which is a fact, not a failure.
    dkim = checks(report)["dkim"]
    assert dkim["status"] == "unknown"
    assert [f["code"] for f in dkim["findings"]] == ["dkim-selectors-unknown"]


def test_eleven_includes_are_too_many_lookups(dns_server: DnsServer, tmp_path: Path) -> None:
    includes = " ".join(f"include:s{n}.many.test" for n in range(11))
    txt(dns_server, "many.test", f"v=spf1 {includes} -all")
    for n in range(11):
        txt(dns_server, f"s{n}.many.test", f"v=spf1 ip4:192.0.2.{n} -all")
    txt(dns_server, "_dmarc.many.test", "v=DMARC1; p=reject; rua=mailto:d@many.test")
    status, report, _ = standing(dns_server, tmp_path, "many.test", "--dns")
    assert status == 1
    spf = checks(report)["spf"]
    assert spf["facts"]["lookups"] == 11
    assert [f["code"] for f in spf["findings"]] == ["spf-too-many-lookups"]
    assert "11 DNS lookups" in spf["findings"][0]["title"]


def test_lookups_counted_through_nested_includes(dns_server: DnsServer, tmp_path: Path) -> None:
    txt(dns_server, "nest.test", "v=spf1 include:a.nest.test redirect=r.nest.test")
    txt(dns_server, "a.nest.test", "v=spf1 a mx include:b.nest.test ~all")
    txt(dns_server, "b.nest.test", "v=spf1 exists:%{i}.x.nest.test ptr -all")
    txt(dns_server, "r.nest.test", "v=spf1 a:x.nest.test -all")
    txt(dns_server, "_dmarc.nest.test", "v=DMARC1; p=reject; rua=mailto:d@nest.test")
    status, report, _ = standing(dns_server, tmp_path, "nest.test", "--dns")
    spf = checks(report)["spf"]
    # include, redirect; a, mx, include; exists, ptr; a = 8
    assert spf["facts"]["lookups"] == 8
    assert spf["facts"]["all"] == "-"  # through redirect=
    assert status == 0, spf


def test_several_spf_records_and_missing_include(dns_server: DnsServer, tmp_path: Path) -> None:
    txt(dns_server, "two.test", "v=spf1 -all")
    txt(dns_server, "two.test", "v=spf1 mx -all")
    txt(dns_server, "gone.test", "v=spf1 include:nothing.gone.test ?all")
    status, report, _ = standing(dns_server, tmp_path, "two.test", "--dns")
    assert status == 1
    assert [f["code"] for f in checks(report)["spf"]["findings"]] == ["spf-multiple"]
    status, report, _ = standing(dns_server, tmp_path, "gone.test", "--dns")
    assert [f["code"] for f in checks(report)["spf"]["findings"]] == [
        "spf-include-broken",
        "spf-no-all",
    ]


def test_missing_dmarc_fails_and_p_none_warns(dns_server: DnsServer, tmp_path: Path) -> None:
    txt(dns_server, "nodmarc.test", "v=spf1 -all")
    status, report, _ = standing(dns_server, tmp_path, "nodmarc.test", "--dns")
    assert status == 1
    dmarc = checks(report)["dmarc"]
    assert dmarc["status"] == "fail"
    assert [f["code"] for f in dmarc["findings"]] == ["dmarc-none"]
    txt(dns_server, "watch.test", "v=spf1 -all")
    txt(dns_server, "_dmarc.watch.test", "v=DMARC1; p=none; sp=reject; pct=50; rua=mailto:d@w.test")
    status, report, _ = standing(dns_server, tmp_path, "watch.test", "--dns")
    assert status == 0
    dmarc = checks(report)["dmarc"]
    assert dmarc["status"] == "warn"
    assert [f["code"] for f in dmarc["findings"]] == ["dmarc-monitoring"]
    assert "monitoring only" in dmarc["findings"][0]["title"]
    assert (dmarc["facts"]["sp"], dmarc["facts"]["pct"]) == ("reject", 50)


def test_dkim_record_not_matching_the_key(dns_server: DnsServer, tmp_path: Path) -> None:
    txt(dns_server, GOOD, "v=spf1 -all")
    txt(dns_server, f"_dmarc.{GOOD}", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test")
    key = DkimKeys(tmp_path / "dkim").generate(GOOD)
    other = DkimKeys(tmp_path / "other").generate(GOOD, selector=key.selector)
    txt(dns_server, key.record_name, *dns_record(other).strings)
    status, report, _ = standing(dns_server, tmp_path, GOOD, "--dns")
    assert status == 1
    dkim = checks(report)["dkim"]
    assert dkim["status"] == "fail"
    assert [f["code"] for f in dkim["findings"]] == ["dkim-mismatch"]
    assert key.record_name in dkim["findings"][0]["title"]


def test_hosted_domain_without_keys_and_bad_optional_records(
    dns_server: DnsServer, tmp_path: Path
) -> None:
    txt(dns_server, GOOD, "v=spf1 -all")
    txt(dns_server, f"_dmarc.{GOOD}", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test")
    txt(dns_server, f"_mta-sts.{GOOD}", "v=STSv1; id=not-valid!")
    txt(dns_server, f"_smtp._tls.{GOOD}", "v=TLSRPTv1; rua=ftp://x")
    status, report, _ = standing(dns_server, tmp_path, f"someone@{GOOD}", "--dns")
    assert status == 0  # warnings only
    found = checks(report)
    assert [f["code"] for f in found["dkim"]["findings"]] == ["dkim-no-keys"]
    assert [f["code"] for f in found["mta-sts"]["findings"]] == ["mta-sts-invalid"]
    assert [f["code"] for f in found["tls-rpt"]["findings"]] == ["tls-rpt-invalid"]


def test_dns_failure_is_a_finding(dns_server: DnsServer, tmp_path: Path) -> None:
    dns_server.servfail("broken.test")
    status, report, _ = standing(dns_server, tmp_path, "broken.test", "--dns")
    assert status == 1
    assert "record-temporary" in codes(report)


def test_usage_errors(dns_server: DnsServer, tmp_path: Path) -> None:
    for args in (
        ("--dns",),
        ("--dns", "--self", GOOD),
        ("--self", GOOD),
        ("--self", "--address", "not-an-ip"),
        (GOOD, "--dnsbl", "zen.test"),
        ("[127.0.0.1]", "--dns"),
    ):
        done = hato("test", *args, "--data-dir", str(tmp_path))
        assert done.returncode == 2, (args, done.stdout, done.stderr)


# -- --self ----------------------------------------------------------------------------------

SELF = "127.0.0.1"
LISTED = "127.0.0.2"  # RFC 5782 2.1: the test address every list lists


def certificate(path: Path, *, days: float) -> None:
    """A self-signed certificate for HOST valid for ``days`` from now (negative: expired)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def reverse(dns: DnsServer, address: str, name: str) -> None:
    dns.add(".".join(reversed(address.split("."))) + ".in-addr.arpa", "PTR", name + ".")


def test_self_everything_right(dns_server: DnsServer, tmp_path: Path) -> None:
    reverse(dns_server, SELF, HOST)
    dns_server.add(HOST, "A", SELF)
    dns_server.add("2.0.0.127.zen.test", "A", "127.0.0.2")  # lists 127.0.0.2, not us
    good_domain(dns_server, tmp_path)
    dns_server.remove(GOOD, "TXT")
    txt(dns_server, GOOD, f"v=spf1 ip4:{SELF} -all")
    certificate(tmp_path / "tls" / "cert.pem", days=90)
    status, report, _ = standing(
        dns_server, tmp_path, "--self", "--address", SELF, "--dnsbl", "zen.test"
    )
    assert status == 0, report
    assert report["mode"] == "self" and report["address"] == SELF
    found = checks(report)
    assert [(c["name"], c["subject"]) for c in report["checks"]] == [
        ("reverse-dns", SELF),
        ("dnsbl", "zen.test"),
        ("spf", GOOD),
        ("dkim", f"{found['dkim']['facts']['selector']}._domainkey.{GOOD}"),
        ("dmarc", f"_dmarc.{GOOD}"),
        ("certificate", str(tmp_path / "tls" / "cert.pem")),
    ]
    assert {c["status"] for c in report["checks"]} == {"ok"}, report["checks"]
    assert found["reverse-dns"]["facts"]["confirmed"] == HOST
    assert found["spf"]["facts"]["result"] == "pass"
    assert 88 <= found["certificate"]["facts"]["days_left"] <= 90


def test_self_listed_unconfirmed_spf_fail_and_expiring(
    dns_server: DnsServer, tmp_path: Path
) -> None:
    address = LISTED
    reverse(dns_server, address, "elsewhere.test")  # no A record back to the address
    dns_server.add("2.0.0.127.zen.test", "A", "127.0.0.2")
    dns_server.add("2.0.0.127.zen.test", "TXT", '"listed for testing"')
    txt(dns_server, GOOD, "v=spf1 ip4:192.0.2.1 -all")
    txt(dns_server, f"_dmarc.{GOOD}", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test")
    certificate(tmp_path / "tls" / "cert.pem", days=3)
    status, report, _ = standing(
        dns_server, tmp_path, "--self", "--address", address, "--dnsbl", "zen.test"
    )
    assert status == 1
    found = checks(report)
    assert [f["code"] for f in found["reverse-dns"]["findings"]] == ["rdns-unconfirmed"]
    assert [f["code"] for f in found["dnsbl"]["findings"]] == ["dnsbl-listed"]
    assert "listed for testing" in found["dnsbl"]["findings"][0]["title"]
    assert [f["code"] for f in found["spf"]["findings"]] == ["spf-self-fail"]
    assert found["spf"]["facts"]["result"] == "fail"
    assert [f["code"] for f in found["dkim"]["findings"]] == ["dkim-no-keys"]
    assert [f["code"] for f in found["certificate"]["findings"]] == ["self-cert-expiring"]


def test_self_helo_mismatch_and_expired_certificate(dns_server: DnsServer, tmp_path: Path) -> None:
    address = "127.0.0.3"
    reverse(dns_server, address, "other.good.test")
    dns_server.add("other.good.test", "A", address)
    certificate(tmp_path / "tls" / "cert.pem", days=-1)
    status, report, _ = standing(dns_server, tmp_path, "--self", "--address", address)
    assert status == 1
    found = checks(report)
    assert found["reverse-dns"]["status"] == "warn"
    assert [f["code"] for f in found["reverse-dns"]["findings"]] == ["rdns-helo-mismatch"]
    assert "dnsbl" not in found  # no list in [policy] and none given
    assert [f["code"] for f in found["certificate"]["findings"]] == ["self-cert-expired"]
    assert found["certificate"]["status"] == "fail"


def test_self_blocklists_from_policy_rules(dns_server: DnsServer, tmp_path: Path) -> None:
    reverse(dns_server, LISTED, HOST)
    dns_server.add(HOST, "A", LISTED)
    dns_server.add("2.0.0.127.rules.test", "A", "127.0.0.4")
    status, report, _ = standing(
        dns_server,
        tmp_path,
        "--self",
        "--address",
        LISTED,
        "-o",
        'policy.connect=[{action = "reject", dnsbl = ["rules.test"]}]',
    )
    assert status == 1
    dnsbl = checks(report)["dnsbl"]
    assert dnsbl["subject"] == "rules.test"
    assert dnsbl["facts"]["answers"] == ["127.0.0.4"]
    assert [f["code"] for f in dnsbl["findings"]] == ["dnsbl-listed"]
