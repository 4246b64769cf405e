"""The sockets under one diagnostic conversation: asyncio around ``smtp.ClientConnection``.

Not ``delivery.SmtpClient``: that client does banner, EHLO and STARTTLS in one call and
keeps nothing when it fails, which is what a delivery wants. A diagnosis needs each step
on its own, the transcript after any failure, and the certificate even when a verifying
client would refuse it. So this glue is thinner: it writes what the engine produced,
feeds the engine what arrives, and bounds every wait.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import cast

from ..smtp import ClientConnection, ProtocolError, Response
from ._report import TranscriptEntry

__all__ = ["Closed", "Conversation", "Garbled", "ReplyTimeout"]


class Closed(Exception):
    """The server closed or reset the connection; ``detail`` says how."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ReplyTimeout(Exception):
    """No whole reply within the timeout."""


class Garbled(Exception):
    """What the server sent is not SMTP; ``detail`` says what was wrong."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Link(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lost = False
        self.error: Exception | None = None
        self.readable = asyncio.Event()
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.readable.set()

    def eof_received(self) -> bool | None:
        self.lost = True
        self.readable.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost, self.error = True, exc
        self.readable.set()
        self.closed.set()


class Conversation:
    """One connection: ``connect``, then ``send``/``reply``, ``start_tls``, ``close``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.conn = ClientConnection()
        self.transcript: list[TranscriptEntry] = []
        self.tls_object: ssl.SSLObject | None = None
        self._link = _Link()
        self._started = time.monotonic()
        self._seen = 0  # engine transcript lines already copied, with their time

    def elapsed(self) -> float:
        return round(time.monotonic() - self._started, 3)

    @property
    def local_address(self) -> str | None:
        """Our end's IP address: the client address the server sees (barring NAT)."""
        transport = self._link.transport
        name = transport.get_extra_info("sockname") if transport is not None else None
        return str(name[0]) if isinstance(name, tuple) and name else None

    def note(self, text: str) -> None:
        self._stamp()
        self.transcript.append(TranscriptEntry(self.elapsed(), "*", text))

    async def connect(self, address: str, port: int) -> None:
        """Raises TimeoutError or OSError (refused, unreachable) as the socket said."""
        self._started = time.monotonic()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            await loop.create_connection(lambda: self._link, address, port)
        self.note(f"connected to {address} port {port}")

    async def send(self, data: bytes) -> None:
        link = self._link
        if link.lost or link.transport is None or link.transport.is_closing():
            self._stamp()
            raise Closed(self._lost_detail("before we could send"))
        link.transport.write(data)
        self._stamp()

    async def reply(self) -> Response:
        """The next reply, matched to its command by the engine."""
        link, conn = self._link, self.conn
        waiting = conn.awaiting[0].value if conn.awaiting else "?"
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    if link.buffer:
                        conn.receive_data(bytes(link.buffer))
                        link.buffer.clear()
                    response = conn.next_reply()
                    if response is not None:
                        self._stamp()
                        return response
                    if link.lost:
                        self._stamp()
                        raise Closed(self._lost_detail(f"waiting for the reply to {waiting}"))
                    link.readable.clear()
                    await link.readable.wait()
        except TimeoutError:
            self._stamp()
            raise ReplyTimeout(f"no reply to {waiting} within {self.timeout:g} s") from None
        except ProtocolError as error:
            self._stamp()
            self.abort()
            raise Garbled(f"{error.detail}: {error.received[:80]!r}") from None

    async def start_tls(self, context: ssl.SSLContext, server_name: str | None) -> bool:
        """The handshake after a 220 to STARTTLS; True if the server had sent more after
        that 220 (dropped unread). Raises ssl.SSLError, OSError or TimeoutError."""
        link = self._link
        injected = bool(link.buffer)
        link.buffer.clear()
        assert link.transport is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            transport = await loop.start_tls(
                link.transport, link, context, server_hostname=server_name
            )
        if transport is None:
            raise ssl.SSLError("the TLS layer could not start")
        link.transport = transport
        tls_object = transport.get_extra_info("ssl_object")
        if isinstance(tls_object, ssl.SSLObject):
            self.tls_object = tls_object
        self.conn.tls_established()
        version = tls_object.version() if self.tls_object else "?"
        self.note(f"TLS started ({version})")
        return injected

    def abort(self) -> None:
        transport = self._link.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    async def close(self) -> None:
        transport = self._link.transport
        if transport is None:
            return
        if not transport.is_closing():
            transport.close()
        try:
            async with asyncio.timeout(min(self.timeout, 5.0)):
                await self._link.closed.wait()
        except TimeoutError:
            transport.abort()

    def _lost_detail(self, doing: str) -> str:
        error = self._link.error
        how = "reset the connection" if isinstance(error, ConnectionResetError) else "closed"
        return f"{how} {doing}" + (f" ({error})" if error and how == "closed" else "")

    def _stamp(self) -> None:
        lines = self.conn.transcript
        now = self.elapsed()
        for line in lines[self._seen :]:
            self.transcript.append(TranscriptEntry(now, line.direction, line.text))
        self._seen = len(lines)
