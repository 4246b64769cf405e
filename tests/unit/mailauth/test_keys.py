"""DKIM keys on disk: made with the right modes, published, checked against a real DNS
server on loopback, rotated and retired on an injected clock, and usable by dkimpy."""

from __future__ import annotations

import base64
import datetime
import json
import stat
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.mailauth import (
    DkimKey,
    DkimKeyError,
    DkimKeys,
    InvalidKeyInput,
    KeyCheck,
    MailDns,
    check_published,
    dns_record,
)

# 2026-12-15 12:00 UTC: default selectors are hato202612 and hato202612e.
NOW = datetime.datetime(2026, 12, 15, 12, tzinfo=datetime.UTC).timestamp()
WEEK = 604800.0
MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: keys\r\n"
    b"Date: Tue, 15 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <keys@example.com>\r\n"
    b"\r\n"
    b"Signed with a key from DATA/dkim.\r\n"
)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> DkimKeys:
    return DkimKeys(tmp_path / "dkim", retire_after=WEEK, clock=clock)


def resolver(server: DnsServer) -> MailDns:
    return MailDns([server.nameserver], timeout=1.0)


def publish(server: DnsServer, key: DkimKey) -> None:
    record = dns_record(key)
    server.add(record.name, "TXT", " ".join(f'"{s}"' for s in record.strings))


def quoted(text: str) -> str:
    """``text`` as zone-file TXT strings of at most 255 octets."""
    return " ".join(f'"{text[at : at + 255]}"' for at in range(0, len(text), 255))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- generation ------------------------------------------------------------------------------


def test_rsa_key_is_pkcs8_with_private_modes(store: DkimKeys, tmp_path: Path) -> None:
    key = store.generate("Example.COM.")
    assert (key.domain, key.selector, key.algorithm, key.bits) == (
        "example.com",
        "hato202612",
        "rsa-sha256",
        2048,
    )
    assert key.state == "active" and key.created == NOW
    assert mode(tmp_path / "dkim") == 0o700
    assert mode(key.path.parent) == 0o700
    assert mode(key.path) == 0o600
    assert mode(tmp_path / "dkim" / "keys.json") == 0o600
    assert not [p for p in key.path.parent.iterdir() if p.name.endswith(".tmp")]
    pem = key.path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    signing = key.signing_key()
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signing.public_key == base64.b64encode(der).decode()
    assert signing.private_key == pem
    assert (signing.domain, signing.selector) == ("example.com", "hato202612")


def test_ed25519_key_is_the_base64_seed(store: DkimKeys) -> None:
    key = store.generate("example.com", algorithm="ed25519-sha256")
    assert (key.selector, key.bits) == ("hato202612e", 256)
    signing = key.signing_key()
    seed = base64.b64decode(signing.private_key)
    assert len(seed) == 32
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(signing.public_key) == raw and len(raw) == 32


def test_selectors_are_unique_per_domain(store: DkimKeys) -> None:
    assert store.generate("example.com").selector == "hato202612"
    assert store.rotate("example.com").selector == "hato202612-2"
    assert store.generate("example.org").selector == "hato202612"
    unicode = store.generate("bücher.example", selector="Mail.2026")
    assert (unicode.domain, unicode.selector) == ("xn--bcher-kva.example", "mail.2026")
    assert store.domains() == ["example.com", "example.org", "xn--bcher-kva.example"]
    with pytest.raises(DkimKeyError, match="already has a key with the selector"):
        store.generate("example.org", selector="hato202612", state="pending")


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"bits": 512}, "1024 to 4096"),
        ({"bits": 1023}, "1024 to 4096"),
        ({"bits": 8192}, "1024 to 4096"),
        ({"selector": "bad_selector"}, "not a valid selector"),
        ({"selector": "-x"}, "not a valid selector"),
        ({"selector": ""}, "not a valid selector"),
        ({"algorithm": "rsa-sha1"}, "unknown algorithm"),
        ({"state": "retired"}, "active or pending"),
    ],
)
def test_bad_input_is_refused(store: DkimKeys, arguments: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidKeyInput, match=says):
        store.generate("example.com", **arguments)  # type: ignore[arg-type]
    assert store.keys() == []


def test_bad_domains_are_refused(store: DkimKeys) -> None:
    for name in ("bad_domain!", "[192.0.2.1]", ""):
        with pytest.raises(InvalidKeyInput):
            store.generate(name)
    assert store.signing_keys("bad_domain!") == []
    assert store.signing_keys("") == []


def test_a_second_active_key_is_refused(store: DkimKeys) -> None:
    store.generate("example.com")
    with pytest.raises(DkimKeyError, match=r"hato dkim rotate example\.com"):
        store.generate("example.com")
    store.generate("example.com", algorithm="ed25519-sha256")  # another algorithm: fine
    assert [k.algorithm for k in store.keys("example.com")] == ["rsa-sha256", "ed25519-sha256"]


def test_a_damaged_state_file_is_an_error_not_a_traceback(store: DkimKeys, tmp_path: Path) -> None:
    store.generate("example.com")
    (tmp_path / "dkim" / "keys.json").write_text("{not json")
    with pytest.raises(DkimKeyError, match="damaged"):
        store.signing_keys("example.com")


# --- signing keys and the running server -------------------------------------------------------


def test_signing_keys_follow_changes_made_elsewhere(tmp_path: Path, clock: Clock) -> None:
    server = DkimKeys(tmp_path / "dkim", clock=clock)
    assert server.signing_keys("example.com") == []  # nothing on disk yet, nothing made
    assert not (tmp_path / "dkim").exists()
    cli = DkimKeys(tmp_path / "dkim", clock=clock)
    rsa_key = cli.generate("example.com")
    assert [k.selector for k in server.signing_keys("EXAMPLE.com")] == ["hato202612"]
    ed_key = cli.generate("example.com", algorithm="ed25519-sha256")
    found = server.signing_keys("example.com")
    assert [(k.selector, k.algorithm) for k in found] == [
        ("hato202612", "rsa-sha256"),
        ("hato202612e", "ed25519-sha256"),
    ]
    assert server.signing_keys("example.org") == []
    cli.record_check("example.com", ed_key.selector, KeyCheck("mismatch", "another key"))
    assert [k.selector for k in server.signing_keys("example.com")] == [rsa_key.selector]
    included = server.signing_keys("example.com", include_contradicted=True)
    assert len(included) == 2
    cli.record_check("example.com", ed_key.selector, KeyCheck("match", "ok"))
    assert len(server.signing_keys("example.com")) == 2
    cli.remove("example.com", rsa_key.selector)
    assert [k.selector for k in server.signing_keys("example.com")] == [ed_key.selector]
    assert not rsa_key.path.exists()


def test_pending_and_retired_keys_are_never_signed_with(store: DkimKeys) -> None:
    store.generate("example.com", state="pending")
    assert store.signing_keys("example.com") == []


# --- rotation -------------------------------------------------------------------------------


def test_rotate_switch_retire(store: DkimKeys, clock: Clock, dns_server: DnsServer) -> None:
    dns = resolver(dns_server)
    old = store.generate("example.com", bits=1024)
    new = store.rotate("example.com")
    assert (new.state, new.bits, new.selector) == ("pending", 1024, "hato202612-2")
    with pytest.raises(DkimKeyError, match="already has the pending"):
        store.rotate("example.com")
    assert [k.selector for k in store.signing_keys("example.com")] == [old.selector]

    with pytest.raises(DkimKeyError, match=r"no TXT record at hato202612-2\._domainkey"):
        store.switch("example.com", dns)
    assert store.key("example.com", new.selector).check_state == "missing"
    assert store.key("example.com", new.selector).state == "pending"

    publish(dns_server, new)
    clock.now += 3600
    switched = store.switch("example.com", dns)
    assert switched.selector == new.selector and switched.state == "active"
    states = {k.selector: (k.state, k.retire_at) for k in store.keys("example.com")}
    assert states == {
        old.selector: ("retiring", NOW + 3600 + WEEK),
        new.selector: ("active", None),
    }
    assert store.key("example.com", new.selector).check_state == "match"
    assert [k.selector for k in store.signing_keys("example.com")] == [new.selector]

    clock.now = NOW + 3600 + WEEK - 1
    assert store.key("example.com", old.selector).state == "retiring"
    clock.now = NOW + 3600 + WEEK
    assert store.key("example.com", old.selector).state == "retired"
    assert old.path.exists()  # its file is kept
    store.record_check("example.com", new.selector, KeyCheck("match", "ok"))  # any change
    saved = json.loads((store.directory / "keys.json").read_text())
    assert {k["selector"]: k["state"] for k in saved["keys"]}[old.selector] == "retired"

    with pytest.raises(DkimKeyError, match="no pending rsa-sha256 key"):
        store.switch("example.com", dns)


def test_switch_with_force_needs_no_record(store: DkimKeys, dns_server: DnsServer) -> None:
    store.generate("example.com")
    new = store.rotate("example.com")
    switched = store.switch("example.com", resolver(dns_server), force=True)
    assert switched.selector == new.selector
    assert switched.state == "active"


# --- the DNS record ---------------------------------------------------------------------------


def test_rsa_4096_record_is_split_at_255_octets(store: DkimKeys, dns_server: DnsServer) -> None:
    key = store.generate("example.com", bits=4096)
    record = dns_record(key)
    assert record.name == "hato202612._domainkey.example.com"
    assert record.value.startswith("v=DKIM1; k=rsa; p=MII")
    assert record.value == "v=DKIM1; k=rsa; p=" + key.signing_key().public_key
    assert len(record.strings) == 3
    assert all(len(s.encode()) <= 255 for s in record.strings)
    assert [len(s) for s in record.strings[:-1]] == [255, 255]
    assert "".join(record.strings) == record.value
    quoted = " ".join(f'"{s}"' for s in record.strings)
    assert record.zone_line == f"{record.name}. IN TXT ( {quoted} )"
    publish(dns_server, key)
    assert resolver(dns_server).txt(record.name) == [record.value.encode()]
    assert check_published(resolver(dns_server), key) == KeyCheck(
        "match", f"{record.name} publishes this key"
    )


def test_ed25519_record(store: DkimKeys) -> None:
    key = store.generate("example.com", algorithm="ed25519-sha256")
    record = dns_record(key)
    assert record.value == f"v=DKIM1; k=ed25519; p={key.signing_key().public_key}"
    assert record.strings == (record.value,)


# --- check_published -----------------------------------------------------------------------


def test_check_published(store: DkimKeys, dns_server: DnsServer) -> None:
    dns = resolver(dns_server)
    key = store.generate("example.com")
    name = dns_record(key).name
    public = key.signing_key().public_key
    assert check_published(dns, key).state == "missing"

    def answer(*values: str) -> KeyCheck:
        dns_server.remove(name)
        for value in values:
            dns_server.add(name, "TXT", value)
        return check_published(dns, key)

    # Whitespace inside p= is folding, not part of the key (RFC 6376 3.6.1).
    spaced = " ".join(public[at : at + 40] for at in range(0, len(public), 40))
    assert answer(f'"v=DKIM1; k=rsa; " {quoted("p=" + spaced)}').state == "match"
    assert answer(quoted(f"p={public}")).state == "match"  # v= and k= are optional
    other = DkimKeys(store.directory.parent / "other").generate("example.com")
    found = answer(quoted(f"v=DKIM1; k=rsa; p={other.signing_key().public_key}"))
    assert found == KeyCheck("mismatch", f"the record at {name} publishes a different public key")
    found = answer('"v=DKIM1; k=rsa; p="')
    assert found.state == "mismatch" and "revokes" in found.detail
    found = answer(quoted(f"v=DKIM1; k=ed25519; p={public}"))
    assert found.state == "mismatch" and "k=ed25519" in found.detail
    found = answer(quoted(f"v=DKIM1; p={public}"), '"v=DKIM1; p=abc"')
    assert found.state == "mismatch" and "2 TXT records" in found.detail
    found = answer('"v=spf1 -all"')
    assert found.state == "mismatch" and "not DKIM1" in found.detail
    found = answer(quoted(f"k=rsa; v=DKIM1; p={public}"))
    assert found.state == "mismatch" and "first tag" in found.detail
    found = answer('"garbage without tags"')
    assert found.state == "mismatch" and "not a DKIM key record" in found.detail
    found = answer(quoted(f"v=DKIM1; h=sha1; p={public}"))
    assert found.state == "mismatch" and "sha256" in found.detail
    dns_server.remove(name)

    dns_server.servfail(name)
    found = check_published(dns, key)
    assert found.state == "temperror" and name in found.detail


# --- the published key verifies with dkimpy --------------------------------------------------


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_dkimpy_signs_with_the_key_and_verifies_the_record(
    store: DkimKeys, dns_server: DnsServer, algorithm: str
) -> None:
    key = store.generate("example.com", algorithm=algorithm)
    publish(dns_server, key)
    dns = resolver(dns_server)

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        found = dns.txt(name.decode().rstrip("."))
        return found[0] if found else None

    signing = store.signing_keys("example.com")[0]
    field = dkim.sign(
        MESSAGE,
        signing.selector.encode(),
        signing.domain.encode(),
        signing.private_key,
        signature_algorithm=algorithm.encode(),
        include_headers=[b"from", b"to", b"subject"],
    )
    assert dkim.verify(field + MESSAGE, dnsfunc=txt)
    tampered = field + MESSAGE.replace(b"Subject: keys", b"Subject: other")
    assert not dkim.verify(tampered, dnsfunc=txt)
