"""The retry schedule: doubling from the initial delay, capped, jittered, within a lifetime."""

from __future__ import annotations

import pytest

from hato.queue import RetryPolicy

POLICY = RetryPolicy(initial=300.0, maximum=3600.0, lifetime=5 * 86400.0, jitter=0.1)


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(1, 300.0), (2, 600.0), (3, 1200.0), (4, 2400.0), (5, 3600.0), (12, 3600.0)],
)
def test_delay_doubles_then_caps(attempts: int, expected: float) -> None:
    assert POLICY.delay(attempts, lambda: 0.0) == expected


def test_jitter_adds_at_most_its_fraction() -> None:
    assert POLICY.delay(1, lambda: 1.0) == pytest.approx(330.0)
    assert POLICY.delay(5, lambda: 0.5) == pytest.approx(3780.0)


def test_lifetime() -> None:
    arrival = 1_000_000.0
    assert not POLICY.expired(arrival, arrival + 5 * 86400.0 - 1)
    assert POLICY.expired(arrival, arrival + 5 * 86400.0)
