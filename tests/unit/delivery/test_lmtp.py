"""``LmtpAgent`` against a scripted LMTP server on a unix socket and on 127.0.0.1: a result
per recipient as the server gave it (RFC 2033 4.2), and the recipients left without a
reply when the connection drops among the replies deferred, the others kept."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hato.config import HostPort, LmtpTarget
from hato.delivery import LmtpAgent, Reason, RemoteJob, RemoteTarget, Status, Timeouts
from hato.spool import Envelope, MessageSource, Recipient
from hato.trace import Attempt

T = TypeVar("T")
FAST = Timeouts(greeting=5, mail=5, rcpt=5, data_init=5, data_block=5, data_end=5, command=5)
MESSAGE = b"Subject: lmtp\r\n\r\nHello\r\n.dot\r\n"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, 20))


@dataclass
class LmtpScript:
    """``rcpt``: recipient -> RCPT reply (default 250); ``final``: recipient -> reply after
    the data (default 250); ``close_after``: hang up after this many final replies."""

    rcpt: dict[str, str] = field(default_factory=dict)
    final: dict[str, str] = field(default_factory=dict)
    data: str = "354 OK"
    close_after: int | None = None
    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)


async def serve(
    script: LmtpScript, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"220 lmtp.test Dovecot ready.\r\n")
    accepted: list[str] = []
    try:
        while line := await reader.readline():
            text = line.decode().rstrip("\r\n")
            script.commands.append(text)
            verb = text[:4].upper()
            if verb == "LHLO":
                writer.write(
                    b"250-lmtp.test\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
                    b"250 PIPELINING\r\n"
                )
            elif verb == "MAIL":
                accepted = []
                writer.write(b"250 2.1.0 OK\r\n")
            elif verb == "RCPT":
                address = text.partition("<")[2].partition(">")[0]
                answer = script.rcpt.get(address, "250 2.1.5 OK")
                if answer.startswith("2"):
                    accepted.append(address)
                writer.write(answer.encode() + b"\r\n")
            elif verb == "DATA":
                writer.write(script.data.encode() + b"\r\n")
                if not script.data.startswith("354"):
                    continue
                body = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    body += chunk
                script.messages.append(body)
                for number, address in enumerate(accepted):
                    if script.close_after is not None and number >= script.close_after:
                        await writer.drain()
                        writer.close()
                        return
                    answer = script.final.get(address, f"250 2.0.0 <{address}> Saved")
                    writer.write(answer.encode() + b"\r\n")
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"500 5.5.2 what\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def job(*addresses: str) -> RemoteJob:
    envelope = Envelope(
        reverse_path="alice@example.org",
        recipients=tuple(Recipient(address=a) for a in addresses),
        arrival=1_700_000_000,
    )
    return RemoteJob(
        queue_id="Q1LMTP",
        domain="example.com",
        envelope=envelope,
        targets=tuple(RemoteTarget(position=i, address=a) for i, a in enumerate(addresses)),
        source=MessageSource(data=MESSAGE),
        size=len(MESSAGE),
    )


async def deliver_unix(
    script: LmtpScript, addresses: list[str], attempts: list[Attempt]
) -> list[Any]:
    with tempfile.TemporaryDirectory(prefix="hato-lmtp-") as top:
        path = str(Path(top) / "lmtp")
        server = await asyncio.start_unix_server(lambda r, w: serve(script, r, w), path)
        async with server:
            agent = LmtpAgent(
                local_hostname="mx.test",
                default=LmtpTarget(path=path),
                timeouts=FAST,
                on_attempt=attempts.append,
            )
            return await agent.deliver(job(*addresses))


def test_each_recipient_gets_its_own_reply_over_a_unix_socket() -> None:
    script = LmtpScript(
        rcpt={"nobody@example.com": "550 5.1.1 <nobody@example.com> User doesn't exist"},
        final={"full@example.com": "452 4.2.2 <full@example.com> Quota exceeded (mailbox is full)"},
    )
    attempts: list[Attempt] = []
    addresses = ["bob@example.com", "nobody@example.com", "full@example.com", "carol@example.com"]
    results = run(deliver_unix(script, addresses, attempts))
    statuses = [(r.target.address, r.result.status, r.result.enhanced) for r in results]
    assert statuses == [
        ("bob@example.com", Status.DELIVERED, "2.0.0"),
        ("nobody@example.com", Status.FAILED, "5.1.1"),
        ("full@example.com", Status.DEFERRED, "4.2.2"),
        ("carol@example.com", Status.DELIVERED, "2.0.0"),
    ]
    assert results[2].result.reason is Reason.MAILBOX_FULL
    assert results[0].result.detail.startswith("lmtp:unix:")
    assert results[1].command == "RCPT TO:<nobody@example.com>"
    assert script.commands[0] == "LHLO mx.test"
    assert script.messages == [MESSAGE.replace(b"\r\n.dot", b"\r\n..dot")]
    [attempt] = attempts
    assert attempt.host.startswith("lmtp:unix:") and attempt.queue_id == "Q1LMTP"
    assert any(line[2] == "LHLO mx.test" for line in attempt.lines)


def test_a_connection_lost_among_the_replies_defers_only_the_unanswered() -> None:
    script = LmtpScript(close_after=1)
    addresses = ["bob@example.com", "carol@example.com", "dave@example.com"]
    results = run(deliver_unix(script, addresses, []))
    assert [r.result.status for r in results] == [
        Status.DELIVERED,
        Status.DEFERRED,
        Status.DEFERRED,
    ]
    assert results[1].result.enhanced == "4.4.2"
    assert "no reply for this recipient" in results[1].result.detail


def test_refused_data_fails_every_accepted_recipient() -> None:
    script = LmtpScript(data="554 5.6.0 message refused")
    results = run(deliver_unix(script, ["bob@example.com", "carol@example.com"], []))
    assert [(r.result.status, r.result.enhanced) for r in results] == [(Status.FAILED, "5.6.0")] * 2


def test_over_tcp_and_a_server_that_is_down() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        script = LmtpScript()
        server = await asyncio.start_server(lambda r, w: serve(script, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            up = LmtpAgent(
                local_hostname="mx.test",
                destinations={"example.com": LmtpTarget(address=HostPort("127.0.0.1", port))},
                timeouts=FAST,
            )
            delivered = await up.deliver(job("bob@example.com"))
        down = LmtpAgent(
            local_hostname="mx.test",
            default=LmtpTarget(path="/nonexistent/hato/lmtp"),
            timeouts=FAST,
        )
        return delivered, await down.deliver(job("bob@example.com", "carol@example.com"))

    delivered, refused = run(scenario())
    assert [r.result.status for r in delivered] == [Status.DELIVERED]
    assert delivered[0].result.detail.startswith("lmtp:127.0.0.1:")
    assert [r.result.status for r in refused] == [Status.DEFERRED, Status.DEFERRED]
    assert refused[0].result.reason is Reason.CONNECTION
    assert refused[0].result.enhanced.startswith("4.")
