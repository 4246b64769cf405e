"""How sessions end: graceful shutdown on SIGTERM, the idle timeout, too many errors."""

from __future__ import annotations

import base64
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

SHUTDOWN = "421 4.3.2 mx.test.example Service shutting down, closing transmission channel"
TIMEOUT = "421 4.4.2 mx.test.example Error: timeout exceeded"
TOO_MANY_ERRORS = "421 4.7.0 mx.test.example Error: too many errors"
CONTENT_HEAD = b"From: admin@test.com\r\nTo: user@localhost\r\nSubject: in transfer\r\n\r\n"
CONTENT_TAIL = b"the rest of the message, sent after SIGTERM\r\n"


def greet(client: SmtpLineClient) -> None:
    assert client.read_reply()[0].startswith("220 mx.test.example ESMTP Hato ")
    client.command("EHLO client.example")
    assert client.read_reply()[-1] == "250 HELP"


def start_data(client: SmtpLineClient) -> None:
    greet(client)
    assert client.reply("MAIL FROM:<admin@test.com>") == "250 2.1.0 Ok"
    assert client.reply("RCPT TO:<user@localhost>") == "250 2.1.5 Ok"
    assert client.reply("DATA") == "354 End data with <CR><LF>.<CR><LF>"


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_sigterm_lets_the_message_in_transfer_finish(
    hato: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    port = hato.port
    busy = smtp_connect(port)
    start_data(busy)
    busy.send(CONTENT_HEAD)
    idle = smtp_connect(port)
    greet(idle)

    hato.signal(signal.SIGTERM)
    # The idle session is told at once and closed; no new connection is taken.
    assert idle.read_reply() == [SHUTDOWN]
    assert idle.expect_closed() == b""
    assert_refused(port)

    # The session in the middle of DATA may finish: its message is accepted, then it is closed.
    busy.send(CONTENT_TAIL + b".\r\n")
    reply = busy.read_reply()[-1]
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply
    assert busy.read_reply() == [SHUTDOWN]
    assert busy.expect_closed() == b""
    assert hato.wait() == 0

    queue_id = reply.rpartition(" ")[2]
    _, stored = hato.message(queue_id)
    assert hato.split_received(stored)[1] == CONTENT_HEAD + CONTENT_TAIL
    assert hato.events("server_stopped")[-1]["interrupted_sessions"] == 0


def test_sigterm_takes_no_new_transaction(
    hato: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(hato.port)
    start_data(client)
    client.send(CONTENT_HEAD)
    hato.signal(signal.SIGTERM)
    hato.wait_for_event("server_stopping")
    # A pipelining client sends the end of its message and a whole second one in one write.
    second = b"MAIL FROM:<admin@test.com>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n"
    client.send(CONTENT_TAIL + b".\r\n" + second + b"Subject: after SIGTERM\r\n\r\n.\r\n")
    reply = client.read_reply()[-1]
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply
    # Only the message in transfer finishes: the next command is not run but answered 421.
    assert client.read_reply() == [SHUTDOWN]
    assert client.expect_closed() == b""
    assert hato.wait() == 0
    assert [m.queue_id for m in hato.queue()] == [reply.rpartition(" ")[2]]
    assert len(hato.events("mail")) == 1  # the second MAIL never reached the session


def test_sigterm_grace_period_ends(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    hato = hato_factory(config="[server]\nshutdown_grace = 0.5\n")
    hato.start()
    stalled = smtp_connect(hato.port)
    start_data(stalled)
    stalled.send(CONTENT_HEAD)
    hato.signal(signal.SIGTERM)
    # The client never finishes: after the grace period it is cut off, and nothing is queued.
    assert stalled.read_reply() == [SHUTDOWN]
    assert stalled.expect_closed() == b""
    assert hato.wait() == 0
    assert hato.queue() == []
    assert hato.events("server_stopped")[-1]["interrupted_sessions"] == 1


@pytest.fixture
def short_idle(hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    hato = hato_factory(config="[smtp]\nidle_timeout = 1.0\n")
    hato.start()
    return hato


def test_idle_client_is_closed(
    short_idle: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(short_idle.port, timeout=10)
    greet(client)
    started = time.monotonic()
    assert client.read_reply() == [TIMEOUT]
    assert client.expect_closed() == b""
    assert time.monotonic() - started >= 0.9
    local_port = client.local_port
    session = short_idle.wait_for_event("connect", client_port=local_port)["session"]
    assert short_idle.wait_for_event("disconnect", session=session)["reason"] == "idle timeout"


def test_idle_in_data_is_closed_and_nothing_queued(
    short_idle: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(short_idle.port, timeout=10)
    start_data(client)
    client.send(CONTENT_HEAD)
    assert client.read_reply() == [TIMEOUT]
    assert client.expect_closed() == b""
    assert short_idle.queue() == []


def test_activity_keeps_a_session_open(
    short_idle: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(short_idle.port)
    greet(client)
    # 1.5 s in all, more than the timeout, but never 1 s without a command.
    for _ in range(3):
        time.sleep(0.5)
        assert client.reply("NOOP") == "250 2.0.0 Ok"


def drip(client: SmtpLineClient, data: bytes, pause: float) -> None:
    """Send ``data`` one byte at a time, ``pause`` seconds apart, until the server speaks."""
    for byte in data:
        try:
            client.send(bytes([byte]))
        except OSError:
            return  # closed already
        if select.select([client.sock], [], [], pause)[0]:
            return


def test_a_command_dripped_slower_than_the_timeout_is_cut_off(
    short_idle: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(short_idle.port, timeout=10)
    greet(client)
    started = time.monotonic()
    # A byte every 0.25 s: bytes keep coming, but no command line is complete within 1 s.
    drip(client, b"NOOP" + b" " * 36 + b"\r\n", 0.25)
    assert client.read_reply() == [TIMEOUT]
    assert client.expect_closed() == b""
    assert time.monotonic() - started < 8.0  # the whole line would have taken 10 s


def test_an_auth_answer_dripped_slower_than_the_timeout_is_cut_off(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    hato = hato_factory(config="[smtp]\nidle_timeout = 1.0\n[auth]\nallow_plaintext = true\n")
    hato.start()
    client = smtp_connect(hato.port, timeout=10)
    greet(client)
    assert client.reply("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    drip(client, base64.b64encode(b"someone@localhost" * 3) + b"\r\n", 0.25)
    assert client.read_reply() == [TIMEOUT]
    assert client.expect_closed() == b""


def test_message_data_renews_the_timeout_with_every_read(
    short_idle: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    # As Postfix's smtpd_timeout in DATA: each read counts, however small (2 s in all).
    client = smtp_connect(short_idle.port, timeout=10)
    start_data(client)
    drip(client, b"Subject: slow\r\n\r\n" + b"x" * 4, 0.1)
    client.send(b"\r\n.\r\n")
    assert client.read_reply()[-1].startswith("250 2.0.0 Ok: queued as ")


def test_too_many_errors(hato: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]) -> None:
    client = smtp_connect(hato.port)
    greet(client)
    # Twenty bad commands and a good one, in one write: the good one is never answered.
    client.send(b"FOO\r\n" * 20 + b"NOOP\r\n")
    unknown = '500 5.5.2 Command unrecognized: "FOO" (type HELP for the list)'
    assert [client.read_reply() for _ in range(20)] == [[unknown]] * 20
    assert client.read_reply() == [TOO_MANY_ERRORS]
    assert client.expect_closed() == b""


def test_errors_of_every_kind_count(
    hato: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(hato.port)
    greet(client)
    bad = ["RCPT TO:<user@localhost>", "DATA", "MAIL FROM:<bad", "HELP nothing", "VRFY"]
    replies = []
    for number in range(19):
        replies.append(client.reply(bad[number % len(bad)]))
    assert all(reply[0] in "45" for reply in replies), replies
    # A relay refusal is an error too: the twentieth.
    assert client.reply("MAIL FROM:<admin@test.com>") == "250 2.1.0 Ok"
    client.command("RCPT TO:<x@remote.example>")
    assert client.read_reply() == ["554 5.7.1 <x@remote.example>: Relay access denied"]
    assert client.read_reply() == [TOO_MANY_ERRORS]
    assert client.expect_closed() == b""
