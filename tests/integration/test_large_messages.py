"""Large messages stream to disk (the server's memory does not grow with them), and a message
over the size limit is read to its end, refused with 552, and leaves the session usable."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

MB = 1024 * 1024
# What the server may add to its peak RSS while a 50 MB message passes through it.
MAX_RSS_GROWTH_KIB = 25 * 1024
SMALL_LIMIT = 100_000
SMALL_LIMIT_CONFIG = f"[smtp]\nmax_message_size = {SMALL_LIMIT}\n"


def generate_message(size: int, tag: str) -> bytes:
    """About ``size`` octets: a header, then numbered CRLF lines of 76 characters."""
    header = f"From: admin@test.com\r\nTo: user@localhost\r\nSubject: {tag}\r\n\r\n".encode()
    filler = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-=+/"
    lines = (size - len(header)) // 78
    body = b"".join(b"%010d" % i + filler + b"\r\n" for i in range(lines))
    return header + body


def greet(client: SmtpLineClient) -> list[str]:
    assert client.read_reply()[0].startswith("220 ")
    client.command("EHLO client.example")
    lines = client.read_reply()
    assert lines[-1] == "250 HELP"
    return lines


def send_message(client: SmtpLineClient, content: bytes) -> str:
    """MAIL, RCPT and DATA on a greeted session; returns the final reply line."""
    assert client.reply("MAIL FROM:<admin@test.com>") == "250 2.1.0 Ok"
    assert client.reply("RCPT TO:<user@localhost>") == "250 2.1.5 Ok"
    assert client.reply("DATA").startswith("354 ")
    client.send(content + b".\r\n")
    return client.read_reply()[-1]


def queued_id(reply: str) -> str:
    prefix = "250 2.0.0 Ok: queued as "
    assert reply.startswith(prefix), reply
    return reply.removeprefix(prefix)


def test_1mb_and_50mb_messages(
    hato: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(hato.port, timeout=60)
    greet(client)
    small = generate_message(1 * MB, "one megabyte")
    small_id = queued_id(send_message(client, small))

    large = generate_message(50 * MB, "fifty megabytes")
    assert len(large) > 49 * MB
    before = hato.peak_rss_kib()
    large_id = queued_id(send_message(client, large))
    after = hato.peak_rss_kib()
    assert after - before < MAX_RSS_GROWTH_KIB, f"peak RSS grew from {before} to {after} KiB"
    assert client.reply("QUIT").startswith("221 ")

    listing = hato.cli("queue", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    by_id = {entry["queue_id"]: entry for entry in json.loads(listing.stdout)}
    assert sorted(by_id) == sorted([small_id, large_id])
    for queue_id, content in ((small_id, small), (large_id, large)):
        message, stored = hato.message(queue_id)
        received, rest = hato.split_received(stored)
        assert by_id[queue_id]["size"] == message.size == len(received) + len(content)
        assert hashlib.sha256(rest).digest() == hashlib.sha256(content).digest()


@pytest.fixture
def small_limit(hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    process = hato_factory(config=SMALL_LIMIT_CONFIG)
    process.start()
    return process


def test_oversize_message_is_read_to_its_end_and_refused(
    small_limit: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(small_limit.port)
    assert f"250-SIZE {SMALL_LIMIT}" in greet(client)
    # Past the limit come lines that would be commands if the server stopped reading there.
    tail = b"RSET\r\nMAIL FROM:<evil@test.com>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n"
    content = generate_message(2 * SMALL_LIMIT, "too big") + tail
    assert send_message(client, content) == "552 5.3.4 Error: message exceeds fixed maximum size"
    # The next reply is the NOOP's own: nothing of the tail was run as a command.
    client.command("NOOP")
    assert client.read_line() == b"250 2.0.0 Ok"
    assert client.reply("RCPT TO:<user@localhost>") == "503 5.5.1 Error: need MAIL command"
    assert small_limit.queue() == []
    reject = small_limit.wait_for_event("reject", command="DATA")
    assert reject["reply"].startswith("552 5.3.4")


def test_size_limit_boundary(
    small_limit: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(small_limit.port)
    greet(client)
    at_limit = generate_message(SMALL_LIMIT - 100, "boundary")
    at_limit += b"y" * (SMALL_LIMIT - len(at_limit) - 2) + b"\r\n"
    assert len(at_limit) == SMALL_LIMIT
    accepted = queued_id(send_message(client, at_limit))
    over = at_limit[:-2] + b"z\r\n"
    assert send_message(client, over) == "552 5.3.4 Error: message exceeds fixed maximum size"
    assert client.reply("NOOP") == "250 2.0.0 Ok"
    assert [m.queue_id for m in small_limit.queue()] == [accepted]


def test_oversize_bdat_is_refused(
    small_limit: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(small_limit.port)
    greet(client)
    assert client.reply("MAIL FROM:<admin@test.com>") == "250 2.1.0 Ok"
    assert client.reply("RCPT TO:<user@localhost>") == "250 2.1.5 Ok"
    chunk = generate_message(SMALL_LIMIT, "first chunk")
    client.send(b"BDAT %d\r\n" % len(chunk) + chunk)
    assert client.read_reply() == [f"250 2.0.0 Ok: {len(chunk)} octets received"]
    chunk = b"NOOP\r\n" * 1000
    client.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert client.read_reply() == ["552 5.3.4 Error: message exceeds fixed maximum size"]
    client.command("NOOP")
    assert client.read_line() == b"250 2.0.0 Ok"
    assert small_limit.queue() == []
