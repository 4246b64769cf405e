"""The Authentication-Results field (RFC 8601): its text, its folding, and who claims it."""

from __future__ import annotations

import authres
import pytest

from hato.mailauth import (
    ArcResult,
    AuthResults,
    DkimResult,
    DmarcResult,
    SpfResult,
    authentication_results,
    claims_authserv_id,
)

ALL_PASS = AuthResults(
    spf=SpfResult("pass", "mailfrom", "example.com", "alice@example.com"),
    dkim=(DkimResult("pass", "example.com", "sel", "rsa-sha256", "", "abcdefghijklmnop"),),
    dmarc=DmarcResult("pass", "example.com"),
    arc=ArcResult("none"),
)


def unfold(field: bytes) -> str:
    return field.decode().replace("\r\n ", " ").removesuffix("\r\n")


def test_the_example_field() -> None:
    field = authentication_results("host", ALL_PASS)
    assert unfold(field) == (
        "Authentication-Results: host; spf=pass smtp.mailfrom=example.com;"
        " dkim=pass header.d=example.com header.s=sel header.b=abcdefgh;"
        " dmarc=pass header.from=example.com; arc=none"
    )


def test_missing_methods_are_none() -> None:
    assert unfold(authentication_results("mx.example.net", AuthResults())) == (
        "Authentication-Results: mx.example.net; spf=none; dkim=none; dmarc=none; arc=none"
    )


def test_folded_at_78_with_crlf_and_parsable() -> None:
    results = AuthResults(
        spf=SpfResult(
            "softfail",
            "helo",
            "helo.example.org",
            "postmaster@helo.example.org",
            "transitioning (see) \x1b[31m",
        ),
        dkim=tuple(
            DkimResult(
                "fail",
                f"d{i}.example.com",
                f"selector{i}",
                "rsa-sha256",
                "",
                f"b{i}bcdefgh",
                'body hash mismatch "quoted" \\ and\r\nnewline',
            )
            for i in range(3)
        ),
        dmarc=DmarcResult(
            "fail", "example.com", "reject", "reject", reason="no aligned identifier"
        ),
        arc=ArcResult("fail", 2, ("a.example", "b.example"), "ARC-Seal[1] did not validate"),
    )
    field = authentication_results("mx.example.net", results)
    assert field.endswith(b"\r\n") and field.count(b"\n") == field.count(b"\r\n")
    lines = field.removesuffix(b"\r\n").split(b"\r\n")
    assert len(lines) > 3
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(b" ") for line in lines[1:])
    assert all(0x20 <= byte < 0x7F for byte in field.removesuffix(b"\r\n").replace(b"\r\n", b""))
    parsed = authres.parse(unfold(field))
    assert parsed.authserv_id == "mx.example.net"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("spf", "softfail"),
        ("dkim", "fail"),
        ("dkim", "fail"),
        ("dkim", "fail"),
        ("dmarc", "fail"),
        ("arc", "fail"),
    ]
    assert parsed.results[1].reason.startswith("body hash mismatch")
    assert "smtp.helo=helo.example.org" in unfold(field)


@pytest.mark.parametrize(
    ("body", "claimed"),
    [
        (b"mx.example.net; spf=pass smtp.mailfrom=example.com", True),
        (b" MX.Example.NET ; none", True),
        (b"mx.example.net 1; dkim=pass header.d=x", True),
        (b"(forged) mx.example.net;\r\n spf=pass", True),
        (b"mx.example.net", True),
        (b"mx.example.net; this is ((( not parsable", True),
        (b"other.example.net; spf=pass smtp.mailfrom=mx.example.net", False),
        (b"mx.example.net.evil; none", False),
        (b"", False),
        (b"\xff\xfe;;;", False),
    ],
)
def test_claims_authserv_id(body: bytes, claimed: bool) -> None:
    assert claims_authserv_id(body, "mx.example.net") is claimed
