"""Listeners and the shutdown sequence for the SMTP service."""

from __future__ import annotations

import asyncio
import socket
import ssl

from ..config import ListenAddress
from ..events import ServerStopping
from ._context import ServerContext
from ._registry import Sessions
from ._session import TLS_HANDSHAKE_TIMEOUT, Session

__all__ = ["SmtpServer"]

BACKLOG = 1024


class SmtpServer:
    """All SMTP listeners of one process, sharing one :class:`ServerContext`.

    The server owns the runtime state its sessions share (:class:`Sessions`: who is
    connected, whether it is stopping, session IDs); the context holds none.
    """

    def __init__(self, context: ServerContext) -> None:
        self.ctx = context
        self.sessions = Sessions()
        self._servers: list[asyncio.Server] = []
        self.bound: list[tuple[str, int]] = []
        self.bound_tls: list[tuple[str, int]] = []  # implicit TLS listeners
        self.bound_submission: list[tuple[str, int]] = []  # RFC 6409 submission listeners

    async def start(
        self,
        addresses: tuple[ListenAddress, ...],
        implicit_tls: tuple[ListenAddress, ...] = (),
        submission: tuple[ListenAddress, ...] = (),
    ) -> None:
        for address in addresses:
            await self._listen(address, None, self.bound)
        for address in submission:
            await self._listen(address, None, self.bound_submission, submission=True)
        if implicit_tls:
            if self.ctx.tls is None:
                raise RuntimeError("implicit TLS listeners need a certificate (ctx.tls)")
            for address in implicit_tls:
                # The context given here is only the first: its SNI callback moves every
                # handshake onto the current one, so SIGHUP reaches these listeners too.
                tls = self.ctx.tls.context_for(submission=True)  # RFC 8314: submission too
                await self._listen(address, tls, self.bound_tls)

    async def _listen(
        self,
        address: ListenAddress,
        context: ssl.SSLContext | None,
        bound: list[tuple[str, int]],
        *,
        submission: bool = False,
    ) -> None:
        loop = asyncio.get_running_loop()
        label = str(address)
        implicit = context is not None
        server = await loop.create_server(
            lambda: Session(
                self.ctx, self.sessions, label, implicit_tls=implicit, submission=submission
            ),
            host=address.host,
            port=address.port,
            reuse_address=True,
            backlog=BACKLOG,
            ssl=context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None,
        )
        self._servers.append(server)
        for sock in server.sockets:
            name = sock.getsockname()
            bound.append((str(name[0]), int(name[1])))
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def stop(self, *, grace: float, reason: str) -> int:
        """Stop listening; let messages in transfer finish within ``grace``; 421 the rest.

        Returns how many sessions had to be cut off when the grace period ended.
        """
        sessions = self.sessions
        sessions.stopping = True
        self.ctx.log.emit(ServerStopping(reason=reason, sessions=len(sessions)))
        for server in self._servers:
            server.close()
        for session in list(sessions.open):
            session.shutdown(force=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while sessions.open and loop.time() < deadline:
            await asyncio.sleep(0.05)
        cut = 0
        for session in list(sessions.open):
            cut += 1
            session.shutdown(force=True)
        # Commits already in flight still get their 250 before we go.
        deadline = loop.time() + 5.0
        while sessions.open and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for server in self._servers:
            await server.wait_closed()
        return cut
