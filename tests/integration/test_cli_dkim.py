"""``hato dkim`` and ``hato domain add`` as an administrator runs them, against the test DNS
server: the record printed is the record that, once published, verifies the key's
signatures (signed and verified with dkimpy directly), and rotation waits for DNS."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.mailauth import MailDns

Cli = Callable[..., subprocess.CompletedProcess[str]]

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: published\r\n"
    b"Message-ID: <published@example.com>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


class Admin:
    """``hato ARGS --config CONFIG --data-dir DATA`` with dns.nameservers at the test server."""

    def __init__(self, run: Cli, tmp_path: Path, dns_server: DnsServer) -> None:
        self.run = run
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()
        self.config = tmp_path / "hato.toml"
        self.config.write_text(
            f'[server]\nhostname = "mx.test.example"\n'
            f'[dns]\nnameservers = ["{dns_server.address}"]\ntimeout = 2.0\n'
        )
        self.dns_server = dns_server

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args, "--config", self.config, "--data-dir", self.data_dir)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (done.stdout, done.stderr)
        return done.stdout

    def dkim_keys(self) -> list[dict[str, object]]:
        found = json.loads(self.ok("dkim", "list", "--json"))
        assert isinstance(found, list)
        return found

    def publish(self, printed: str) -> list[str]:
        """Put every zone-file line ``printed`` shows into the DNS server; their names."""
        names = []
        for line in printed.splitlines():
            if not line.startswith("zone:"):
                continue
            owner, _, rest = line.removeprefix("zone:").strip().partition(" IN TXT ")
            assert rest.startswith("( ") and rest.endswith(" )"), line
            name = owner.removesuffix(".")
            self.dns_server.add(name, "TXT", rest[2:-2])
            names.append(name)
        return names


@pytest.fixture
def admin(hato_cli: Cli, tmp_path: Path, dns_server: DnsServer) -> Admin:
    return Admin(hato_cli, tmp_path, dns_server)


def verifies(admin: Admin, domain: str, selector: str, algorithm: str) -> bool:
    """Sign MESSAGE with the stored private key (dkimpy) and verify it through DNS."""
    key = next(k for k in admin.dkim_keys() if k["domain"] == domain and k["selector"] == selector)
    private = Path(str(key["path"])).read_bytes()
    field = dkim.sign(
        MESSAGE,
        selector.encode(),
        domain.encode(),
        private,
        signature_algorithm=algorithm.encode(),
        include_headers=[b"from", b"to", b"subject"],
    )
    resolver = MailDns([admin.dns_server.nameserver], timeout=2.0)

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        found = resolver.txt(name.decode().rstrip("."))
        return found[0] if found else None

    return bool(dkim.verify(field + MESSAGE, dnsfunc=txt))


def test_domain_add_prints_the_record_that_verifies(admin: Admin) -> None:
    printed = admin.ok("domain", "add", "example.com")
    assert printed.startswith("added domain example.com\n")
    assert "name:   hato" in printed and "._domainkey.example.com" in printed
    [key] = admin.dkim_keys()
    assert (key["algorithm"], key["bits"], key["state"]) == ("rsa-sha256", 2048, "active")
    selector = str(key["selector"])

    failed = admin("dkim", "check")
    assert failed.returncode == 1
    assert f"{selector}._domainkey.example.com (rsa-sha256, active): NOT PUBLISHED" in failed.stdout
    assert not verifies(admin, "example.com", selector, "rsa-sha256")

    assert admin.publish(printed) == [f"{selector}._domainkey.example.com"]
    checked = admin.ok("dkim", "check", "example.com")
    assert "published, and matches the key" in checked
    assert admin.dkim_keys()[0]["check_state"] == "match"
    assert verifies(admin, "example.com", selector, "rsa-sha256")


def test_domain_add_with_ed25519_and_without_dkim(admin: Admin) -> None:
    printed = admin.ok("domain", "add", "example.com", "--ed25519")
    assert printed.count("zone:") == 2 and "k=ed25519; p=" in printed
    algorithms = {str(k["algorithm"]): str(k["selector"]) for k in admin.dkim_keys()}
    assert set(algorithms) == {"rsa-sha256", "ed25519-sha256"}
    # What hato dkim dns prints is what the domain must publish: the same two records.
    records = admin.ok("dkim", "dns", "example.com")
    assert len(admin.publish(records)) == 2
    assert "matches" in admin.ok("dkim", "check")
    assert verifies(admin, "example.com", algorithms["ed25519-sha256"], "ed25519-sha256")
    assert verifies(admin, "example.com", algorithms["rsa-sha256"], "rsa-sha256")

    assert admin.ok("domain", "add", "example.org", "--no-dkim") == "added domain example.org\n"
    assert [k["domain"] for k in admin.dkim_keys()] == ["example.com", "example.com"]
    done = admin("dkim", "dns", "example.org")
    assert done.returncode == 1 and "hato dkim keygen example.org" in done.stderr


def test_rotate_and_switch_wait_for_the_record(admin: Admin) -> None:
    admin.publish(admin.ok("domain", "add", "example.com"))
    [old] = admin.dkim_keys()
    rotated = admin.ok("dkim", "rotate", "example.com")
    assert "pending" in rotated and "next: once the record is in DNS" in rotated
    assert "hato dkim switch example.com" in rotated
    new = next(k for k in admin.dkim_keys() if k["state"] == "pending")

    refused = admin("dkim", "switch", "example.com")
    assert refused.returncode == 1
    assert f"not switching example.com to {new['selector']}: no TXT record" in refused.stderr
    assert {k["selector"]: k["state"] for k in admin.dkim_keys()} == {
        old["selector"]: "active",
        new["selector"]: "pending",
    }
    assert admin("dkim", "check").returncode == 1  # the pending key is not published yet

    # Both records are to be published now; publishing the new one lets the switch happen.
    assert admin.ok("dkim", "dns", "example.com").count("zone:") == 2
    admin.dns_server.remove(f"{old['selector']}._domainkey.example.com")
    admin.publish(admin.ok("dkim", "dns", "example.com"))
    switched = admin.ok("dkim", "switch", "example.com")
    assert f"example.com now signs rsa-sha256 with {new['selector']}" in switched
    assert f"{old['selector']} is retiring" in switched
    states = {k["selector"]: k["state"] for k in admin.dkim_keys()}
    assert states == {old["selector"]: "retiring", new["selector"]: "active"}
    assert "matches" in admin.ok("dkim", "check")
    assert verifies(admin, "example.com", str(new["selector"]), "rsa-sha256")

    removed = admin.ok("dkim", "remove", "example.com", str(old["selector"]))
    assert f"removed the rsa-sha256 key {old['selector']}" in removed
    assert [k["selector"] for k in admin.dkim_keys()] == [new["selector"]]


def test_check_says_mismatch_and_temperror(admin: Admin, dns_server: DnsServer) -> None:
    admin.ok("domain", "add", "example.com")
    [key] = admin.dkim_keys()
    name = f"{key['selector']}._domainkey.example.com"
    dns_server.add(name, "TXT", '"v=DKIM1; k=rsa; p="')
    done = admin("dkim", "check", "example.com")
    assert done.returncode == 1
    assert "DOES NOT MATCH" in done.stdout and "revokes the key" in done.stdout
    assert "mail is not signed with this key" in done.stdout
    assert admin.dkim_keys()[0]["check_state"] == "mismatch"

    dns_server.servfail(name)
    done = admin("dkim", "check")
    assert done.returncode == 1 and "COULD NOT BE CHECKED" in done.stdout
    assert admin.dkim_keys()[0]["check_state"] == "temperror"


def test_refusals_explain_themselves(admin: Admin) -> None:
    def refused(code: int, says: str, *args: str) -> None:
        done = admin(*args)
        assert done.returncode == code, (done.stdout, done.stderr)
        assert says in done.stderr, done.stderr

    refused(1, "no keys for any domain", "dkim", "check")
    refused(1, "not a local domain", "dkim", "keygen", "nope.test")
    admin.ok("domain", "add", "example.com", "--no-dkim")
    refused(2, "1024 to 4096", "dkim", "keygen", "example.com", "--bits", "512")
    refused(2, "not a valid selector", "dkim", "keygen", "example.com", "--selector", "a_b")
    refused(2, "not a valid domain", "dkim", "keygen", "bad_domain!")
    refused(2, "Invalid value", "dkim", "keygen", "example.com", "--algorithm", "rsa-sha1")
    assert "selector mail2026" in admin.ok(
        "dkim", "keygen", "example.com", "--selector", "MAIL2026", "--bits", "1024"
    )
    refused(1, "hato dkim rotate example.com", "dkim", "keygen", "example.com")
    refused(1, "no pending rsa-sha256 key", "dkim", "switch", "example.com")
    refused(1, "no key other", "dkim", "remove", "example.com", "other")
    refused(1, "not a local domain", "dkim", "rotate", "nope.test")
