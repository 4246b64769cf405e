"""Throughput: messages per second queued durably, and delivered end to end to a Maildir.

Starts a real ``hato serve`` on a loopback port with a fresh data directory, then drives
it with N concurrent SMTP sessions (asyncio, one command at a time like an ordinary
client, no pipelining), each sending 1 KB messages (configurable), with a new connection
per message or all messages on one connection. Every message is counted only when its
``250 ... queued as`` arrived, i.e. after Hato made it durable.

Reports two rates: *accepted* (all ``250 ... queued as`` replies received) and *end to
end* (from the first byte sent until the last message's file is in the recipient's
Maildir ``new/``, every file fsynced), plus the server's CPU time per message (from /proc,
independent of the load generator's own CPU use). The recipient is
``postmaster@localhost``, which exists in the embedded default. The load generator runs on
the same two cores, so compare runs made side by side, not across days.

    .venv/bin/python bench/accept.py                 # 1 and 50 sessions, both modes
    .venv/bin/python bench/accept.py --sessions 10 --messages 2000 --size 102400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procstat import cpu_seconds

HATO = Path(sys.executable).with_name("hato")


def message_body(size: int, index: int) -> bytes:
    header = f"From: bench@localhost\r\nTo: user@localhost\r\nSubject: bench {index}\r\n\r\n"
    line = b"x" * 74 + b"\r\n"
    body = header.encode() + line * max(0, (size - len(header)) // len(line))
    return body + b".\r\n"


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> bytes:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("server closed")
            if line[3:4] != b"-":
                return line

    async def command(self, line: bytes, expect: bytes) -> None:
        self.writer.write(line)
        answer = await self.reply()
        if not answer.startswith(expect):
            raise RuntimeError(f"{line!r} -> {answer!r}")


async def open_client(port: int) -> Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Client(reader, writer)
    if not (await client.reply()).startswith(b"220"):
        raise RuntimeError("no banner")
    await client.command(b"EHLO bench.example\r\n", b"250")
    return client


async def send_one(client: Client, body: bytes) -> None:
    await client.command(b"MAIL FROM:<bench@localhost>\r\n", b"250")
    await client.command(b"RCPT TO:<postmaster@localhost>\r\n", b"250")
    await client.command(b"DATA\r\n", b"354")
    await client.command(body, b"250")


async def session(port: int, count: int, body: bytes, persistent: bool) -> int:
    done = 0
    client = await open_client(port) if persistent else None
    for _ in range(count):
        if client is None:
            one = await open_client(port)
            await send_one(one, body)
            await one.command(b"QUIT\r\n", b"221")
            one.writer.close()
        else:
            await send_one(client, body)
        done += 1
    if client is not None:
        await client.command(b"QUIT\r\n", b"221")
        client.writer.close()
    return done


def start_hato(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [
            *(str(HATO), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"),
            *("-o", 'web.listen=["127.0.0.1:0"]'),  # the HTTP service on a port of its own
        ],
        stderr=subprocess.DEVNULL,
    )
    events = data_dir / "log" / "events.jsonl"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if events.exists():
            for line in events.read_text().splitlines():
                record = json.loads(line)
                if record["event"] == "server_started":
                    return proc, int(record["listen"][0].rsplit(":", 1)[1])
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("hato did not start")


def delivered_count(data_dir: Path) -> int:
    maildir = data_dir / "mailboxes" / "localhost" / "postmaster" / "new"
    try:
        return sum(1 for _ in os.scandir(maildir))
    except FileNotFoundError:
        return 0


def wait_delivered(data_dir: Path, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while delivered_count(data_dir) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {delivered_count(data_dir)} of {count} delivered")
        time.sleep(0.005)


def run(sessions: int, messages: int, size: int, persistent: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hato-bench-", dir=Path.cwd()) as tmp:
        data_dir = Path(tmp)
        proc, port = start_hato(data_dir)
        try:
            body = message_body(size, 0)
            per_session = max(1, messages // sessions)
            cpu_before = cpu_seconds(proc.pid)
            started = time.perf_counter()

            async def drive() -> int:
                counts = await asyncio.gather(
                    *(session(port, per_session, body, persistent) for _ in range(sessions))
                )
                return sum(counts)

            sent = asyncio.run(drive())
            accepted = time.perf_counter() - started
            wait_delivered(data_dir, sent)
            delivered = time.perf_counter() - started
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        if delivered_count(data_dir) != sent:
            raise RuntimeError(f"{sent} acknowledged but {delivered_count(data_dir)} delivered")
        return {
            "sessions": sessions,
            "messages": sent,
            "accepted_per_s": round(sent / accepted, 1),
            "end_to_end_per_s": round(sent / delivered, 1),
            "server_cpu_ms_per_msg": round(cpu * 1000 / sent, 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, action="append", help="repeatable; default 1 50")
    parser.add_argument("--messages", type=int, default=3000, help="per workload")
    parser.add_argument("--size", type=int, default=1024, help="message size in bytes")
    parser.add_argument("--mode", choices=["new", "persistent", "both"], default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = {"new": [False], "persistent": [True], "both": [False, True]}[args.mode]
    results = []
    for persistent in modes:
        for sessions in args.sessions or [1, 50]:
            result = run(sessions, args.messages, args.size, persistent)
            result["connection"] = "persistent" if persistent else "new per message"
            results.append(result)
            if not args.json:
                print(
                    f"{sessions:>3} sessions, {result['connection']:<16} "
                    f"{result['messages']:>6} msgs: accepted {result['accepted_per_s']:>7.1f}/s,"
                    f" end to end {result['end_to_end_per_s']:>7.1f}/s, "
                    f"server CPU {result['server_cpu_ms_per_msg']:.3f} ms/msg",
                    flush=True,
                )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
