"""Listeners and the shutdown sequence for the SMTP service."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Mapping, Sequence

from ..config import ListenAddress
from ..events import ServerStopping
from ._context import ServerContext
from ._proxied import ProxiedListener
from ._proxy import ProxyHeader
from ._registry import Sessions
from ._session import TLS_HANDSHAKE_TIMEOUT, Session

__all__ = ["SmtpServer", "bind"]

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
        self._proxied: list[ProxiedListener] = []
        self.bound: list[tuple[str, int]] = []
        self.bound_tls: list[tuple[str, int]] = []  # implicit TLS listeners
        self.bound_submission: list[tuple[str, int]] = []  # RFC 6409 submission listeners

    async def start(
        self,
        addresses: tuple[ListenAddress, ...],
        implicit_tls: tuple[ListenAddress, ...] = (),
        submission: tuple[ListenAddress, ...] = (),
        *,
        inherited: Mapping[str, Sequence[socket.socket]] | None = None,
    ) -> None:
        """Bind and serve. ``inherited``: sockets handed over already listening (systemd
        socket activation) by kind, ``smtp``, ``submission`` or ``implicit_tls``; a kind
        given there is served on those instead of its addresses."""
        given = inherited or {}
        kinds = (
            ("smtp", addresses, self.bound, False, False),
            ("submission", submission, self.bound_submission, False, True),
            ("implicit_tls", implicit_tls, self.bound_tls, True, False),
        )
        for kind, kind_addresses, bound, implicit, is_submission in kinds:
            # The label (log, metrics) is the configured address, or the inherited socket's.
            labelled: list[tuple[socket.socket, str | None]] = [
                (sock, None) for sock in given.get(kind, ())
            ]
            if not labelled:
                labelled = [(bind(a), str(a)) for a in kind_addresses]
            tls = None
            if implicit and labelled:
                if self.ctx.tls is None:
                    raise RuntimeError("implicit TLS listeners need a certificate (ctx.tls)")
                # The context given here is only the first: its SNI callback moves every
                # handshake onto the current one, so SIGHUP reaches these listeners too.
                tls = self.ctx.tls.context_for(submission=True)  # RFC 8314: submission too
            for sock, label in labelled:
                await self._listen(sock, tls, bound, label, submission=is_submission)

    async def _listen(
        self,
        sock: socket.socket,
        context: ssl.SSLContext | None,
        bound: list[tuple[str, int]],
        label: str | None,
        *,
        submission: bool = False,
    ) -> None:
        name = sock.getsockname()
        host, port = str(name[0]), int(name[1])
        label = label or _label(host, port)
        implicit = context is not None
        proxies = self.ctx.settings.server.proxy_protocol_from
        bound.append((host, port))
        if proxies:

            def proxied(proxy: tuple[ProxyHeader, str] | None) -> Session:
                return Session(
                    self.ctx,
                    self.sessions,
                    label,
                    implicit_tls=implicit,
                    submission=submission,
                    proxy=proxy,
                )

            listener = ProxiedListener(
                sock,
                proxied,
                networks=tuple(ipaddress.ip_network(n, strict=False) for n in proxies),
                log=self.ctx.log,
                label=label,
                tls=context,
                tls_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            listener.start()
            self._proxied.append(listener)
            return
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Session(
                self.ctx, self.sessions, label, implicit_tls=implicit, submission=submission
            ),
            sock=sock,
            backlog=BACKLOG,
            ssl=context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None,
        )
        self._servers.append(server)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            for listening in server.sockets:
                listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def stop(self, *, grace: float, reason: str) -> int:
        """Stop listening; let messages in transfer finish within ``grace``; 421 the rest.

        Returns how many sessions had to be cut off when the grace period ended.
        """
        sessions = self.sessions
        sessions.stopping = True
        self.ctx.log.emit(ServerStopping(reason=reason, sessions=len(sessions)))
        for server in self._servers:
            server.close()
        for listener in self._proxied:
            listener.close()
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


def bind(address: ListenAddress) -> socket.socket:
    """A listening TCP socket on ``address`` (SO_REUSEADDR; an IPv6 one is IPv6 only)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        return socket.create_server(
            (address.host, address.port), family=family, backlog=BACKLOG, reuse_port=False
        )
    except OSError as error:
        raise OSError(error.errno, f"cannot listen on {address}: {error.strerror}") from None


def _label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
