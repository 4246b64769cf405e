"""SRS0/SRS1 rewriting and reversal, in postsrsd's address forms."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest

from hato.mailauth import Srs, is_srs, load_srs_secret

SECRET = b"s" * 32
DAY = 86400.0
NOW = 20000 * DAY + 3600.0  # day 20000: 20000 % 1024 = 544 = 17 * 32 + 0 -> "RA"


def test_srs0_form_and_round_trip() -> None:
    srs = Srs(SECRET, "Fwd.Example.NET")
    rewritten = srs.forward("alice@example.com", now=NOW)
    local, _, domain = rewritten.rpartition("@")
    assert domain == "fwd.example.net"
    tag, digest, stamp, orig_domain, orig_local = local.split("=")
    assert (tag, stamp, orig_domain, orig_local) == ("SRS0", "RA", "example.com", "alice")
    # HMAC-SHA1 over timestamp, domain and local part, base64, four characters.
    mac = hmac.new(SECRET, b"raexample.comalice", hashlib.sha1).digest()
    assert digest == base64.b64encode(mac).decode()[:4]
    assert is_srs(rewritten)
    assert srs.reverse(rewritten, now=NOW + 5 * DAY) == "alice@example.com"


def test_srs1_of_an_srs0() -> None:
    first = Srs(b"first-forwarder-secret!!", "first.example")
    second = Srs(SECRET, "second.example")
    srs0 = first.forward("bob@origin.example", now=NOW)
    srs1 = second.forward(srs0, now=NOW)
    opaque = srs0.split("@")[0][4:]  # "=HHHH=TT=origin.example=bob"
    assert srs1.startswith("SRS1=") and srs1.endswith(f"=first.example={opaque}@second.example")
    back = second.reverse(srs1, now=NOW)
    assert back == srs0
    assert first.reverse(back, now=NOW) == "bob@origin.example"
    # A third hop keeps the first forwarder and puts its own hash on it.
    third = Srs(b"third-forwarder-secret!!", "third.example")
    srs1_again = third.forward(srs1, now=NOW)
    assert srs1_again.endswith(f"=first.example={opaque}@third.example")
    assert third.reverse(srs1_again, now=NOW) == srs0


def test_tampered_hash_or_address_is_refused() -> None:
    srs = Srs(SECRET, "fwd.example.net")
    rewritten = srs.forward("alice@example.com", now=NOW)
    local, _, domain = rewritten.rpartition("@")
    parts = local.split("=")
    parts[1] = "AAAA" if parts[1] != "AAAA" else "BBBB"
    assert srs.reverse("=".join(parts) + "@" + domain, now=NOW) is None
    forged = rewritten.replace("alice@", "mallory@").replace("=alice", "=mallory")
    assert srs.reverse(forged, now=NOW) is None
    assert Srs(b"another-secret-entirely!", "fwd.example.net").reverse(rewritten, now=NOW) is None


def test_expired_and_future_stamps() -> None:
    srs = Srs(SECRET, "fwd.example.net")
    rewritten = srs.forward("alice@example.com", now=NOW)
    assert srs.reverse(rewritten, now=NOW + 21 * DAY) == "alice@example.com"
    assert srs.reverse(rewritten, now=NOW + 22 * DAY) is None
    assert srs.reverse(rewritten, now=NOW - 2 * DAY) is None  # from the future


def test_case_does_not_matter() -> None:
    srs = Srs(SECRET, "fwd.example.net")
    rewritten = srs.forward("Alice@Example.com", now=NOW)
    assert srs.reverse(rewritten.lower(), now=NOW) == "alice@example.com"
    assert srs.reverse(rewritten.upper(), now=NOW) == "ALICE@EXAMPLE.COM"
    srs1 = srs.forward(Srs(b"x" * 32, "a.example").forward("b@c.example", now=NOW), now=NOW)
    assert srs.reverse(srs1.lower(), now=NOW) is not None


@pytest.mark.parametrize(
    "address", ["", "nobody", "someone@fwd.example.net", "SRS0=abcd=RA=x.example=y@FWD.example.net"]
)
def test_not_rewritten(address: str) -> None:
    assert Srs(SECRET, "fwd.example.net").forward(address, now=NOW) == address


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",
        "SRS0=abcd=RA=example.com=alice@elsewhere.example",  # not our domain
        "SRS0=abcd=RA=example.com@fwd.example.net",  # a part missing
        "SRS0=====@fwd.example.net",
        "SRS1=abcd=host.example@fwd.example.net",
        "SRS1=abcd=host.example=x@fwd.example.net",
        "SRS2=abcd=RA=example.com=alice@fwd.example.net",
        "@fwd.example.net",
    ],
)
def test_reverse_refuses_what_is_not_ours(address: str) -> None:
    assert Srs(SECRET, "fwd.example.net").reverse(address, now=NOW) is None


def test_bad_timestamp_characters() -> None:
    srs = Srs(SECRET, "fwd.example.net")
    local = srs.forward("alice@example.com", now=NOW).split("@")[0]
    tag, digest, _, domain, user = local.split("=")
    assert srs.reverse(f"{tag}={digest}=R1={domain}={user}@fwd.example.net", now=NOW) is None


def test_is_srs() -> None:
    assert is_srs("SRS0=HHHH=TT=example.com=a@fwd.example")
    assert is_srs("srs1=HHHH=host==HHHH=TT=d=l@fwd.example")
    assert is_srs("SRS0+HHHH=TT=example.com=a@fwd.example")
    assert not is_srs("SRS0@fwd.example")
    assert not is_srs("srs@example.com")
    assert not is_srs("SRS0=HHHH=TT=example.com=a")


def test_secret_too_short() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Srs(b"short", "fwd.example.net")


def test_load_srs_secret_made_once(tmp_path: Path) -> None:
    path = tmp_path / "srs.key"
    secret = load_srs_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_srs_secret(path) == secret
    assert sorted(p.name for p in tmp_path.iterdir()) == ["srs.key"]
    other = tmp_path / "other.key"
    assert load_srs_secret(other) != secret


def test_load_srs_secret_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "srs.key"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"srs\.key"):
        load_srs_secret(path)
