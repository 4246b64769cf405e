"""The HTTP service as a task of the server's own event loop: uvicorn over our sockets.

The sockets are bound here, before uvicorn runs, so a port in use stops the start with
an OSError like the SMTP listeners, and port 0 is known at once. uvicorn's own signal
handling is left out: the server's handlers stop everything, this included.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Generator, Sequence

import uvicorn
from starlette.types import ASGIApp

from hato.config import ListenAddress

__all__ = ["WebService", "beyond_loopback"]

START_TIMEOUT = 10.0
# Streams (server-sent events) end when the hub closes; anything else gets this long.
SHUTDOWN_GRACE = 2.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the Hato server owns SIGTERM and SIGINT


def beyond_loopback(addresses: Sequence[ListenAddress]) -> list[str]:
    """The addresses that other machines can reach."""
    return [str(a) for a in addresses if not ipaddress.ip_address(a.host).is_loopback]


def _bind(address: ListenAddress) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"web.listen {address}: {error.strerror}") from None
    return sock


class WebService:
    def __init__(self, app: ASGIApp, listen: Sequence[ListenAddress]) -> None:
        self.app = app
        self.listen = tuple(listen)
        self.bound: list[tuple[str, int]] = []
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        sockets = []
        try:
            for address in self.listen:
                sockets.append(_bind(address))
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        self.bound = [sock.getsockname()[:2] for sock in sockets]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            http="h11",
            server_header=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
        )
        config.load()
        config.ssl = tls  # the SMTP certificate's context, reloaded in place on SIGHUP
        # uvicorn's messages would repeat what the event log says, or leak request details.
        logging.getLogger("uvicorn").addHandler(logging.NullHandler())
        logging.getLogger("uvicorn").propagate = False
        self._server = _Server(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=sockets))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError("the HTTP service stopped while starting")
            if loop.time() > deadline:
                raise OSError("the HTTP service did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE + 3):
                await asyncio.shield(self._task)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
        self._server = None
