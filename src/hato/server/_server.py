"""Listeners and the shutdown sequence for the SMTP service."""

from __future__ import annotations

import asyncio
import socket

from ..config import ListenAddress
from ..events import ServerStopping
from ._context import ServerContext
from ._session import Session

__all__ = ["SmtpServer"]

BACKLOG = 1024


class SmtpServer:
    """All SMTP listeners of one process, sharing one :class:`ServerContext`."""

    def __init__(self, context: ServerContext) -> None:
        self.ctx = context
        self._servers: list[asyncio.Server] = []
        self.bound: list[tuple[str, int]] = []

    async def start(self, addresses: tuple[ListenAddress, ...]) -> None:
        loop = asyncio.get_running_loop()
        for address in addresses:
            label = str(address)
            server = await loop.create_server(
                lambda label=label: Session(self.ctx, label),  # type: ignore[misc]
                host=address.host,
                port=address.port,
                reuse_address=True,
                backlog=BACKLOG,
            )
            self._servers.append(server)
            for sock in server.sockets:
                name = sock.getsockname()
                self.bound.append((str(name[0]), int(name[1])))
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def stop(self, *, grace: float, reason: str) -> int:
        """Stop listening; let messages in transfer finish within ``grace``; 421 the rest.

        Returns how many sessions had to be cut off when the grace period ended.
        """
        ctx = self.ctx
        ctx.stopping = True
        ctx.log.emit(ServerStopping(reason=reason, sessions=len(ctx.sessions)))
        for server in self._servers:
            server.close()
        for session in list(ctx.sessions):
            session.shutdown(force=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while ctx.sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)
        cut = 0
        for session in list(ctx.sessions):
            cut += 1
            session.shutdown(force=True)
        # Commits already in flight still get their 250 before we go.
        deadline = loop.time() + 5.0
        while ctx.sessions and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for server in self._servers:
            await server.wait_closed()
        return cut
