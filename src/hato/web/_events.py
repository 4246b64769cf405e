"""The live event stream for ``/api/v1/events``: one subscription to the event log, fanned
out to each connected client through a bounded buffer of its own.

The event log calls :meth:`EventHub.publish` on whatever thread emits (the loop, the
spool's committer): it does nothing at all while no client listens, and otherwise hands
the event to the loop. A client that reads slower than events come loses the oldest of
its own buffer (and is told how many), so no reader can hold up SMTP or the other readers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from hato.events import OpsEvent

__all__ = ["EventHub", "event_record"]

_JSON_FIELDS: dict[type, tuple[str, ...]] = {}


def event_record(ts: float, event: OpsEvent) -> dict[str, Any]:
    """The event as the JSON-lines log writes it: ``ts``, ``event`` and its fields."""
    kind = type(event)
    names = _JSON_FIELDS.get(kind)
    if names is None:
        names = _JSON_FIELDS[kind] = tuple(f.name for f in dataclasses.fields(event))
    return {"ts": round(ts, 6), "event": event.name, **{n: getattr(event, n) for n in names}}


class _Client:
    def __init__(self, size: int) -> None:
        self.buffer: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.dropped = 0
        self.ready = asyncio.Event()


class EventHub:
    def __init__(self, *, buffer: int) -> None:
        self._size = buffer
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, ts: float, event: OpsEvent) -> None:
        """The event log's listener: quick, never raises."""
        loop = self._loop
        if not self._clients or loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(self._deliver, ts, event)

    def _deliver(self, ts: float, event: OpsEvent) -> None:
        if not self._clients:
            return
        record = event_record(ts, event)
        for client in self._clients:
            if len(client.buffer) == client.buffer.maxlen:
                client.dropped += 1
            client.buffer.append(record)
            client.ready.set()

    def close(self) -> None:
        """End every stream (the server stops)."""
        self._closed = True
        for client in self._clients:
            client.ready.set()

    async def stream(self, *, heartbeat: float = 15.0) -> AsyncIterator[str]:
        """Server-sent events, as text, until the hub closes or the client goes away."""
        client = _Client(self._size)
        self._clients.add(client)
        try:
            yield ": hato events\n\n"
            while not self._closed:
                try:
                    async with asyncio.timeout(heartbeat):  # not wait_for: see queue._manager
                        await client.ready.wait()
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                client.ready.clear()
                if client.dropped:
                    lost, client.dropped = client.dropped, 0
                    yield f"event: dropped\ndata: {json.dumps({'dropped': lost})}\n\n"
                while client.buffer:
                    record = client.buffer.popleft()
                    data = json.dumps(record, ensure_ascii=False, default=str)
                    yield f"event: {record['event']}\ndata: {data}\n\n"
        finally:
            self._clients.discard(client)
