"""Relay control: trusted networks and authenticated clients relay; nobody else does."""

from __future__ import annotations

import pytest

from hato.policy import RelayPolicy

POLICY = RelayPolicy(["127.0.0.0/8", "::1/128", "192.0.2.0/24"])


@pytest.mark.parametrize(
    ("client", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # an IPv4 client on a dual-stack socket
        ("192.0.2.200", True),
        ("198.51.100.7", False),
        ("2001:db8::1", False),
        ("not an address", False),
    ],
)
def test_trusted_networks(client: str, trusted: bool) -> None:
    assert POLICY.is_trusted(client) is trusted


def test_untrusted_client_may_not_relay() -> None:
    decision = POLICY.check(
        "x@other.example", local=False, client_ip="198.51.100.7", authenticated=False
    )
    assert decision is not None
    assert str(decision.reply) == "554 5.7.1 <x@other.example>: Relay access denied"
    assert "other.example" in decision.reason and decision.rule == "relay"


def test_trusted_and_authenticated_clients_relay() -> None:
    assert (
        POLICY.check("x@other.example", local=False, client_ip="127.0.0.1", authenticated=False)
        is None
    )
    assert (
        POLICY.check("x@other.example", local=False, client_ip="198.51.100.7", authenticated=True)
        is None
    )


@pytest.mark.parametrize(
    "address",
    [
        "user%other.example@ours.example",
        "other.example!user@ours.example",
        '"user@other.example"@ours.example',
    ],
)
def test_routing_tricks_in_local_parts_are_relaying(address: str) -> None:
    decision = POLICY.check(address, local=True, client_ip="198.51.100.7", authenticated=False)
    assert decision is not None and decision.reply.code == 554


def test_plain_local_recipient_is_fine_from_anyone() -> None:
    assert (
        POLICY.check("user@ours.example", local=True, client_ip="198.51.100.7", authenticated=False)
        is None
    )


def test_nothing_is_trusted_with_an_empty_list() -> None:
    assert not RelayPolicy([]).is_trusted("127.0.0.1")
