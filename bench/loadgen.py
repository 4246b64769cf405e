"""An ESMTP load generator that pipelines (RFC 2920), and times end of DATA to 250.

``smtp-source`` speaks HELO one command at a time; this one says EHLO and, when the
server advertises PIPELINING, sends ``MAIL``, ``RCPT`` and ``DATA`` in one write, then the
message, and times from the moment the final ``<CRLF>.<CRLF>`` is written until the
``250`` arrives: the time a server takes to make a message durable and say so. A server
that does not advertise PIPELINING gets the commands one at a time (and the result says
so).

Messages are numbered 1..M across all sessions, each carrying ``X-Bench-Token: N`` so the
runner can check that every one is in the Maildir exactly once. Sessions take the next
number from a shared counter, so a fast session sends more, as with smtp-source.
Prints one JSON object: counts, wall-clock start and end, latency percentiles.

``--message FILE`` sends that message (e.g. one signed in advance) instead of the made-up
one, with ``X-Bench-Token: N`` added above its header section; ``--auth USER:PASSWORD``
logs in with ``AUTH PLAIN`` after EHLO, once per connection (for a submission listener).

    python bench/loadgen.py --port 2525 --sessions 10 --messages 2000 --size 1024
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

LINE = b"X" * 78 + b"\r\n"


class ReplyError(Exception):
    pass


@dataclass
class Totals:
    accepted: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pipelined: bool | None = None


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.numbers: Iterator[int] = iter(range(1, args.messages + 1))
        lines = max(1, args.size // len(LINE))
        self.payload = LINE * lines + b".\r\n"
        self.template: bytes | None = None
        if args.message:
            with open(args.message, "rb") as file:
                self.template = dot_stuffed(file.read())
        self.totals = Totals()

    def message(self, number: int) -> bytes:
        if self.template is not None:
            return f"X-Bench-Token: {number}\r\n".encode() + self.template
        head = (
            f"From: <{self.args.sender}>\r\nTo: <{self.args.rcpt}>\r\n"
            f"Subject: bench {number}\r\nMessage-ID: <{number}.{self.args.run}@client.test>\r\n"
            f"X-Bench-Token: {number}\r\n\r\n"
        )
        return head.encode() + self.payload

    async def session(self) -> None:
        args = self.args
        conn: Connection | None = None
        try:
            for number in self.numbers:
                if conn is None:
                    conn = await Connection.open(args.host, args.port, args.source)
                    if args.auth:
                        await conn.login(args.auth)
                    if self.totals.pipelined is None:
                        self.totals.pipelined = conn.pipelining
                await conn.transaction(args.sender, args.rcpt, self.message(number), self.totals)
                if args.mode == "new":
                    await conn.quit()
                    conn = None
            if conn is not None:
                await conn.quit()
        except (OSError, ReplyError, asyncio.IncompleteReadError) as exc:
            self.totals.errors.append(f"{type(exc).__name__}: {exc}")


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pipelining = False

    @classmethod
    async def open(cls, host: str, port: int, source: str | None) -> Connection:
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        conn = cls(reader, writer)
        await conn.expect(b"220")
        writer.write(b"EHLO client.test\r\n")
        lines = await conn.reply(b"250")
        conn.pipelining = any(line[4:].strip().upper() == b"PIPELINING" for line in lines)
        return conn

    async def login(self, credentials: str) -> None:
        user, _, password = credentials.partition(":")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.writer.write(f"AUTH PLAIN {token}\r\n".encode())
        await self.expect(b"235")

    async def reply(self, expect: bytes) -> list[bytes]:
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ReplyError("connection closed by the server")
            lines.append(line)
            if line[3:4] != b"-":
                break
        if not line.startswith(expect):
            raise ReplyError(f"expected {expect.decode()}, got {line!r}")
        return lines

    async def expect(self, code: bytes) -> None:
        await self.reply(code)

    async def transaction(self, sender: str, rcpt: str, message: bytes, totals: Totals) -> None:
        commands = [f"MAIL FROM:<{sender}>\r\n".encode(), f"RCPT TO:<{rcpt}>\r\n".encode()]
        if self.pipelining:
            self.writer.write(b"".join([*commands, b"DATA\r\n"]))
            await self.expect(b"250")
            await self.expect(b"250")
            await self.expect(b"354")
        else:
            for command, code in zip(
                [*commands, b"DATA\r\n"], [b"250", b"250", b"354"], strict=True
            ):
                self.writer.write(command)
                await self.expect(code)
        self.writer.write(message)
        sent = time.perf_counter()
        await self.expect(b"250")
        totals.latencies.append(time.perf_counter() - sent)
        totals.accepted += 1

    async def quit(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await self.expect(b"221")
        self.writer.close()


def dot_stuffed(message: bytes) -> bytes:
    """A message as DATA carries it: CRLF lines, leading dots doubled, the final dot."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." if line.startswith(b".") else b"") + line + b"\r\n" for line in lines) + (
        b".\r\n"
    )


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def drive(args: argparse.Namespace) -> dict[str, object]:
    generator = Generator(args)
    start_wall, start = time.time(), time.perf_counter()
    await asyncio.gather(*(generator.session() for _ in range(args.sessions)))
    elapsed = time.perf_counter() - start
    totals = generator.totals
    p50, p99 = percentile(totals.latencies, 0.5), percentile(totals.latencies, 0.99)
    return {
        "accepted": totals.accepted,
        "errors": totals.errors[:5],
        "error_count": len(totals.errors),
        "pipelined": totals.pipelined,
        "start": start_wall,
        "end": start_wall + elapsed,
        "elapsed": elapsed,
        "latency_p50_ms": None if p50 is None else p50 * 1000,
        "latency_p99_ms": None if p99 is None else p99 * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", help="local loopback address to connect from")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024, help="payload bytes after the header")
    parser.add_argument("--mode", choices=["new", "persistent"], default="persistent")
    parser.add_argument("--sender", default="bench@client.test")
    parser.add_argument("--rcpt", default="user@bench.test")
    parser.add_argument("--run", default="0", help="run id, part of each Message-ID")
    parser.add_argument("--message", help="send this message file (the token added on top)")
    parser.add_argument("--auth", help="USER:PASSWORD for AUTH PLAIN after EHLO")
    args = parser.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        result = uvloop.run(drive(args))
    except ImportError:
        result = asyncio.run(drive(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
