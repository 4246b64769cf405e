"""The dashboard's per-minute counts (web._console.Activity) over a clock the test moves."""

from __future__ import annotations

from hato.events import Connected, Deferred, Queued, Rejected, TlsStarted
from hato.web._console import DAY_MINUTES, MAX_REASONS_PER_MINUTE, Activity


def _queued(n: int) -> Queued:
    return Queued(
        session="s",
        queue_id=f"Q{n}",
        size=10,
        reverse_path="a@b",
        recipients=("c@d",),
        client_ip="127.0.0.1",
    )


def _refused(reason: str, rule: str = "") -> Rejected:
    return Rejected(
        session="s", client_ip="192.0.2.1", command="RCPT", reply="550", reason=reason, rule=rule
    )


def test_counts_per_minute_and_windows() -> None:
    now = [1_000_000 * 60.0]
    activity = Activity(clock=lambda: now[0])
    start = now[0]
    activity.event(start - 120, _queued(1))  # two minutes ago
    activity.event(start, _queued(2))
    activity.event(
        start,
        Deferred(
            queue_id="Q2",
            recipient="c@d",
            status="4.4.1",
            detail="x",
            attempts=1,
            next_attempt=start + 300,
        ),
    )
    activity.event(start, _refused("relay access denied", "relay"))
    hour = activity.window(60)
    assert hour.series["received"][-1] == 1 and hour.series["received"][-3] == 1
    assert hour.total("received") == 2 and hour.total("deferred") == 1
    assert hour.refusals == [("relay access denied (rule relay)", 1)]
    assert activity.window(1).total("received") == 1

    # A day later the old minutes are gone, from the windows and from memory.
    now[0] = start + DAY_MINUTES * 60
    activity.event(now[0], _queued(3))
    day = activity.window(DAY_MINUTES)
    assert day.total("received") == 1 and day.refusals == []


def test_tls_share_and_the_cap_on_reasons() -> None:
    now = 60.0 * 5000
    activity = Activity(clock=lambda: now)
    assert activity.window(60).tls_in is None
    for _ in range(4):
        activity.event(
            now, Connected(session="s", client_ip="127.0.0.1", client_port=1, listener="l")
        )
    activity.event(now, TlsStarted(session="s", version="TLSv1.3", cipher="x", implicit=False))
    assert activity.window(60).tls_in == 0.25
    for n in range(MAX_REASONS_PER_MINUTE + 20):
        activity.event(now, _refused(f"reason {n}"))
    activity.event(now, _refused("reason 0"))
    top = dict(activity.window(60).refusals)
    assert top["reason 0"] == 2 and len(top) == 10
