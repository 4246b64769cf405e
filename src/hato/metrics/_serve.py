"""Serving the registry: an ASGI app for the HTTP service, and a listener of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.exposition import choose_encoder

__all__ = ["MetricsListener", "metrics_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def metrics_app(registry: CollectorRegistry) -> AsgiApp:
    """An ASGI app answering every GET with the registry in the text format (or
    OpenMetrics, when the scraper asks for it), for the HTTP service to mount at /metrics.

    Unlike ``prometheus_client.make_asgi_app`` it renders in a thread: a scrape reads the
    queue's state from SQLite, and the event loop serves SMTP meanwhile.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await _respond(send, 405, b"text/plain; charset=utf-8", b"GET only\n")
            return
        accept = ",".join(
            value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"accept"
        )
        encoder, content_type = choose_encoder(accept)
        body = await asyncio.to_thread(encoder, registry)
        if scope.get("method") == "HEAD":
            body = b""
        await _respond(send, 200, content_type.encode("latin-1"), body)

    return app


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class MetricsListener:
    """``[metrics] listen``: prometheus_client's HTTP server, one thread per socket, so a
    scrape (and the rendering) never runs on the event loop."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.bound: list[tuple[str, int]] = []
        self._servers: list[tuple[WSGIServer, threading.Thread]] = []

    def start(self, addresses: list[tuple[str, int]]) -> None:
        """Listen on each (host, port); OSError when one cannot be bound (the others close)."""
        try:
            for host, port in addresses:
                server, thread = start_http_server(port, addr=host, registry=self.registry)
                self._servers.append((server, thread))
                self.bound.append((host, int(server.server_address[1])))
        except OSError:
            self.stop()
            raise

    def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
