"""A scripted milter for tests: asyncio on a loopback port, in a thread of its own.

It speaks the milter protocol's server side as the tests script it: the negotiation it
answers (actions, protocol steps skipped), the replies per command letter (``b"R"`` for
RCPT, ``b"E"`` for the end of the message: a list of packets, the last one the final
answer; a callable gets the command's data and returns that list), and how it breaks
(``hang`` at a command: never answers; ``close`` at a command: closes the connection;
``garbage`` at a command: answers bytes that are no milter reply). Every command each
connection received is kept in ``connections`` (command letter, data), for assertions.

The packets a milter sends are built here by hand from the protocol's layout (a 4-byte
length, a reply letter, its data), not with Hato's codec, so the two are checked against
each other::

    with ScriptedMilter() as scripted:
        scripted.replies[b"E"] = [add_header("X-Scanned", "yes"), CONTINUE]
        ... hato with socket = scripted.socket ...
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"
ALL_ACTIONS = 0x1FF
Replies = list[bytes] | Callable[[bytes], list[bytes]]


def packet(code: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + code + data


def z(*texts: str | bytes) -> bytes:
    return b"".join((t.encode() if isinstance(t, str) else t) + b"\0" for t in texts)


CONTINUE = packet(b"c")
ACCEPT = packet(b"a")
REJECT = packet(b"r")
TEMPFAIL = packet(b"t")
DISCARD = packet(b"d")
PROGRESS = packet(b"p")


def reply_code(text: str) -> bytes:
    return packet(b"y", z(text))


def quarantine(reason: str) -> bytes:
    return packet(b"q", z(reason))


def add_header(name: str, value: str) -> bytes:
    return packet(b"h", z(name, value))


def insert_header(index: int, name: str, value: str) -> bytes:
    return packet(b"i", struct.pack("!I", index) + z(name, value))


def change_header(index: int, name: str, value: str) -> bytes:
    return packet(b"m", struct.pack("!I", index) + z(name, value))


def change_from(sender: str) -> bytes:
    return packet(b"e", z(sender))


def add_recipient(recipient: str) -> bytes:
    return packet(b"+", z(recipient))


def delete_recipient(recipient: str) -> bytes:
    return packet(b"-", z(recipient))


def replace_body(body: bytes) -> bytes:
    return packet(b"b", body)


# Commands the MTA sends that get no answer, whatever the negotiation.
_UNANSWERED = {b"D", b"A", b"Q", b"K"}
# The NR_ (no reply) bit of each command that can have one, as negotiated.
_NO_REPLY = {
    b"C": 0x1000,
    b"H": 0x2000,
    b"M": 0x4000,
    b"R": 0x8000,
    b"T": 0x10000,
    b"L": 0x80,
    b"N": 0x40000,
    b"B": 0x80000,
}


@dataclass
class ScriptedMilter:
    actions: int = ALL_ACTIONS
    protocol: int = 0  # the steps it skips or leaves unanswered (SMFIP_*)
    replies: dict[bytes, Replies] = field(default_factory=dict)
    hang: bytes = b""  # at this command: never answer
    close: bytes = b""  # at this command: close the connection
    garbage: bytes = b""  # at this command: answer what no milter would
    connections: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def socket(self) -> str:
        return f"inet:{HOST}:{self.port}"

    def reset(self) -> None:
        """The default script again: continue to everything, break nowhere."""
        self.actions, self.protocol = ALL_ACTIONS, 0
        self.replies.clear()
        self.hang = self.close = self.garbage = b""
        self.connections.clear()

    def commands(self, index: int = -1) -> list[bytes]:
        """The command letters one connection received, in order."""
        return [code for code, _ in self.connections[index]]

    def data(self, code: bytes, index: int = -1) -> list[bytes]:
        return [data for got, data in self.connections[index] if got == code]

    def __enter__(self) -> ScriptedMilter:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = started.result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen: list[tuple[bytes, bytes]] = []
        self.connections.append(seen)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readexactly(4)
                (length,) = struct.unpack("!I", head)
                body = await reader.readexactly(length)
                code, data = body[:1], body[1:]
                seen.append((code, data))
                if code == self.close:
                    break
                if code == self.hang:
                    await asyncio.sleep(3600)
                if code == self.garbage:
                    writer.write(b"\x00\x00\x00\x05Zjunk")
                    await writer.drain()
                    continue
                for out in self._answer(code, data):
                    writer.write(out)
                await writer.drain()
                if code == b"Q":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    def _answer(self, code: bytes, data: bytes) -> list[bytes]:
        if code == b"O":
            return [packet(b"O", struct.pack("!III", 6, self.actions, self.protocol))]
        if code in _UNANSWERED or self.protocol & _NO_REPLY.get(code, 0):
            return []
        scripted = self.replies.get(code)
        if scripted is None:
            return [CONTINUE]
        return scripted(data) if callable(scripted) else list(scripted)
