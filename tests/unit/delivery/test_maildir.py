"""The Maildir agent against real files: layout, bytes, batches, idempotency, failures."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from hato.delivery import MaildirAgent, MaildirJob, Result, Status, Usage
from hato.spool import MessageSource

HOST = "mx.example.net"
QUEUE_ID = "0ABCDEFGHIJ123"
ARRIVAL = 1_700_000_000.75
RECEIVED = b"Received: from client.example.org ([192.0.2.1])\r\n\tby mx.example.net; now\r\n"
MESSAGE = (
    RECEIVED + b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)
MODES = ["syncfs", "fsync"]


@pytest.fixture(params=MODES)
def agent(request: pytest.FixtureRequest, tmp_path: Path) -> MaildirAgent:
    return MaildirAgent(tmp_path / "mailboxes", hostname=HOST, sync=request.param)


def spooled(tmp_path: Path, data: bytes = MESSAGE, name: str = "msg") -> Path:
    path = tmp_path / "spool" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def job(message_path: Path, **changes: Any) -> MaildirJob:
    fields: dict[str, Any] = {
        "queue_id": QUEUE_ID,
        "recipient_index": 0,
        "domain": "example.com",
        "local_part": "bob",
        "delivered_to": "bob@example.com",
        "reverse_path": "alice@example.org",
        "source": MessageSource(path=message_path),
        "arrival": ARRIVAL,
    }
    fields.update(changes)
    return MaildirJob(**fields)


def stored(agent: MaildirAgent, domain: str = "example.com", local: str = "bob") -> list[Path]:
    maildir = agent.mailbox_dir(domain, local)
    return sorted(p for folder in ("new", "cur") for p in (maildir / folder).glob("*"))


def delivered(result: Result) -> bool:
    return result.status is Status.DELIVERED and result.enhanced == "2.0.0"


# -- layout and bytes ---------------------------------------------------------------------


def test_first_delivery_creates_the_maildir_and_stores_the_message(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    [result] = agent.deliver([job(spooled(tmp_path))])
    assert delivered(result), result
    maildir = tmp_path / "mailboxes" / "example.com" / "bob"
    for sub in ("tmp", "new", "cur"):
        assert stat.S_IMODE((maildir / sub).stat().st_mode) == 0o700
    assert list((maildir / "tmp").iterdir()) == []
    [copy] = (maildir / "new").iterdir()
    data = copy.read_bytes()
    head = b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.com\r\n"
    assert data == head + MESSAGE
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert copy.name == f"1700000000.Q{QUEUE_ID}R0.{HOST},S={len(data)}"


def test_null_sender_becomes_an_empty_return_path(agent: MaildirAgent, tmp_path: Path) -> None:
    [result] = agent.deliver([job(spooled(tmp_path), reverse_path="")])
    assert delivered(result)
    [copy] = stored(agent)
    assert copy.read_bytes().startswith(b"Return-Path: <>\r\nDelivered-To: bob@example.com\r\n")


def test_a_batch_of_100_is_delivered_by_one_call(agent: MaildirAgent, tmp_path: Path) -> None:
    message = spooled(tmp_path)
    jobs = [
        job(message, recipient_index=i, local_part=f"user{i % 10}", delivered_to=f"user{i % 10}@x")
        for i in range(100)
    ]
    results = agent.deliver(jobs)
    assert len(results) == 100 and all(delivered(r) for r in results)
    for box in range(10):
        copies = stored(agent, local=f"user{box}")
        assert len(copies) == 10
        assert all(f"Delivered-To: user{box}@x\r\n".encode() in c.read_bytes() for c in copies)


def test_results_keep_the_order_of_the_jobs(agent: MaildirAgent, tmp_path: Path) -> None:
    message = spooled(tmp_path)
    jobs = [
        job(message, recipient_index=0),
        job(tmp_path / "missing", recipient_index=1),
        job(message, recipient_index=2, delivered_to="BOB@example.com"),
        job(message, recipient_index=3),
    ]
    statuses = [r.status for r in agent.deliver(jobs)]
    assert statuses == [Status.DELIVERED, Status.DEFERRED, Status.DELIVERED, Status.DELIVERED]


def test_hostname_cannot_break_the_file_name(tmp_path: Path) -> None:
    agent = MaildirAgent(tmp_path / "mailboxes", hostname="a/b:c,d")
    [result] = agent.deliver([job(spooled(tmp_path))])
    assert delivered(result)
    [copy] = stored(agent)
    assert copy.name.startswith(f"1700000000.Q{QUEUE_ID}R0.a\\057b\\072c\\054d,S=")


# -- idempotency ----------------------------------------------------------------------------


def test_delivering_a_job_again_stores_no_second_copy(agent: MaildirAgent, tmp_path: Path) -> None:
    message = spooled(tmp_path)
    first = agent.deliver([job(message)])
    again = agent.deliver([job(message)])
    twice_in_one_call = agent.deliver([job(message), job(message)])
    assert all(delivered(r) for r in first + again + twice_in_one_call)
    assert "already" in again[0].detail
    assert len(stored(agent)) == 1
    assert list((agent.mailbox_dir("example.com", "bob") / "tmp").iterdir()) == []


def test_recheck_finds_a_copy_an_imap_client_moved_to_cur(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    message = spooled(tmp_path)
    agent.deliver([job(message)])
    maildir = agent.mailbox_dir("example.com", "bob")
    [copy] = (maildir / "new").iterdir()
    copy.rename(maildir / "cur" / f"{copy.name}:2,S")
    [result] = agent.deliver([job(message, recheck=True)])
    assert delivered(result) and "cur/" in result.detail
    assert [p.name for p in stored(agent)] == [f"{copy.name}:2,S"]
    # Without recheck the agent trusts the caller that no earlier attempt happened.
    [result] = agent.deliver([job(message)])
    assert delivered(result) and len(stored(agent)) == 2


def test_recheck_ignores_other_jobs_of_the_same_message(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    message = spooled(tmp_path)
    agent.deliver([job(message, recipient_index=1)])
    [result] = agent.deliver([job(message, recipient_index=10, recheck=True)])
    assert delivered(result) and "already" not in result.detail
    assert len(stored(agent)) == 2


def test_a_copy_torn_by_a_crash_is_replaced(agent: MaildirAgent, tmp_path: Path) -> None:
    message = spooled(tmp_path)
    agent.deliver([job(message)])
    [copy] = stored(agent)
    whole = copy.read_bytes()
    copy.write_bytes(whole[:10])  # what a power loss before the sync can leave
    [result] = agent.deliver([job(message, recheck=True)])
    assert delivered(result) and "already" not in result.detail
    assert [p.read_bytes() for p in stored(agent)] == [whole]


# -- loops ------------------------------------------------------------------------------------


def test_more_than_50_received_headers_is_a_loop(agent: MaildirAgent, tmp_path: Path) -> None:
    fifty = spooled(tmp_path, RECEIVED * 49 + MESSAGE, "fifty")  # MESSAGE has one already
    fifty_one = spooled(tmp_path, RECEIVED * 50 + MESSAGE, "fifty_one")
    ok, loop = agent.deliver([job(fifty), job(fifty_one, recipient_index=1)])
    assert delivered(ok)
    assert loop.status is Status.FAILED and loop.enhanced == "5.4.6"
    assert "mail loop" in loop.detail and "50 Received" in loop.detail
    assert len(stored(agent)) == 1


def test_the_received_limit_is_configurable(tmp_path: Path) -> None:
    agent = MaildirAgent(tmp_path / "mailboxes", hostname=HOST, max_received=2)
    results = agent.deliver([job(spooled(tmp_path, RECEIVED * 2 + MESSAGE))])
    assert [(r.status, r.enhanced) for r in results] == [(Status.FAILED, "5.4.6")]


@pytest.mark.parametrize(
    "field",
    [
        b"Delivered-To: bob@example.com\r\n",
        b"delivered-to:<BOB@Example.COM>\r\n",
        b"Delivered-To:\r\n bob@example.com\r\n",  # folded
        b"DELIVERED-TO : bob@example.com  \r\n",
    ],
)
def test_our_own_delivered_to_is_a_loop(agent: MaildirAgent, tmp_path: Path, field: bytes) -> None:
    [result] = agent.deliver([job(spooled(tmp_path, field + MESSAGE))])
    assert (result.status, result.enhanced) == (Status.FAILED, "5.4.6")
    assert "Delivered-To" in result.detail
    assert stored(agent) == []


@pytest.mark.parametrize(
    "data",
    [
        b"Delivered-To: carol@example.com\r\n" + MESSAGE,
        b"X-Delivered-To: bob@example.com\r\n" + MESSAGE,
        MESSAGE + b"Delivered-To: bob@example.com\r\n",  # in the body: not a header field
        MESSAGE + RECEIVED * 60,
    ],
    ids=["other-address", "other-field", "in-body", "received-in-body"],
)
def test_only_the_header_counts(agent: MaildirAgent, tmp_path: Path, data: bytes) -> None:
    [result] = agent.deliver([job(spooled(tmp_path, data))])
    assert delivered(result), result


def test_a_long_header_line_is_read_in_pieces(agent: MaildirAgent, tmp_path: Path) -> None:
    # A piece of a long line that happens to start "Delivered-To:" is not a field.
    long_line = b"X-Long: " + b"a" * (8 * 1024 - 8) + b"Delivered-To: bob@example.com\r\n"
    [result] = agent.deliver([job(spooled(tmp_path, long_line + MESSAGE))])
    assert delivered(result), result


# -- transient failures ------------------------------------------------------------------------


def test_missing_message_file_is_deferred(agent: MaildirAgent, tmp_path: Path) -> None:
    [result] = agent.deliver([job(tmp_path / "gone")])
    assert (result.status, result.enhanced) == (Status.DEFERRED, "4.3.0")
    assert "No such file or directory" in result.detail
    assert not (tmp_path / "mailboxes").exists() or stored(agent) == []


def test_a_file_where_the_mailbox_should_be_is_deferred(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    message = spooled(tmp_path)
    (tmp_path / "mailboxes").mkdir()
    (tmp_path / "mailboxes" / "example.com").write_text("not a directory")
    blocked, other = agent.deliver([job(message), job(message, domain="example.org")])
    assert (blocked.status, blocked.enhanced) == (Status.DEFERRED, "4.3.0")
    assert "Not a directory" in blocked.detail
    assert delivered(other)
    # Once the administrator fixes it, the retry goes through.
    (tmp_path / "mailboxes" / "example.com").unlink()
    assert delivered(agent.deliver([job(message)])[0])


def test_a_file_where_new_should_be_is_deferred(agent: MaildirAgent, tmp_path: Path) -> None:
    maildir = agent.mailbox_dir("example.com", "bob")
    maildir.mkdir(parents=True)
    (maildir / "new").write_text("oops")
    [result] = agent.deliver([job(spooled(tmp_path))])
    assert result.status is Status.DEFERRED and "Not a directory" in result.detail
    assert list((maildir / "tmp").iterdir()) == []


def test_a_root_that_is_a_file_is_deferred(tmp_path: Path) -> None:
    (tmp_path / "mailboxes").write_text("")
    agent = MaildirAgent(tmp_path / "mailboxes", hostname=HOST)
    [result] = agent.deliver([job(spooled(tmp_path))])
    assert result.status is Status.DEFERRED


def test_a_mailbox_removed_while_running_is_recreated(agent: MaildirAgent, tmp_path: Path) -> None:
    message = spooled(tmp_path)
    agent.deliver([job(message)])
    for path in stored(agent):
        path.unlink()
    for sub in ("tmp", "new", "cur"):
        (agent.mailbox_dir("example.com", "bob") / sub).rmdir()
    [result] = agent.deliver([job(message, recipient_index=1)])
    assert delivered(result), result
    assert len(stored(agent)) == 1


# -- size ------------------------------------------------------------------------------------------


def test_a_50_mb_message_is_copied_in_small_pieces(agent: MaildirAgent, tmp_path: Path) -> None:
    path = tmp_path / "spool" / "big"
    path.parent.mkdir()
    line = b"x" * 998 + b"\r\n"
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        file.write(MESSAGE)
        digest.update(MESSAGE)
        for _ in range(50 * 1024):
            file.write(line)
            digest.update(line)
    tracemalloc.start()
    try:
        [result] = agent.deliver([job(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert delivered(result)
    assert peak < 5 * 1024 * 1024, f"peak {peak} bytes"
    [copy] = stored(agent)
    head = b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.com\r\n"
    copied = hashlib.sha256()
    with open(copy, "rb") as file:
        assert file.read(len(head)) == head
        while chunk := file.read(1 << 20):
            copied.update(chunk)
    assert copied.hexdigest() == digest.hexdigest()
    assert copy.stat().st_size == len(head) + path.stat().st_size


# -- mailbox names ------------------------------------------------------------------------------

HOSTILE = ["../../etc", "..", ".", ".hidden", "a/b", "a/../../b", "nul\0byte", "/abs", "%2F", "a%b"]


@pytest.mark.parametrize("local", HOSTILE)
def test_local_parts_stay_inside_the_tree(agent: MaildirAgent, tmp_path: Path, local: str) -> None:
    root = (tmp_path / "mailboxes").resolve()
    directory = agent.mailbox_dir("example.com", local)
    assert directory.parent == root / "example.com"
    assert "/" not in directory.name and "\0" not in directory.name
    assert not directory.name.startswith(".")
    [result] = agent.deliver([job(spooled(tmp_path), local_part=local)])
    assert delivered(result), result
    [copy] = stored(agent, local=local)
    assert copy.resolve().is_relative_to(root / "example.com")
    assert sorted(p.name for p in root.iterdir()) == ["example.com"]


def test_hostile_domains_stay_inside_the_tree(agent: MaildirAgent, tmp_path: Path) -> None:
    root = tmp_path / "mailboxes"
    for domain in ("..", "../x", ".example", "[IPv6:::1]"):
        directory = agent.mailbox_dir(domain, "bob")
        assert directory.parent.parent == root and directory.parent.name[0] != "."
        assert "/" not in directory.parent.name


def test_distinct_local_parts_get_distinct_directories(agent: MaildirAgent) -> None:
    names = [*HOSTILE, "a%2Fb", "a_b", "A", "a"]
    directories = {agent.mailbox_dir("example.com", name) for name in names}
    assert len(directories) == len(names)


@pytest.mark.parametrize(
    "local", ["alice", "first.last", "bob+tag", "o'brien", "x_y-z", "Mixed.Case", "jörg"]
)
def test_ordinary_local_parts_are_kept_as_they_are(agent: MaildirAgent, local: str) -> None:
    assert agent.mailbox_dir("example.com", local).name == local


def test_unusable_local_parts_fail_permanently(agent: MaildirAgent, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        agent.mailbox_dir("example.com", "")
    [result] = agent.deliver([job(spooled(tmp_path), local_part="/" * 200)])
    assert (result.status, result.enhanced) == (Status.FAILED, "5.1.3")


# -- usage and listing ---------------------------------------------------------------------------


def counted(agent: MaildirAgent, local: str, quota: int | None = None) -> Usage:
    """The usage once the count the first look starts is done."""
    agent.usage("example.com", local, quota)
    agent.wait_usage()
    return agent.usage("example.com", local, quota)


def test_usage_counts_new_and_cur(agent: MaildirAgent, tmp_path: Path) -> None:
    assert counted(agent, "nobody") == Usage(0, 0)
    message = spooled(tmp_path)
    agent.deliver([job(message, recipient_index=i) for i in range(3)])
    size = stored(agent)[0].stat().st_size
    maildir = agent.mailbox_dir("example.com", "bob")
    moved = stored(agent)[0]
    moved.rename(maildir / "cur" / f"{moved.name}:2,S")
    (maildir / "cur" / "1.foreign.host:2,").write_bytes(b"12345")  # no ,S=: its real size
    (maildir / "tmp" / "ignored").write_bytes(b"x" * 1000)
    (maildir / ".Sent" / "cur").mkdir(parents=True)  # a Maildir++ folder counts too
    (maildir / ".Sent" / "cur" / "2.foreign.host,S=70:2,S").write_bytes(b"")
    assert counted(agent, "bob") == Usage(3 * size + 5 + 70, 5)
    assert (maildir / "maildirsize").read_text() == f"0S\n{3 * size + 75} 5\n"
    # A delivery appends its line, and the next look reads it: no count.
    agent.deliver([job(message, recipient_index=3)])
    assert (maildir / "maildirsize").read_text().splitlines()[-1] == f"{size} 1"
    assert agent.usage("example.com", "bob") == Usage(4 * size + 75, 6)


@pytest.mark.parametrize(
    "content",
    [
        "",  # empty
        "100S\n",  # no usage line
        "100S\n10 1\nten 1\n",  # not a number
        "100S\n10 1\n-20 -2\n",  # below zero
        "100S\n10\0 1\n",  # a NUL
        "100S\n" + "1 0\n" * 2000,  # 5120 bytes or more
    ],
)
def test_a_broken_or_long_maildirsize_is_counted_again(agent: MaildirAgent, content: str) -> None:
    maildir = agent.mailbox_dir("example.com", "bob")
    (maildir / "cur").mkdir(parents=True)
    (maildir / "cur" / "1.host,S=30:2,S").write_bytes(b"")
    (maildir / "maildirsize").write_text(content)
    assert counted(agent, "bob", quota=100) == Usage(30, 1)
    assert (maildir / "maildirsize").read_text() == "100S\n30 1\n"


def test_maildirsize_as_courier_writes_it_is_trusted(agent: MaildirAgent) -> None:
    # Courier pads each line to 14 bytes; a last line without its LF is still being written.
    maildir = agent.mailbox_dir("example.com", "bob")
    maildir.mkdir(parents=True)
    (maildir / "maildirsize").write_text("5000S,10C\n      1000    2\n       -10   -1\n77 7")
    assert counted(agent, "bob", quota=5000) == Usage(990, 1)  # not counted: no files


def test_an_over_quota_figure_is_doubted_only_when_maildir_plus_plus_says(
    agent: MaildirAgent,
) -> None:
    maildir = agent.mailbox_dir("example.com", "bob")
    for sub in ("new", "cur"):
        (maildir / sub).mkdir(parents=True)
    size_file = maildir / "maildirsize"
    size_file.write_text("100S\n500 5\n")
    old = time.time() - 3600
    os.utime(maildir / "new", (old, old))
    os.utime(maildir / "cur", (old, old))
    # One summary line, fresh, folders unchanged since: over quota, believed.
    assert counted(agent, "bob", quota=100) == Usage(500, 5)
    # Older than 15 minutes: counted again (the maildir is empty).
    os.utime(size_file, (old, old))
    assert counted(agent, "bob", quota=100) == Usage(0, 0)


def test_messages_lists_oldest_first_with_decoded_fields(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    assert agent.messages("example.com", "nobody") == []
    older = spooled(tmp_path, b"Subject: older\r\nMessage-ID: <m0@x>\r\n\r\nbody\r\n", "older")
    agent.deliver([job(spooled(tmp_path), recipient_index=1), job(older, recipient_index=0)])
    maildir = agent.mailbox_dir("example.com", "bob")
    for path in (maildir / "new").iterdir():
        when = 1_700_000_000 if b"older" in path.read_bytes() else 1_700_000_100
        os.utime(path, (when, when))
    second = next(p for p in (maildir / "new").iterdir() if b"Hello" in p.read_bytes())
    second.rename(maildir / "cur" / f"{second.name}:2,RS")
    first, latest = agent.messages("example.com", "bob")
    assert (first.subject, first.message_id, first.folder, first.flags) == (
        "older",
        "<m0@x>",
        "new",
        "",
    )
    assert latest.subject == "Grüße"
    assert latest.from_ == "Alice <alice@example.org>"
    assert latest.date == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert (latest.folder, latest.flags) == ("cur", "RS")
    assert latest.size == latest.path.stat().st_size
    assert re.fullmatch(r"\S+,S=\d+:2,RS", latest.name)


def test_messages_survive_malformed_headers(agent: MaildirAgent, tmp_path: Path) -> None:
    data = b"From: <<<@@@>>>\r\nSubject: =?bogus?x?zz?=\r\nDate: yesterday\r\n\r\n"
    agent.deliver([job(spooled(tmp_path, data))])
    [message] = agent.messages("example.com", "bob")
    assert message.date == "yesterday"
    assert message.from_ and message.subject


# -- construction ----------------------------------------------------------------------------------


def test_auto_sync_picks_syncfs_on_linux(tmp_path: Path) -> None:
    agent = MaildirAgent(tmp_path, hostname=HOST)
    assert agent.sync == ("syncfs" if os.uname().sysname == "Linux" else "fsync")


@pytest.mark.parametrize(
    "kwargs", [{"sync": "never"}, {"max_received": 0}, {"hostname": ""}], ids=str
)
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MaildirAgent(tmp_path, **{"hostname": HOST, **kwargs})


@pytest.mark.parametrize(
    "changes",
    [
        {"queue_id": "../x"},
        {"recipient_index": -1},
        {"reverse_path": "a@b\r\nBcc: x@y"},
        {"delivered_to": "bob@x\nX: y"},
        {"local_part": ""},
        {"arrival": -1.0},
    ],
    ids=str,
)
def test_malformed_jobs_are_refused(tmp_path: Path, changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        job(tmp_path / "msg", **changes)
