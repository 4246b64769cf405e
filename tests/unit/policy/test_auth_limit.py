from __future__ import annotations

from hato.policy import AuthLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> AuthLimiter:
    return AuthLimiter(max_failures=3, window=60.0, ban_time=600.0, clock=clock)


def test_failures_beyond_the_limit_ban_the_ip() -> None:
    clock = Clock()
    limit = limiter(clock)
    assert [limit.failed("192.0.2.1") for _ in range(3)] == [False, False, False]
    assert not limit.banned("192.0.2.1")
    assert limit.failed("192.0.2.1")
    assert limit.banned("192.0.2.1")
    assert not limit.banned("192.0.2.2")


def test_ban_ends_after_ban_time() -> None:
    clock = Clock()
    limit = limiter(clock)
    for _ in range(4):
        limit.failed("192.0.2.1")
    clock.now += 599.0
    assert limit.banned("192.0.2.1")
    clock.now += 1.0
    assert not limit.banned("192.0.2.1")


def test_failures_outside_the_window_are_forgotten() -> None:
    clock = Clock()
    limit = limiter(clock)
    for _ in range(3):
        limit.failed("192.0.2.1")
        clock.now += 30.0
    # The first failure is now 90 s old: outside the window, so this is the third, not fourth.
    assert not limit.failed("192.0.2.1")
    assert not limit.banned("192.0.2.1")


def test_ips_are_counted_separately() -> None:
    limit = limiter(Clock())
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        for _ in range(3):
            assert not limit.failed(ip)


def test_a_failure_during_a_ban_is_refused_and_prolongs_it() -> None:
    clock = Clock()
    limit = limiter(clock)
    for _ in range(4):
        limit.failed("192.0.2.1")
    clock.now += 500.0
    # A session opened before the ban may still try: its failure is answered as banned.
    assert limit.failed("192.0.2.1")
    clock.now += 599.0
    assert limit.banned("192.0.2.1")
    clock.now += 1.0
    assert not limit.banned("192.0.2.1")


def test_the_history_outlives_a_short_ban() -> None:
    clock = Clock()
    limit = AuthLimiter(max_failures=3, window=60.0, ban_time=10.0, clock=clock)
    for _ in range(4):
        limit.failed("192.0.2.1")
    clock.now += 10.0
    assert not limit.banned("192.0.2.1")
    # The failures are still within the window: one more is one too many again.
    assert limit.failed("192.0.2.1")
    assert limit.banned("192.0.2.1")
    clock.now += 61.0
    assert not limit.banned("192.0.2.1")
    assert not limit.failed("192.0.2.1")
