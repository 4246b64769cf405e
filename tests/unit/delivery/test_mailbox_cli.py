"""``hato mailbox list|show`` over mailboxes filled by the real agent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hato.cli import main
from hato.delivery import MaildirAgent, MaildirJob
from hato.spool import MessageSource

FIRST = (
    b"Received: by mx\r\nSubject: first\r\nFrom: Alice <a@example.org>\r\n"
    b"Message-ID: <one@x>\r\n\r\nHello\r\n"
)
SECOND = (
    b"Subject: =?utf-8?q?zw=C3=A9i?=\r\nFrom: b@example.org\r\nMessage-ID: <two@x>\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nBody \xc3\xa9\r\nline 2\r\n"
)


def deliver(data_dir: Path, local: str, domain: str, *messages: bytes) -> list[bytes]:
    """Deliver ``messages`` in order (oldest first) and return the stored bytes."""
    agent = MaildirAgent(data_dir / "mailboxes", hostname="mx.example")
    stored = []
    for index, data in enumerate(messages):
        path = data_dir / f"msg{index}"
        path.write_bytes(data)
        job = MaildirJob(
            queue_id="0ABCDEFGHIJ123",
            recipient_index=index,
            domain=domain,
            local_part=local,
            delivered_to=f"{local}@{domain}",
            reverse_path="",
            source=MessageSource(path=path),
            arrival=1_700_000_000,
        )
        [result] = agent.deliver([job])
        assert result.enhanced == "2.0.0", result
        [copy] = (agent.mailbox_dir(domain, local) / "new").glob(f"*R{index}.*")
        when = 1_700_000_000 + index
        os.utime(copy, (when, when))  # list order must not depend on the clock's resolution
        stored.append(copy.read_bytes())
    return stored


def hato(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def test_list_shows_number_date_from_subject_size_and_folder(data_dir: Path) -> None:
    first, second = deliver(data_dir, "bob", "example.com", FIRST, SECOND)
    result = hato("mailbox", "list", "bob@example.com", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    header, one, two = result.stdout.splitlines()
    assert header.split() == ["#", "Date", "From", "Subject", "Size", "Folder"]
    assert one.split()[0] == "1" and "Alice <a@example.org>" in one and "first" in one
    assert one.split()[-2:] == [str(len(first)), "new"]
    assert "2023-11-1" in two and "zwéi" in two and two.split()[-2] == str(len(second))


def test_list_as_json(data_dir: Path) -> None:
    deliver(data_dir, "bob", "example.com", FIRST, SECOND)
    result = hato("mailbox", "list", "bob@example.com", "--json", "--data-dir", data_dir)
    listed = json.loads(result.stdout)
    assert [m["number"] for m in listed] == [1, 2]
    assert [m["message_id"] for m in listed] == ["<one@x>", "<two@x>"]
    assert listed[1]["subject"] == "zwéi" and listed[1]["folder"] == "new"
    assert {"date", "from", "size", "flags", "path"} <= listed[0].keys()


def test_show_by_number_and_by_message_id(data_dir: Path) -> None:
    _, second = deliver(data_dir, "bob", "example.com", FIRST, SECOND)
    by_number = hato("mailbox", "show", "bob@example.com", "2", "--data-dir", data_dir)
    assert by_number.exit_code == 0
    assert by_number.stdout == second.decode().replace("\r\n", "\n")
    for which in ("two@x", "<two@x>"):
        by_id = hato("mailbox", "show", "bob@example.com", which, "--data-dir", data_dir)
        assert by_id.stdout == by_number.stdout


def test_show_raw_gives_the_exact_bytes(data_dir: Path) -> None:
    first, _ = deliver(data_dir, "bob", "example.com", FIRST, SECOND)
    result = hato("mailbox", "show", "bob@example.com", "1", "--raw", "--data-dir", data_dir)
    assert result.stdout_bytes == first
    assert first.startswith(b"Return-Path: <>\r\nDelivered-To: bob@example.com\r\n")


def test_show_as_json_has_the_summary_and_header(data_dir: Path) -> None:
    deliver(data_dir, "bob", "example.com", FIRST)
    result = hato("mailbox", "show", "bob@example.com", "1", "--json", "--data-dir", data_dir)
    shown = json.loads(result.stdout)
    assert shown["number"] == 1 and shown["subject"] == "first"
    assert shown["header"].startswith("Return-Path: <>\nDelivered-To: bob@example.com\n")
    assert "Hello" not in shown["header"]


def test_the_address_is_normalized(data_dir: Path) -> None:
    deliver(data_dir, "bob", "xn--bcher-kva.example", FIRST)
    result = hato("mailbox", "list", "BOB@Bücher.Example", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "first" in result.stdout


def test_a_mailbox_stored_with_capitals_is_found(data_dir: Path) -> None:
    deliver(data_dir, "Alice", "example.com", FIRST)
    result = hato("mailbox", "list", "alice@example.com", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "first" in result.stdout


def test_case_sensitive_local_parts_are_taken_as_given(data_dir: Path, tmp_path: Path) -> None:
    deliver(data_dir, "bob", "example.com", FIRST)
    config = tmp_path / "hato.toml"
    config.write_text("[accounts]\ncase_sensitive_local_parts = true\n")
    args = ("--config", config, "--data-dir", data_dir)
    assert hato("mailbox", "list", "bob@example.com", *args).exit_code == 0
    missing = hato("mailbox", "list", "Bob@example.com", *args)
    assert missing.exit_code == 1
    assert "no mail for Bob@example.com" in missing.stderr


def test_a_missing_mailbox_exits_1(data_dir: Path) -> None:
    for command in (("list",), ("show",)):
        args = [*command, "carol@example.com"] + (["1"] if command == ("show",) else [])
        result = hato("mailbox", *args, "--data-dir", data_dir)
        assert result.exit_code == 1
        assert "no mail for carol@example.com" in result.stderr


def test_an_unknown_message_exits_1(data_dir: Path) -> None:
    deliver(data_dir, "bob", "example.com", FIRST)
    for which in ("2", "0", "<nope@x>"):
        result = hato("mailbox", "show", "bob@example.com", which, "--data-dir", data_dir)
        assert result.exit_code == 1, which
        assert "has no message" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("list", "no-at-sign"),
        ("list", "@example.com"),
        ("list", "bob@"),
        ("list", "bob@exa mple.com"),
        ("show", "bob@example.com", "<>"),
        ("show", "bob@example.com", "1", "--raw", "--json"),
    ],
)
def test_bad_input_exits_2(data_dir: Path, args: tuple[str, ...]) -> None:
    deliver(data_dir, "bob", "example.com", FIRST)
    result = hato("mailbox", *args, "--data-dir", data_dir)
    assert result.exit_code == 2, result.output
