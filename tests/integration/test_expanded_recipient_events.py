"""Deferral and bounce events name the address an alias expanded to, and the alias too.

"to=<team@...> status=deferred" sent an administrator looking at the alias, while the
address that really failed was one of its targets; Postfix logs both (to=, orig_to=).
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import HatoProcess

REMOTE = "friend@relay.test.example"  # its next hop is a closed port: deferred


def test_events_name_the_expanded_recipient(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = hato_factory(accept_all=False)
    for source, target in (("team@localhost", REMOTE), ("gone@localhost", "ghost@localhost")):
        added = hato.cli("alias", "add", source, target)
        assert added.returncode == 0, added.stderr
    hato.start()
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        refused = client.sendmail(
            "a@example.org", ["team@localhost", "gone@localhost"], b"\r\nhi\r\n"
        )
    assert refused == {}
    deferred = hato.wait_for_event("deferred")
    assert (deferred["recipient"], deferred["original"]) == (REMOTE, "team@localhost")
    failed = hato.wait_for_event("failed")
    assert (failed["recipient"], failed["original"]) == ("ghost@localhost", "gone@localhost")
    log = hato.poll(lambda: "orig_to=<gone@localhost>" in hato.stderr() and hato.stderr())
    assert f"to=<{REMOTE}> orig_to=<team@localhost> status=deferred" in log
    assert "to=<ghost@localhost> orig_to=<gone@localhost> status=bounced 5.1.1" in log
