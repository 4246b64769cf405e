"""Normalization of domains and addresses: the one place the store and router compare them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hato.accounts import (
    AccountError,
    Address,
    InvalidInput,
    display_domain,
    normalize_domain,
    parse_address,
    parse_alias_source,
)


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  example.com ", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.Example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
        ("1and1.example", "1and1.example"),
    ],
)
def test_domains_become_lowercase_a_labels(given_name: str, expected: str) -> None:
    assert normalize_domain(given_name) == expected


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("", "empty"),
        (".", "empty"),
        ("[192.0.2.1]", "address literal"),
        ("exa mple.com", "not a valid domain"),
        ("-example.com", 'label "-example"'),
        ("example..com", "not a valid domain"),
        ("under_score.example", 'label "under_score"'),
        ("192.0.2.1", "looks like an IP address"),
        ("xn--zzzz-.example", "not a valid domain"),
        ("a" * 64 + ".example", "not a valid domain"),
        (".".join(["abcdefghi"] * 26), "longer than 253"),
    ],
)
def test_bad_domains_are_refused_saying_why(bad: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        normalize_domain(bad)


_LABEL = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_UNICODE_LABEL = st.text(st.sampled_from("abcxyzäöüßéñ"), min_size=1, max_size=8)


@given(st.lists(_LABEL | _UNICODE_LABEL, min_size=1, max_size=4), st.sampled_from(["com", "de"]))
def test_normalizing_twice_changes_nothing(labels: list[str], tld: str) -> None:
    name = ".".join([*labels, tld])
    try:
        once = normalize_domain(name)
    except InvalidInput:
        return  # e.g. "a--b" labels that IDNA refuses; refusal is checked above
    assert normalize_domain(once) == once
    assert once == once.lower() and once.isascii()
    assert normalize_domain(display_domain(once)) == once


def test_display_domain_shows_unicode() -> None:
    assert display_domain("xn--bcher-kva.example") == "bücher.example"
    assert display_domain("example.com") == "example.com"


def test_invalid_input_is_an_account_error() -> None:
    assert issubclass(InvalidInput, AccountError)


@pytest.mark.parametrize(
    ("text", "local", "domain"),
    [
        ("alice@example.com", "alice", "example.com"),
        ("<alice@example.com>", "alice", "example.com"),
        ("Alice@Example.COM.", "Alice", "example.com"),
        ("jörg@bücher.example", "jörg", "xn--bcher-kva.example"),
        ('"john doe"@example.com', '"john doe"', "example.com"),
        ("a+tag@example.com", "a+tag", "example.com"),
    ],
)
def test_addresses_keep_the_local_part_and_normalize_the_domain(
    text: str, local: str, domain: str
) -> None:
    address = parse_address(text)
    assert (address.local_part, address.domain) == (local, domain)
    assert address.text == f"{local}@{domain}"


@pytest.mark.parametrize(
    "bad",
    ["alice", "@example.com", "@relay.example:alice@example.com", "a b@example.com", "<>", ""],
)
def test_malformed_addresses_are_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_address(bad)


def test_address_literals_only_when_asked_for() -> None:
    with pytest.raises(InvalidInput, match="address literal"):
        parse_address("alice@[192.0.2.1]")
    address = parse_address("alice@[192.0.2.1]", allow_literal=True)
    assert address.domain == "[192.0.2.1]"


def test_keys_ignore_quoting_and_by_default_case() -> None:
    quoted, plain, upper = (
        parse_address(a) for a in ('"alice"@d.example', "alice@d.example", "ALICE@d.example")
    )
    assert quoted.content == "alice"
    assert quoted.key(False) == plain.key(False) == upper.key(False)
    assert quoted.key(True) == plain.key(True) != upper.key(True)


def test_quoted_pairs_are_unescaped_in_the_key() -> None:
    address = parse_address(r'"a\"b"@d.example')
    assert address.content == 'a"b'


def test_postmaster_is_case_insensitive_even_when_local_parts_are_not() -> None:
    # RFC 5321 4.5.1: "Postmaster" in any case reaches the postmaster.
    assert parse_address("PostMaster@d.example").key(True) == "postmaster"
    assert parse_address("PostMaster@d.example").is_postmaster


def test_with_content_quotes_only_when_needed() -> None:
    base = Address("x", "d.example")
    assert base.with_content("alice").text == "alice@d.example"
    assert base.with_content("john doe").text == '"john doe"@d.example'
    assert base.with_content('a"b').content == 'a"b'


def test_alias_sources_include_the_catch_all() -> None:
    catch_all = parse_alias_source("@Bücher.Example")
    assert catch_all == Address("", "xn--bcher-kva.example")
    assert catch_all.is_catch_all and catch_all.text == "@xn--bcher-kva.example"
    assert parse_alias_source("sales@d.example").local_part == "sales"
    with pytest.raises(InvalidInput):
        parse_alias_source("@")
