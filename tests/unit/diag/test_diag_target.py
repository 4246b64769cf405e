"""What TARGET and --server name, and the usage errors for what names nothing."""

from __future__ import annotations

import pytest

from hato.diag import Target, TargetError, parse_server, parse_target


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "user@Example.COM",
            Target("user@Example.COM", "address", address="user@Example.COM", domain="example.com"),
        ),
        ("example.com", Target("example.com", "domain", domain="example.com")),
        ("example.com.", Target("example.com.", "domain", domain="example.com")),
        (
            "mx.example.com:2525",
            Target("mx.example.com:2525", "host", host="mx.example.com", port=2525),
        ),
        ("192.0.2.1", Target("192.0.2.1", "host", host="192.0.2.1", port=25)),
        ("[2001:db8::1]:587", Target("[2001:db8::1]:587", "host", host="2001:db8::1", port=587)),
        ("2001:db8::1", Target("2001:db8::1", "host", host="2001:db8::1", port=25)),
        ("bücher.example", Target("bücher.example", "domain", domain="xn--bcher-kva.example")),
    ],
)
def test_targets(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "user@",
        "@example.com",
        "exa mple.com",
        "host:0",
        "host:99999",
        "host:abc",
        "[192.0.2.1",
        "[not-an-ip]:25",
        "user@[300.1.1.1]",
    ],
)
def test_bad_targets(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)


def test_server() -> None:
    assert parse_server("mx.example.com") == ("mx.example.com", 25)
    assert parse_server("127.0.0.1:2525") == ("127.0.0.1", 2525)
    assert parse_server("[::1]:2525") == ("::1", 2525)
    with pytest.raises(TargetError):
        parse_server(":25")
