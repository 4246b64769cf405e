"""Scale: many idle connections held open while one more client still gets served.

Opens ``count`` connections to the server (each reads its banner, so the server has really
taken it, then says nothing), spread over several loopback source addresses so the
ephemeral ports of one address never run short. With all of them open, a fresh client
connects, times its banner and sends one message (EHLO, MAIL, RCPT, DATA, QUIT), and the
server's memory is read at that moment. Needs RLIMIT_NOFILE above ``count`` on both sides:
the runner raises its own limit before it starts the servers, which inherit it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 10))
OPEN_CONCURRENCY = 200  # connections being opened at once
OPEN_TIMEOUT = 30.0


async def _hold(host: str, port: int, index: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(SOURCES[index % len(SOURCES)], 0)),
        OPEN_TIMEOUT,
    )
    banner = await asyncio.wait_for(reader.readline(), OPEN_TIMEOUT)
    if not banner.startswith(b"220"):
        writer.close()
        raise ConnectionError(f"banner {banner!r}")
    return writer


async def _probe(host: str, port: int, rcpt: str, token: str) -> dict[str, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)

    async def reply(code: bytes) -> None:
        while True:
            line = await asyncio.wait_for(reader.readline(), OPEN_TIMEOUT)
            if line[3:4] != b"-":
                break
        if not line.startswith(code):
            raise ConnectionError(f"expected {code.decode()}, got {line!r}")

    await reply(b"220")
    banner = time.perf_counter() - started
    for command, code in (
        (b"EHLO probe.test\r\n", b"250"),
        (b"MAIL FROM:<probe@client.test>\r\n", b"250"),
        (f"RCPT TO:<{rcpt}>\r\n".encode(), b"250"),
        (b"DATA\r\n", b"354"),
        (f"Subject: probe\r\nX-Bench-Token: {token}\r\n\r\nhello\r\n.\r\n".encode(), b"250"),
        (b"QUIT\r\n", b"221"),
    ):
        writer.write(command)
        await reply(code)
    writer.close()
    return {"banner_ms": banner * 1000, "message_ms": (time.perf_counter() - started) * 1000}


async def run(
    host: str, port: int, count: int, rcpt: str, measure: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Hold ``count`` idle connections, probe, and return ``measure()`` taken meanwhile."""
    before = measure()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(index: int) -> asyncio.StreamWriter:
        async with gate:
            return await _hold(host, port, index)

    started = time.perf_counter()
    held = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    writers = [w for w in held if isinstance(w, asyncio.StreamWriter)]
    failures = [f"{type(e).__name__}: {e}" for e in held if isinstance(e, BaseException)]
    opened_in = time.perf_counter() - started
    await asyncio.sleep(1.0)  # let the server settle: every session idle, waiting for EHLO
    try:
        probe: dict[str, Any] = await _probe(host, port, rcpt, "1")
    except (OSError, ConnectionError, TimeoutError) as exc:
        probe = {"error": f"{type(exc).__name__}: {exc}"}
    during = measure()
    for writer in writers:
        writer.close()
    return {
        "requested": count,
        "held": len(writers),
        "failed": len(failures),
        "failures": sorted(set(failures))[:5],
        "open_seconds": opened_in,
        "probe": probe,
        "before": before,
        "during": during,
    }
