"""ARC (RFC 8617): sealing a forwarded message, a second hop, and a broken chain."""

from __future__ import annotations

import time

import pytest

from dkim_test_keys import ed25519_key, publish, rsa_key
from dns_server import DnsServer, dns_server_fixture  # noqa: F401 - provides `dns_server`
from hato.mailauth import (
    AuthResults,
    MailDns,
    SigningError,
    SigningKey,
    SpfResult,
    arc_seal,
    sign_dkim,
    verify_arc,
    verify_dkim,
)

MESSAGE = b"""\
From: Alice <alice@origin.example>
To: list@first.example
Subject: Forward me
Date: Mon, 01 Jan 2024 12:00:00 +0000
Message-ID: <fwd@origin.example>

Hello, the forwarder.
""".replace(b"\n", b"\r\n")


@pytest.fixture
def dns(dns_server: DnsServer) -> MailDns:
    return MailDns([dns_server.nameserver], timeout=2.0)


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {
        "origin": rsa_key("origin.example", "o1"),
        "first": rsa_key("first.example", "arc1"),
        "second": rsa_key("second.example", "arc2"),
    }


@pytest.fixture
def published(dns_server: DnsServer, keys: dict[str, SigningKey]) -> dict[str, SigningKey]:
    for key in keys.values():
        publish(dns_server, key)
    return keys


def hop(dns: MailDns, message: bytes, key: SigningKey, authserv_id: str) -> bytes:
    """What a forwarder does: check, then seal with what it found."""
    results = AuthResults(
        spf=SpfResult("pass", "mailfrom", "origin.example", "alice@origin.example"),
        dkim=verify_dkim(dns, message),
        arc=verify_arc(dns, message),
    )
    return arc_seal(message, key, authserv_id=authserv_id, results=results, now=time.time())


def test_no_chain_is_none(dns: MailDns) -> None:
    assert verify_arc(dns, MESSAGE).result == "none"


def test_two_hops(dns: MailDns, published: dict[str, SigningKey]) -> None:
    original = sign_dkim(MESSAGE, [published["origin"]]) + MESSAGE
    first_set = hop(dns, original, published["first"], "mx.first.example")
    assert first_set.startswith(b"ARC-Seal: i=1; cv=none;")
    assert b"ARC-Message-Signature: i=1;" in first_set
    assert b"ARC-Authentication-Results: i=1; mx.first.example;" in first_set
    assert b"dkim=pass header.d=origin.example" in first_set.replace(b"\r\n ", b" ")
    assert b"Authentication-Results: mx" not in first_set.replace(b"ARC-Auth", b"")
    once = first_set + original
    first = verify_arc(dns, once)
    assert (first.result, first.instance, first.sealers) == ("pass", 1, ("first.example",))

    second_set = hop(dns, once, published["second"], "mx.second.example")
    assert second_set.startswith(b"ARC-Seal: i=2; cv=pass;")
    twice = second_set + once
    second = verify_arc(dns, twice)
    assert (second.result, second.instance) == ("pass", 2)
    assert second.sealers == ("first.example", "second.example")

    for tampered in (
        twice.replace(b"Hello, the forwarder.", b"Hello, the thief."),
        twice.replace(b"Subject: Forward me", b"Subject: Pay me"),
        twice.replace(b"ARC-Seal: i=1; cv=none;", b"ARC-Seal: i=1; cv=pass;"),
    ):
        broken = verify_arc(dns, tampered)
        assert (broken.result, broken.instance) == ("fail", 2)
        assert broken.reason


def test_a_failed_chain_is_sealed_with_cv_fail(
    dns: MailDns, published: dict[str, SigningKey]
) -> None:
    once = hop(dns, MESSAGE, published["first"], "mx.first.example") + MESSAGE
    broken = once.replace(b"Hello", b"Goodbye")
    assert verify_arc(dns, broken).result == "fail"
    sealed = hop(dns, broken, published["second"], "mx.second.example")
    assert sealed.startswith(b"ARC-Seal: i=2; cv=fail;")
    assert verify_arc(dns, sealed + broken).result == "fail"


def test_forged_results_claiming_us_are_not_carried(
    dns: MailDns, published: dict[str, SigningKey]
) -> None:
    forged = b"Authentication-Results: mx.first.example; dmarc=pass header.from=evil\r\n"
    sealed = hop(dns, forged + MESSAGE, published["first"], "mx.first.example")
    assert b"evil" not in sealed
    assert verify_arc(dns, sealed + forged + MESSAGE).result == "pass"


def test_missing_key_and_servfail_fail(
    dns_server: DnsServer, dns: MailDns, keys: dict[str, SigningKey]
) -> None:
    sealed = hop(dns, MESSAGE, keys["first"], "mx.first.example") + MESSAGE
    assert verify_arc(dns, sealed).result == "fail"  # nothing published
    dns_server.servfail("arc1._domainkey.first.example")
    failed = verify_arc(dns, sealed)
    assert failed.result == "fail" and "lookup failed" in failed.reason


def test_seal_refuses_ed25519() -> None:
    with pytest.raises(SigningError, match="rsa-sha256"):
        arc_seal(
            MESSAGE, ed25519_key("first.example", "e"), authserv_id="mx", results=AuthResults()
        )


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"ARC-Seal: i=1\r\n\r\n",
        b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x; s=y; b=\r\nARC-Seal: i=1\r\n\r\n",
        b"ARC-Seal: i=x; d=;\r\nARC-Message-Signature: i=1;;;\r\n\r\n",
        b"ARC-Seal no colon\r\n\r\n",
        bytes(range(256)) * 4,
    ],
)
def test_garbage_gets_a_result(dns: MailDns, message: bytes) -> None:
    assert verify_arc(dns, message).result in ("fail", "none")
