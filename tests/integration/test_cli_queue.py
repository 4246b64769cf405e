"""``hato queue`` against a real server: hold and release say what was already so, every
command exits 1 for a message that is not queued, ``delete ALL`` asks first, and a message
due now is shown as due, not as "retry 00:00:00"."""

from __future__ import annotations

import smtplib
from typing import TYPE_CHECKING

import pytest
from test_cli_admin import QUEUE_ID, run

if TYPE_CHECKING:
    from conftest import HatoProcess


def queue_two(server: HatoProcess) -> list[str]:
    """Two messages that stay queued (deferred: their target is a closed port)."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        for n in range(2):
            client.sendmail("a@example.org", [f"x{n}@localhost"], b"Subject: q\r\n\r\nq\r\n")
    server.poll(lambda: len(server.events("deferred")) >= 2, what="two deferrals")
    return sorted({e["queue_id"] for e in server.events("deferred")})


def test_hold_and_release_say_what_was_already_so(hato: HatoProcess) -> None:
    first, second = queue_two(hato)
    held = run("queue", "hold", first, "--data-dir", hato.data_dir)
    assert (held.returncode, held.stdout) == (0, "1 message(s) placed on hold\n")
    again = run("queue", "hold", first, second, "--data-dir", hato.data_dir)
    assert again.returncode == 0
    assert again.stdout == f"1 message(s) placed on hold\n{first} was already on hold\n"
    listing = run("queue", "list", "--data-dir", hato.data_dir).stdout
    assert "on hold: no retry until released" in listing
    released = run("queue", "release", "ALL", "--data-dir", hato.data_dir)
    assert released.stdout == "2 message(s) released from hold\n"
    again = run("queue", "release", first, "--data-dir", hato.data_dir)
    assert (again.returncode, again.stdout) == (
        0,
        f"0 message(s) released from hold\n{first} was not on hold\n",
    )


@pytest.mark.parametrize("command", ["flush", "hold", "release", "delete"])
def test_every_queue_command_exits_1_for_a_message_not_in_the_queue(
    hato: HatoProcess, command: str
) -> None:
    (queued, _) = queue_two(hato)
    done = run("queue", command, queued, QUEUE_ID, "--data-dir", hato.data_dir)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"not in the queue: {QUEUE_ID}" in done.stderr
    assert queued not in done.stderr


def test_delete_all_needs_yes(hato: HatoProcess) -> None:
    queue_two(hato)
    refused = run("queue", "delete", "ALL", "--data-dir", hato.data_dir)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert len(hato.queue()) == 2
    done = run("queue", "delete", "ALL", "--yes", "--data-dir", hato.data_dir)
    assert (done.returncode, done.stdout) == (0, "2 message(s) deleted\n")
    assert hato.queue() == []
    listing = run("queue", "list", "--data-dir", hato.data_dir)
    assert listing.stdout == "Mail queue is empty\n"
    empty = run("queue", "delete", "ALL", "--data-dir", hato.data_dir)
    assert (empty.returncode, empty.stdout) == (0, "0 message(s) deleted\n")


def test_list_shows_a_flushed_message_as_due_not_at_midnight(hato: HatoProcess) -> None:
    queued, _ = queue_two(hato)
    assert hato.stop() == 0
    flushed = run("queue", "flush", queued, "--data-dir", hato.data_dir)
    assert flushed.returncode == 0, flushed.stderr
    listing = run("queue", "list", "--data-dir", hato.data_dir).stdout
    block = listing.split(queued, 1)[1]
    assert "retry due now; hato serve is not running" in block.split("\n", 3)[1], listing
    assert "retry 00:00:00" not in listing
