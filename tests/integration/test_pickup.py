"""The pickup directory against a real ``hato serve``: IIS-style ``X-Receiver`` files,
header-only files, To/Cc/Bcc, refused files moved to ``bad/`` with their reason, files
waiting at start, and 1,000 files dropped at once (each delivered once)."""

from __future__ import annotations

import email
import email.policy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

USER = "bob@localhost"
MAX_SIZE = 200_000


@pytest.fixture(scope="module")
def server(module_hato_factory: Callable[..., HatoProcess]) -> Iterator[HatoProcess]:
    process = module_hato_factory("pickup", f"smtp.max_message_size={MAX_SIZE}", start=False)
    for user in (USER, "alice@localhost", "carol@localhost", "dave@localhost"):
        process.add_user(user)
    process.start()
    yield process


def drop(hato: HatoProcess, name: str, content: bytes) -> Path:
    """Written beside the directory, then renamed in: the way a file is to arrive."""
    staged = hato.data_dir.parent / f".{name}"
    staged.write_bytes(content)
    target = hato.data_dir / "pickup" / name
    os.rename(staged, target)
    return target


def inbox(hato: HatoProcess, address: str) -> list[bytes]:
    local, _, domain = address.partition("@")
    folder = hato.data_dir / "mailboxes" / domain / local / "new"
    return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []


def arrived(hato: HatoProcess, address: str, subject: str) -> email.message.EmailMessage:
    def find() -> list[email.message.EmailMessage]:
        parsed = [
            email.message_from_bytes(m, policy=email.policy.default) for m in inbox(hato, address)
        ]
        return [m for m in parsed if m["Subject"] == subject]  # type: ignore[misc]

    (message,) = hato.poll(find, what=f"{subject!r} in {address}")
    return message  # type: ignore[no-any-return]


def test_x_receiver_lines_name_the_envelope_and_are_removed(server: HatoProcess) -> None:
    path = drop(
        server,
        "iis.eml",
        b"x-sender: app@localhost\r\nx-receiver: bob@localhost\r\nx-receiver: alice@localhost\r\n"
        b"From: Shop <shop@example.com>\r\nTo: customer@example.net\r\nSubject: iis\r\n\r\nhi\r\n",
    )
    for address in (USER, "alice@localhost"):
        message = arrived(server, address, "iis")
        assert message["X-Receiver"] is None and message["X-Sender"] is None
        assert message["To"] == "customer@example.net"  # the header is not the envelope
        assert "from the pickup directory" in message["Received"]
        assert message["Message-ID"] and message["Date"]
    taken = server.wait_for_event("drop_taken", directory="pickup", file="iis.eml")
    assert not path.exists()
    queued = server.wait_for_event("queued", queue_id=taken["queue_id"])
    assert queued["reverse_path"] == "app@localhost"


def test_a_file_of_header_fields_alone(server: HatoProcess) -> None:
    drop(server, "headers", b"From: a@localhost\nTo: bob@localhost\nSubject: headers only\n")
    message = arrived(server, USER, "headers only")
    assert message.get_content() == ""
    assert message["Message-ID"]


def test_to_cc_and_bcc_and_bcc_is_removed(server: HatoProcess) -> None:
    drop(
        server,
        "bcc.eml",
        b"From: a@localhost\nTo: carol@localhost\nCc: dave@localhost\nBcc: alice@localhost\n"
        b"Subject: with bcc\n\nbody\n",
    )
    for address in ("carol@localhost", "dave@localhost", "alice@localhost"):
        message = arrived(server, address, "with bcc")
        assert message["Bcc"] is None
        assert message["Cc"] == "dave@localhost"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("garbage", b"this is not a message\nat all\n", "neither a header field"),
        ("nobody.eml", b"From: a@localhost\nSubject: to no one\n\nx\n", "no recipients"),
        ("large.eml", b"To: bob@localhost\n\n" + b"z" * MAX_SIZE, "larger than"),
        ("broken-to.eml", b"To: bob@@localhost\n\nx\n", "recipient"),
        ("nul.eml", b"To: bob@localhost\n\nx\0y\n", "NUL"),
    ],
)
def test_a_file_that_cannot_be_queued_moves_to_bad_with_its_reason(
    server: HatoProcess, name: str, content: bytes, reason: str
) -> None:
    path = drop(server, name, content)
    bad = server.data_dir / "pickup" / "bad"
    note = server.poll(lambda: (bad / f"{name}.reason").is_file(), what=f"{name}.reason")
    assert note
    assert reason in (bad / f"{name}.reason").read_text()
    assert (bad / name).read_bytes() == content  # kept as it came, never deleted
    assert not path.exists()
    event = server.wait_for_event("drop_refused", file=name)
    assert reason in event["reason"] and not event["kept"]


def test_files_waiting_at_start_and_a_thousand_at_once(server: HatoProcess, tmp_path: Path) -> None:
    address = "carol@localhost"
    before = len(inbox(server, address))
    server.stop()
    for number in range(5):
        drop(
            server,
            f"early-{number}",
            f"To: {address}\nMessage-ID: <early-{number}@test>\n\nx\n".encode(),
        )
    server.start()
    server.poll(
        lambda: len(inbox(server, address)) == before + 5, what="the files left while stopped"
    )
    staged = server.data_dir.parent / "staged"
    staged.mkdir()
    wanted = {f"<bulk-{number}@test>" for number in range(1000)}
    for number in range(1000):
        (staged / f"bulk-{number}.eml").write_bytes(
            f"From: bulk@localhost\nTo: {address}\nMessage-ID: <bulk-{number}@test>\n"
            f"Subject: bulk {number}\n\nmessage {number}\n".encode()
        )
    pickup = server.data_dir / "pickup"
    for path in staged.iterdir():
        os.rename(path, pickup / path.name)
    total = before + 5 + 1000
    server.poll(
        lambda: len(inbox(server, address)) >= total, timeout=120, what="1,000 files delivered"
    )
    assert not [p for p in pickup.iterdir() if p.name != "bad"]
    ids = [
        email.message_from_bytes(m, policy=email.policy.default)["Message-ID"]
        for m in inbox(server, address)
    ]
    assert len(ids) == total  # none twice
    assert wanted <= set(ids) and len(set(ids)) == len(ids)


def test_a_stop_while_files_are_taken_loses_none_and_repeats_none(server: HatoProcess) -> None:
    address = "dave@localhost"
    before = len(inbox(server, address))
    staged = server.data_dir.parent / "staged-stop"
    staged.mkdir()
    for number in range(300):
        (staged / f"stop-{number}").write_bytes(
            f"To: {address}\nMessage-ID: <stop-{number}@test>\n\nx\n".encode()
        )
    pickup = server.data_dir / "pickup"
    for path in staged.iterdir():
        os.rename(path, pickup / path.name)
    server.wait_for_event("drop_taken", directory="pickup")
    assert server.stop() == 0  # mid-way: what is in the intake finishes, the rest waits
    server.start()
    total = before + 300
    server.poll(lambda: len(inbox(server, address)) >= total, timeout=60, what="all 300")
    ids = [
        email.message_from_bytes(m, policy=email.policy.default)["Message-ID"]
        for m in inbox(server, address)
    ]
    assert len(ids) == total and len(set(ids)) == total
