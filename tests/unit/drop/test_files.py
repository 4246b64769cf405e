"""The maildrop's file format and the reading of pickup files, on real files."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from hato.drop import (
    DirectoryWatch,
    Drop,
    DropError,
    header_recipients,
    parse_pickup,
    prepare_directories,
    read_drop,
    write_drop,
)
from hato.spool import Recipient

LIMIT = 10_000


def test_a_maildrop_file_reads_back_as_written(tmp_path: Path) -> None:
    prepare_directories(tmp_path)
    drop = Drop(
        sender=None,
        recipients=(Recipient(address="bob@localhost", notify=("FAILURE",)),),
        ret="HDRS",
        envid="e-1",
        full_name="Zoë",
    )
    name = write_drop(tmp_path / "maildrop", drop, b"Subject: x\r\n\r\nbody\r\n")
    assert not name.startswith(".")
    assert [p.name for p in (tmp_path / "maildrop").iterdir() if p.is_file()] == [name]
    read, message, uid = read_drop(tmp_path / "maildrop" / name, LIMIT)
    assert (read, message, uid) == (drop, b"Subject: x\r\n\r\nbody\r\n", os.getuid())
    assert (tmp_path / "maildrop" / name).stat().st_mode & 0o777 == 0o640


def test_links_and_strangers_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not for the submitter")
    (tmp_path / "link").symlink_to(secret)
    os.link(secret, tmp_path / "hardlink")
    (tmp_path / "text").write_text("a plain file, not one sendmail wrote")
    (tmp_path / "junk").write_bytes(b"HATO-MAILDROP 1\n{not json\n")
    (tmp_path / "empty").write_bytes(b"HATO-MAILDROP 1\n" + b'{"recipients": []}\n')
    for name, words in [
        ("link", "symbolic link"),
        ("hardlink", "single name"),
        ("junk", "unreadable envelope"),
        ("empty", "no recipients"),
        ("text", "not a maildrop file"),
    ]:
        with pytest.raises(DropError, match=words):
            read_drop(tmp_path / name, LIMIT)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "no header fields"),
        (b"\n\nbody only\n", "no header fields"),
        (b"Subject: x\nnot a field\n\n", "line 2"),
        (b"Subject: no one\n\nx\n", "no recipients"),
        (b"To: <>\n\n", "no recipients"),
        (b"To: bob@localhost\n\n" + b"x" * LIMIT, "larger than"),
    ],
)
def test_pickup_files_refused_say_why(content: bytes, words: str) -> None:
    with pytest.raises(DropError, match=words):
        parse_pickup(content, LIMIT)


def test_pickup_envelope_from_the_header() -> None:
    parsed = parse_pickup(
        b"From: Ann <ann@example.com>\nTo: a@localhost, B <b@localhost>\n"
        b" (folded)\nCc: c@localhost\nBcc: d@localhost\nSubject: s\n\nbody\n",
        LIMIT,
    )
    assert parsed.sender == "ann@example.com"
    assert [r.address for r in parsed.recipients] == [f"{x}@localhost" for x in "abcd"]
    assert b"Bcc" not in parsed.message and b"\r\n (folded)\r\n" in parsed.message
    assert parsed.message.endswith(b"\r\n\r\nbody\r\n")


def test_pickup_envelope_from_x_receiver_lines() -> None:
    parsed = parse_pickup(
        b"X-Sender: app@localhost\r\nX-Receiver: r1@localhost\r\nX-Receiver: r2@localhost\r\n"
        b"From: other@example.com\r\nTo: shown@example.com\r\n\r\nx\r\n",
        LIMIT,
    )
    assert parsed.sender == "app@localhost"
    assert [r.address for r in parsed.recipients] == ["r1@localhost", "r2@localhost"]
    assert parsed.message.startswith(b"From: other@example.com\r\n")
    # An X-Sender further down is an ordinary field, kept.
    kept = parse_pickup(b"To: a@localhost\nX-Sender: mua\n\n", LIMIT)
    assert b"X-Sender: mua" in kept.message and kept.sender == ""


def test_sendmail_t_reads_the_header() -> None:
    found, message = header_recipients(
        b"To: a@localhost\r\nBcc: hidden@localhost\r\nSubject: s\r\n\r\nBcc: in the body\r\n"
    )
    assert found == ["a@localhost", "hidden@localhost"]
    assert message == b"To: a@localhost\r\nSubject: s\r\n\r\nBcc: in the body\r\n"


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
def test_the_watch_wakes_when_a_file_is_renamed_in(tmp_path: Path, inotify: bool) -> None:
    async def run() -> bool:
        watch = DirectoryWatch([tmp_path], inotify=inotify)
        try:
            await watch.wait()  # the first returns at once: files there at start
            waiting = asyncio.ensure_future(watch.wait())
            await asyncio.sleep(0)
            (tmp_path / ".partial").write_text("x")
            os.rename(tmp_path / ".partial", tmp_path / "file")
            await waiting
            return watch.uses_inotify
        finally:
            watch.close()

    assert asyncio.run(run()) is (inotify and sys.platform.startswith("linux"))
