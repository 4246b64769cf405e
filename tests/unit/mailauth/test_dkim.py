"""DKIM verification and signing against the test DNS server: RFC 8463's published
example, round trips, every way a signature goes wrong, and a 50 MB message."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dkim_test_keys import ed25519_key, publish, rsa_key, txt
from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.mailauth import MailDns, SigningError, SigningKey, sign_dkim, verify_dkim

DOMAIN = "example.com"

# RFC 8463 Appendix A.3: the example message with both signatures, and A.2's key records.
RFC8463_MESSAGE = b"""\
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=test; t=1528637909; h=from : to : subject :
 date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3
 DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz
 dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.
""".replace(b"\n", b"\r\n")
RFC8463_KEYS = {
    "brisbane._domainkey.football.example.com": (
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    ),
    "test._domainkey.football.example.com": (
        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3id"
        "Y6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+"
        "PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
    ),
}

MESSAGE = b"""\
From: Alice <alice@example.com>
To: Bob <bob@example.org>
Subject: Lunch
Date: Mon, 01 Jan 2024 12:00:00 +0000
Message-ID: <lunch@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
X-Not-Signed: anything
Received: from somewhere

Shall we?
""".replace(b"\n", b"\r\n")


@pytest.fixture
def dns(dns_server: DnsServer) -> MailDns:
    return MailDns([dns_server.nameserver], timeout=2.0)


@pytest.fixture(scope="module")
def rsa() -> SigningKey:
    return rsa_key(DOMAIN, "rsa2024")


@pytest.fixture(scope="module")
def ed() -> SigningKey:
    return ed25519_key(DOMAIN, "ed2024")


def signed(keys: list[SigningKey], message: bytes = MESSAGE, **options: float) -> bytes:
    return sign_dkim(message, keys, **options) + message


def test_rfc8463_example_verifies(dns_server: DnsServer, dns: MailDns) -> None:
    for name, value in RFC8463_KEYS.items():
        dns_server.add(name, "TXT", txt(value))
    results = verify_dkim(dns, RFC8463_MESSAGE)
    assert [(r.result, r.algorithm, r.selector) for r in results] == [
        ("pass", "ed25519-sha256", "brisbane"),
        ("pass", "rsa-sha256", "test"),
    ]
    assert results[0].domain == "football.example.com"
    assert results[0].identity == "@football.example.com"
    assert results[0].header_b == "/gCrinpc"
    # The same message with its body changed fails both.
    tampered = RFC8463_MESSAGE.replace(b"hungry", b"thirsty")
    assert [r.result for r in verify_dkim(dns, tampered)] == ["fail", "fail"]


@pytest.mark.parametrize("kind", ["rsa", "ed"])
def test_round_trip(
    dns_server: DnsServer, dns: MailDns, rsa: SigningKey, ed: SigningKey, kind: str
) -> None:
    key = rsa if kind == "rsa" else ed
    publish(dns_server, key)
    fields = sign_dkim(MESSAGE, [key], now=time.time())
    assert fields.startswith(b"DKIM-Signature: ") and fields.endswith(b"\r\n")
    assert all(len(line) <= 78 for line in fields.split(b"\r\n"))
    assert b"\n" not in fields.replace(b"\r\n", b"")
    [result] = verify_dkim(dns, fields + MESSAGE)
    assert (result.result, result.domain, result.selector, result.algorithm) == (
        "pass",
        DOMAIN,
        key.selector,
        key.algorithm,
    )
    tags = _tags(fields)
    assert tags["c"] == "relaxed/relaxed" and "l" not in tags and "x" not in tags
    assert result.header_b == tags["b"][:8]
    assert tags["h"].split(":") == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "from",  # oversigned: listed once more than it occurs
    ]


def test_two_keys_two_signatures(
    dns_server: DnsServer, dns: MailDns, rsa: SigningKey, ed: SigningKey
) -> None:
    publish(dns_server, rsa)
    publish(dns_server, ed)
    message = signed([rsa, ed])
    assert message.count(b"DKIM-Signature:") == 2
    results = verify_dkim(dns, message)
    assert [(r.result, r.algorithm) for r in results] == [
        ("pass", "rsa-sha256"),
        ("pass", "ed25519-sha256"),
    ]


def test_expiry_sets_x_and_an_expired_signature_fails(
    dns_server: DnsServer, dns: MailDns, ed: SigningKey
) -> None:
    publish(dns_server, ed)
    now = time.time()
    tags = _tags(sign_dkim(MESSAGE, [ed], expiry=86400, now=now))
    assert int(tags["x"]) == int(tags["t"]) + 86400 == int(now) + 86400
    old = signed([ed], expiry=3600, now=now - 3 * 86400)
    [result] = verify_dkim(dns, old)
    assert result.result == "fail"
    assert "x=" in result.reason


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda m: m.replace(b"Shall we?", b"Shall we not?"), "body"),
        (lambda m: m.replace(b"Subject: Lunch", b"Subject: Dinner"), "subject"),
        (
            lambda m: m.replace(b"From: Alice", b"From: Mallory <m@evil.example>\r\nFrom: Alice"),
            "from",
        ),
        (lambda m: m + b"PS: more\r\n", "appended"),
    ],
)
def test_tampering_fails(
    dns_server: DnsServer, dns: MailDns, rsa: SigningKey, ed: SigningKey, change, what: str
) -> None:
    publish(dns_server, rsa)
    publish(dns_server, ed)
    results = verify_dkim(dns, change(signed([rsa, ed])))
    assert [r.result for r in results] == ["fail", "fail"], what
    assert all(r.reason for r in results)


def test_unsigned_fields_may_change(dns_server: DnsServer, dns: MailDns, ed: SigningKey) -> None:
    publish(dns_server, ed)
    message = signed([ed]).replace(b"X-Not-Signed: anything", b"X-Not-Signed: changed")
    assert [r.result for r in verify_dkim(dns, message)] == ["pass"]


def test_wrong_key_fails(dns_server: DnsServer, dns: MailDns, rsa: SigningKey) -> None:
    publish(dns_server, rsa, public_key=rsa_key(DOMAIN, "other").public_key)
    [result] = verify_dkim(dns, signed([rsa]))
    assert result.result == "fail"


def test_missing_and_revoked_keys_are_permerror(
    dns_server: DnsServer, dns: MailDns, rsa: SigningKey
) -> None:
    [missing] = verify_dkim(dns, signed([rsa]))
    assert missing.result == "permerror"
    assert "no key record" in missing.reason
    publish(dns_server, rsa, public_key="")
    [revoked] = verify_dkim(dns, signed([rsa]))
    assert (revoked.result, "revoked" in revoked.reason) == ("permerror", True)


def test_small_rsa_key_fails(dns_server: DnsServer, dns: MailDns) -> None:
    small = rsa_key(DOMAIN, "small", bits=512)
    publish(dns_server, small)
    [result] = verify_dkim(dns, signed([small]))
    assert result.result == "fail"
    assert "too small" in result.reason and "512" in result.reason


def test_servfail_is_temperror(dns_server: DnsServer, dns: MailDns, ed: SigningKey) -> None:
    publish(dns_server, ed)
    dns_server.servfail(f"{ed.selector}._domainkey.{DOMAIN}")
    [result] = verify_dkim(dns, signed([ed]))
    assert result.result == "temperror"
    assert result.reason


@pytest.mark.parametrize(
    ("edit", "expected_reason"),
    [
        (lambda s: s.replace(b" d=example.com;", b""), "d="),
        (lambda s: re.sub(rb"b=[^;]*$", b"b=!!!not*base64!!!\r\n", s), "base64"),
        (lambda s: s.replace(b"a=ed25519-sha256", b"a=ed448-sha512"), "algorithm"),
        (lambda s: s.replace(b"v=1;", b"v=2;"), "v="),
        (lambda s: s.replace(b"v=1;", b"v=1; s=other;"), "s"),
        (lambda s: s.replace(b"c=relaxed/relaxed", b"c=bogus/bogus"), "c="),
        (lambda s: b"DKIM-Signature: v=1\r\n", "missing"),
        (lambda s: b"DKIM-Signature: ;;;===;\r\n", ""),
    ],
)
def test_malformed_signatures_are_permerror(
    dns_server: DnsServer, dns: MailDns, ed: SigningKey, edit, expected_reason: str
) -> None:
    publish(dns_server, ed)
    fields = edit(sign_dkim(MESSAGE, [ed]))
    [result] = verify_dkim(dns, fields + MESSAGE)
    assert result.result == "permerror"
    assert expected_reason in result.reason
    assert result.reason


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\r\n\r\n",
        b"DKIM-Signature\r\nno colon here\r\n\r\nbody",
        b"\x00\xff\xfe DKIM-Signature: v=1\r\n",
        b"DKIM-Signature: v=1; d=\xff\xfe; s=\x00; a=rsa-sha256; b=; bh=; h=from\r\n\r\n",
        bytes(range(256)) * 10,
    ],
)
def test_garbage_gets_a_result(dns: MailDns, message: bytes) -> None:
    results = verify_dkim(dns, message)
    assert all(r.result == "permerror" and r.reason for r in results)


def test_signing_refuses_bad_keys() -> None:
    bad = SigningKey(DOMAIN, "s", "rsa-sha256", b"not a key", "")
    with pytest.raises(SigningError, match="not a PEM"):
        sign_dkim(MESSAGE, [bad])
    with pytest.raises(SigningError, match="Ed25519"):
        sign_dkim(MESSAGE, [SigningKey(DOMAIN, "s", "ed25519-sha256", b"short", "")])
    with pytest.raises(SigningError, match="rsa-sha1"):
        sign_dkim(MESSAGE, [SigningKey(DOMAIN, "s", "rsa-sha1", b"", "")])
    assert sign_dkim(MESSAGE, []) == b""


LARGE_SCRIPT = """
import resource, sys, time, tracemalloc
sys.path[:0] = sys.argv[4:]
from hato.config import HostPort
from hato.mailauth import MailDns, sign_dkim, verify_dkim
from dkim_test_keys import ed25519_key
from hato.mailauth import SigningKey
key = SigningKey("example.com", sys.argv[2], "ed25519-sha256", sys.argv[3].encode(), "")
line = b"x" * 76 + b"\\r\\n"
head = b"From: a@example.com\\r\\nSubject: big\\r\\n\\r\\n"
message = head + line * (50 * 1024 * 1024 // len(line))
host, port = sys.argv[1].rsplit(":", 1)
dns = MailDns([HostPort(host, int(port))], timeout=5)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
start = time.monotonic()
fields = sign_dkim(message, [key])
sign_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.reset_peak()
whole = fields + message
results = verify_dkim(dns, whole)
verify_peak = tracemalloc.get_traced_memory()[1]
print(len(message), results[0].result, sign_peak, verify_peak, time.monotonic() - start,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
"""


def test_fifty_megabytes(dns_server: DnsServer, ed: SigningKey, tmp_path: Path) -> None:
    publish(dns_server, ed)
    script = tmp_path / "large.py"
    script.write_text(textwrap.dedent(LARGE_SCRIPT))
    here = Path(__file__).parent
    run = subprocess.run(
        [
            sys.executable,
            str(script),
            dns_server.address,
            ed.selector,
            ed.private_key.decode(),
            str(here),
            str(here.parent.parent),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    size, result, sign_peak, verify_peak, seconds, rss_kib = run.stdout.split()
    assert result == "pass"
    mib = 1024 * 1024
    print(
        f"50 MB message: sign peak {int(sign_peak) / mib:.0f} MiB, verify peak "
        f"{int(verify_peak) / mib:.0f} MiB (beyond the message), {float(seconds):.1f} s, "
        f"max RSS grew {int(rss_kib) / 1024:.0f} MiB"
    )
    # Bounded: a few copies of the message, not one per line or per signature.
    assert int(verify_peak) < 6 * int(size)
    assert int(sign_peak) < 6 * int(size)


def _tags(fields: bytes) -> dict[str, str]:
    value = re.sub(rb"\r\n[ \t]", b"", fields.split(b":", 1)[1])
    tags = {}
    for spec in value.split(b";"):
        name, _, tag = spec.partition(b"=")
        tags[name.strip().decode()] = re.sub(r"\s+", "", tag.decode())
    return tags
