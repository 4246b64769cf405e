"""The one ``host:port`` grammar: next hops (smarthost, transports), name servers, and the
per-domain tables, parsed once by the loader into the typed values routing uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from hato.config import (
    ConfigError,
    HostPort,
    Settings,
    TlsPolicy,
    TlsPolicyEntry,
    Transport,
    load_settings,
    settings_to_dict,
    settings_to_toml,
)


def load(**overrides: object) -> Settings:
    # A fixed hostname, so nothing here asks the machine for its name.
    return load_settings(overrides={"server.hostname": "mx.here.test", **overrides})


def refusal(key: str, value: object) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(**{key: value})
    return [(problem.key, problem.message) for problem in caught.value.problems]


# --- Accepted: what each form becomes ---------------------------------------------------------

NEXT_HOPS = [
    ("relay.test", HostPort("relay.test", 25)),
    ("relay.test:587", HostPort("relay.test", 587)),
    ("Relay.TEST:587", HostPort("relay.test", 587)),
    ("bücher.test:26", HostPort("xn--bcher-kva.test", 26)),
    ("192.0.2.1", HostPort("192.0.2.1", 25)),
    ("192.0.2.1:2525", HostPort("192.0.2.1", 2525)),
    ("[192.0.2.1]:2525", HostPort("192.0.2.1", 2525)),
    ("[192.0.2.1]", HostPort("192.0.2.1", 25)),
    ("2001:DB8::0001", HostPort("2001:db8::1", 25)),
    ("[2001:db8::1]:2525", HostPort("2001:db8::1", 2525)),
    ("[::1]", HostPort("::1", 25)),
]


@pytest.mark.parametrize(("text", "expected"), NEXT_HOPS)
def test_a_smarthost_in_every_form(text: str, expected: HostPort) -> None:
    assert load(**{"relay.smarthost": text}).relay.smarthost == expected


@pytest.mark.parametrize(("text", "expected"), NEXT_HOPS)
def test_a_transport_next_hop_in_every_form(text: str, expected: HostPort) -> None:
    transports = load(**{"relay.transports": [f"Example.TEST  {text} "]}).relay.transports
    assert transports == (Transport("example.test", expected),)


def test_an_empty_smarthost_is_none() -> None:
    assert load().relay.smarthost is None
    assert load(**{"relay.smarthost": ""}).relay.smarthost is None


def test_a_transport_to_local_has_no_next_hop() -> None:
    transports = load(**{"relay.transports": ["example.test local"]}).relay.transports
    assert transports == (Transport("example.test", None),)


def test_host_port_says_whether_it_is_an_address() -> None:
    assert HostPort("192.0.2.1", 25).is_ip and HostPort("::1", 25).is_ip
    assert not HostPort("relay.test", 25).is_ip


def test_host_port_checks_its_port() -> None:
    with pytest.raises(ValueError, match="1-65535"):
        HostPort("relay.test", 0)


def test_tls_policy_entries_are_typed() -> None:
    entries = load(**{"relay.tls_policy": ["Example.TEST verify", "other.test none"]}).relay
    assert entries.tls_policy == (
        TlsPolicyEntry("example.test", TlsPolicy.VERIFY),
        TlsPolicyEntry("other.test", TlsPolicy.NONE),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", HostPort("127.0.0.1", 53)),
        ("127.0.0.1:5353", HostPort("127.0.0.1", 5353)),
        ("[127.0.0.1]:5353", HostPort("127.0.0.1", 5353)),
        ("[::1]:5353", HostPort("::1", 5353)),
        ("[::1]", HostPort("::1", 53)),
        ("::1", HostPort("::1", 53)),
    ],
)
def test_a_name_server_in_every_form(text: str, expected: HostPort) -> None:
    assert load(**{"dns.nameservers": [text]}).dns.nameservers == (expected,)


def test_the_same_entry_twice_is_kept_once() -> None:
    relay = load(
        **{
            "relay.transports": ["a.test local", "A.test local"],
            "relay.tls_policy": ["a.test may", "a.test may"],
        }
    ).relay
    assert relay.transports == (Transport("a.test", None),)
    assert relay.tls_policy == (TlsPolicyEntry("a.test", TlsPolicy.MAY),)
    servers = load(**{"dns.nameservers": ["127.0.0.1", "127.0.0.1:53"]}).dns.nameservers
    assert servers == (HostPort("127.0.0.1", 53),)


# --- Refused: once, under the key, saying why ---------------------------------------------------

BAD_NEXT_HOPS = [
    ("[relay.test]:587", "brackets are for IP addresses"),
    ("[192.0.2.1", '"[ADDRESS]:PORT"'),
    ("[::1]2525", '"[ADDRESS]:PORT"'),
    ("::1:2525:x", "needs brackets"),
    ("relay.test:0", "port must be 1-65535"),
    ("relay.test:65536", "port must be 1-65535"),
    ("relay.test:+25", "port must be 1-65535"),
    ("relay.test:", "port must be 1-65535"),
    ("[::1]:", "port must be 1-65535"),
    ("relay.test:smtp", "port must be 1-65535"),
    ("bad_host!:25", "not a valid domain name"),
    ("relay.test.:25", "final dot"),
    (":25", "cannot be empty"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_NEXT_HOPS)
def test_a_bad_smarthost_is_named_under_its_key(text: str, fragment: str) -> None:
    [(key, message)] = refusal("relay.smarthost", text)
    assert key == "relay.smarthost"
    assert fragment in message


@pytest.mark.parametrize(("text", "fragment"), BAD_NEXT_HOPS)
def test_a_bad_transport_next_hop_is_named_under_its_key(text: str, fragment: str) -> None:
    [(key, message)] = refusal("relay.transports", ["a.test local", f"b.test {text}"])
    assert key == "relay.transports[1]"
    assert fragment in message


@pytest.mark.parametrize(
    ("key", "value", "where", "fragment"),
    [
        ("relay.transports", ["example.test"], "relay.transports[0]", '"domain value"'),
        ("relay.transports", ["bad_domain! local"], "relay.transports[0]", "bad_domain!"),
        ("relay.transports", [25], "relay.transports[0]", "expected a string"),
        ("relay.transports", "a.test local", "relay.transports", "expected an array"),
        ("relay.tls_policy", ["a.test sometimes"], "relay.tls_policy[0]", 'got "sometimes"'),
        ("relay.tls_policy", ["a.test VERIFY"], "relay.tls_policy[0]", 'got "VERIFY"'),
        ("relay.smarthost_tls", "always", "relay.smarthost_tls", 'got "always"'),
        ("dns.nameservers", ["ns.example.test"], "dns.nameservers[0]", "is an IP address"),
        ("dns.nameservers", [""], "dns.nameservers[0]", "is an IP address"),
        ("dns.nameservers", ["127.0.0.1:x"], "dns.nameservers[0]", "port must be 1-65535"),
        ("dns.nameservers", ["[::1"], "dns.nameservers[0]", '"[ADDRESS]:PORT"'),
    ],
)
def test_other_bad_entries_are_named_under_their_key(
    key: str, value: object, where: str, fragment: str
) -> None:
    [(found, message)] = refusal(key, value)
    assert found == where
    assert fragment in message


@pytest.mark.parametrize(
    ("key", "entries"),
    [
        ("relay.transports", ["b.test local", "a.test local", "A.test b.test"]),
        ("relay.tls_policy", ["b.test may", "a.test may", "a.test none"]),
    ],
)
def test_two_different_entries_for_one_domain_are_refused(key: str, entries: list[str]) -> None:
    # Of two, one would be ignored without a word; say which entry repeats which.
    assert refusal(key, entries) == [(f"{key}[2]", f'"a.test" is already in {key}[1]')]


# --- Written back: canonical text that reads back equal ---------------------------------------


def typed_settings() -> Settings:
    return load(
        **{
            "relay.smarthost": "Relay.Test",
            "relay.transports": [
                "bücher.test [2001:DB8::0001]:26",
                "b.test local",
                "c.test 127.0.0.1",
            ],
            "relay.tls_policy": ["a.test verify"],
            "dns.nameservers": ["::1", "127.0.0.1:5353", "[127.0.0.2]"],
        }
    )


def test_the_values_are_written_as_canonical_text() -> None:
    written = settings_to_dict(typed_settings())
    assert written["relay"]["smarthost"] == "relay.test:25"
    assert written["relay"]["transports"] == [
        "xn--bcher-kva.test [2001:db8::1]:26",
        "b.test local",
        "c.test 127.0.0.1:25",
    ]
    assert written["relay"]["tls_policy"] == ["a.test verify"]
    assert written["dns"]["nameservers"] == ["[::1]:53", "127.0.0.1:5353", "127.0.0.2:53"]
    assert settings_to_dict(load())["relay"]["smarthost"] == ""


def test_settings_to_toml_round_trips_the_typed_values(tmp_path: Path) -> None:
    settings = typed_settings()
    path = tmp_path / "hato.toml"
    path.write_text(settings_to_toml(settings), encoding="utf-8")

    assert load_settings(path) == settings
