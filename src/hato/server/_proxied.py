"""Listeners behind a proxy: the accept loop that reads each listed proxy's PROXY header.

The header is read from the socket itself, peeking and then consuming exactly its bytes,
before any transport exists; so the bytes after it (SMTP, or the TLS handshake of an
implicit TLS listener) reach the session's transport untouched. A connection from an
address that is no listed proxy gets its session at once (the session refuses a PROXY
header it sends); a listed proxy that sends no valid header within
``PROXY_HEADER_TIMEOUT`` is closed and logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Callable

from ..events import EventLog, InternalError, ProxyRefused
from ._proxy import ProxyHeader, ProxyHeaderError, ProxyHeaderReader

__all__ = ["PROXY_HEADER_TIMEOUT", "ProxiedListener"]

# A proxy writes its header as it connects; one that has not within this is broken.
PROXY_HEADER_TIMEOUT = 10.0
# Out of file descriptors: wait this long before accepting again instead of spinning.
ACCEPT_RETRY = 0.1

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SessionFactory = Callable[[tuple[ProxyHeader, str] | None], asyncio.Protocol]


class ProxiedListener:
    """One listening socket whose peers may be proxies (``networks``)."""

    def __init__(
        self,
        sock: socket.socket,
        factory: SessionFactory,
        *,
        networks: tuple[Network, ...],
        log: EventLog,
        label: str,
        tls: ssl.SSLContext | None = None,
        tls_timeout: float | None = None,
    ) -> None:
        self.sock = sock
        self._factory = factory
        self._networks = networks
        self._log = log
        self._label = label
        self._tls = tls
        self._tls_timeout = tls_timeout
        self._accepting: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        self._accepting = asyncio.ensure_future(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self.sock)
            except OSError as error:  # EMFILE and the like: the listener must live on
                self._log.emit(InternalError(where=f"accept on {self._label}", error=repr(error)))
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            task = asyncio.ensure_future(self._connection(conn, (str(peer[0]), int(peer[1]))))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _listed(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    async def _connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.setblocking(False)
        proxy: tuple[ProxyHeader, str] | None = None
        if self._listed(peer[0]):
            try:
                async with asyncio.timeout(PROXY_HEADER_TIMEOUT):
                    header = await read_proxy_header(conn)
            except (ProxyHeaderError, TimeoutError, OSError) as error:
                reason = str(error) or f"no PROXY header within {PROXY_HEADER_TIMEOUT:.0f} s"
                self._refused(conn, peer, reason)
                return
            proxy = (header, _address(*peer))
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: self._factory(proxy),
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=self._tls_timeout if self._tls is not None else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            conn.close()  # a failed implicit TLS handshake, as a plain listener drops it

    def _refused(self, conn: socket.socket, peer: tuple[str, int], reason: str) -> None:
        conn.close()
        self._log.emit(
            ProxyRefused(
                client_ip=peer[0], client_port=peer[1], listener=self._label, reason=reason
            )
        )

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for task in list(self._pending):
            task.cancel()
        self.sock.close()


async def read_proxy_header(conn: socket.socket) -> ProxyHeader:
    """Peek, let the reader take what is header, consume exactly that; until it is whole."""
    reader = ProxyHeaderReader()
    while reader.header is None:
        await _readable(conn)
        try:
            peeked = conn.recv(reader.wanted, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        if not peeked:
            raise ProxyHeaderError("connection closed before the PROXY header ended")
        conn.recv(reader.receive(peeked))
    return reader.header


async def _readable(conn: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _address(host: str, port: int) -> str:
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
