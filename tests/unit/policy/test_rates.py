"""Per-IP limits: concurrency, and per-minute rates that forget what is older than a minute."""

from __future__ import annotations

from hato.policy import ClientLimits


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_simultaneous_connections_per_ip() -> None:
    limits = ClientLimits(max_connections=2, hostname="mx.test")
    assert limits.connect("192.0.2.1") is None
    assert limits.connect("192.0.2.1") is None
    third = limits.connect("192.0.2.1")
    assert third is not None
    assert str(third.reply) == "421 4.7.0 mx.test Error: too many connections from 192.0.2.1"
    assert third.rule == "max_connections"
    assert limits.connect("192.0.2.2") is None  # another host is not affected
    limits.disconnect("192.0.2.1")
    assert limits.connect("192.0.2.1") is None


def test_zero_means_no_limit() -> None:
    limits = ClientLimits()
    assert all(limits.connect("192.0.2.1") is None for _ in range(1000))
    assert all(limits.message("192.0.2.1") is None for _ in range(1000))


def test_connection_rate_window_slides() -> None:
    clock = Clock()
    limits = ClientLimits(connection_rate=3, clock=clock)
    for _ in range(3):
        assert limits.connect("192.0.2.1") is None
        limits.disconnect("192.0.2.1")
        clock.now += 10
    refused = limits.connect("192.0.2.1")
    assert refused is not None
    assert refused.reply.code == 421
    assert refused.rule == "connection_rate"
    clock.now += 31  # the first connection is now more than 60 s old
    assert limits.connect("192.0.2.1") is None


def test_message_and_recipient_rates_answer_450() -> None:
    clock = Clock()
    limits = ClientLimits(message_rate=2, recipient_rate=3, clock=clock)
    assert limits.message("192.0.2.1") is None
    assert limits.message("192.0.2.1") is None
    refused = limits.message("192.0.2.1")
    assert refused is not None
    assert str(refused.reply) == "450 4.7.1 Error: too many messages from 192.0.2.1, slow down"
    assert [limits.recipient("192.0.2.1") is None for _ in range(4)] == [True, True, True, False]
    assert limits.message("192.0.2.9") is None
    clock.now += 60.5
    assert limits.message("192.0.2.1") is None


def test_refused_attempts_are_not_counted() -> None:
    clock = Clock()
    limits = ClientLimits(message_rate=1, clock=clock)
    assert limits.message("192.0.2.1") is None
    clock.now += 30
    assert limits.message("192.0.2.1") is not None  # refused: not counted
    clock.now += 30.5  # 60.5 s after the only counted message
    assert limits.message("192.0.2.1") is None
