"""The live event stream for ``/api/v1/events``: one subscription to the event log, fanned
out to each connected client through a bounded buffer of its own, with the most recent
events kept for clients that reconnect.

The event log calls :meth:`EventHub.publish` on whatever thread emits (the loop, the
spool's committer): it numbers the event and keeps it in the recent buffer (a lock and a
deque append), and, only while a client listens, hands it to the loop. A client that
reads slower than events come loses the oldest of its own buffer (and is told how many),
so no reader can hold up SMTP or the other readers.

Every event goes out with an ``id:``; a client that reconnects with ``Last-Event-ID``
(as ``EventSource`` does by itself) first gets what it missed from the recent buffer, and
a ``missed`` event when the buffer no longer reaches back that far (or the server has
restarted since: numbers start from the clock in microseconds, so they grow across
restarts, and an older run's number is never taken for one of this run's).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import threading
import time
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


def _message(number: int, record: dict[str, Any]) -> str:
    data = json.dumps(record, ensure_ascii=False, default=str)
    return f"id: {number}\nevent: {record['event']}\ndata: {data}\n\n"


class _Client:
    def __init__(self, size: int) -> None:
        self.buffer: collections.deque[tuple[int, float, OpsEvent]] = collections.deque(maxlen=size)
        self.dropped = 0
        self.ready = asyncio.Event()
        self.last_sent = 0


class EventHub:
    def __init__(self, *, buffer: int, recent: int | None = None) -> None:
        self._size = buffer
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._numbers = itertools.count(time.time_ns() // 1000)
        self.first_number = next(self._numbers)
        self._recent: collections.deque[tuple[int, float, OpsEvent]] = collections.deque(
            maxlen=recent if recent is not None else buffer
        )

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, ts: float, event: OpsEvent) -> None:
        """The event log's listener: quick, never raises."""
        with self._lock:  # numbered and kept in one order, whichever thread emits
            item = (next(self._numbers), ts, event)
            self._recent.append(item)
            loop = self._loop
            if not self._clients or loop is None or loop.is_closed():
                return
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(self._deliver, item)

    def _deliver(self, item: tuple[int, float, OpsEvent]) -> None:
        for client in self._clients:
            if len(client.buffer) == client.buffer.maxlen:
                client.dropped += 1
            client.buffer.append(item)
            client.ready.set()

    def close(self) -> None:
        """End every stream (the server stops)."""
        self._closed = True
        for client in self._clients:
            client.ready.set()

    def _missed(self, last_id: int) -> tuple[list[tuple[int, float, OpsEvent]], str | None]:
        """What came after ``last_id`` that the recent buffer still holds, and the
        ``missed`` event's text when it does not hold everything."""
        with self._lock:
            recent = list(self._recent)
        after = [item for item in recent if item[0] > last_id]
        oldest = recent[0][0] if recent else None
        if last_id >= self.first_number and (oldest is None or oldest <= last_id + 1):
            return after, None
        if last_id >= self.first_number:
            missed: int | None = (oldest or 0) - last_id - 1
            why = f"the {self._recent.maxlen} most recent events are kept"
        else:
            missed, why = None, "the server restarted since, or the id is not one of its"
        data = {"last_event_id": last_id, "missed": missed, "replayed": len(after), "why": why}
        return after, f"event: missed\ndata: {json.dumps(data)}\n\n"

    async def stream(
        self, *, heartbeat: float = 15.0, last_event_id: int | None = None
    ) -> AsyncIterator[str]:
        """Server-sent events, as text, until the hub closes or the client goes away;
        first what came after ``last_event_id`` (a reconnecting client's)."""
        client = _Client(self._size)
        self._clients.add(client)
        try:
            yield ": hato events\n\n"
            if last_event_id is not None:
                replay, notice = self._missed(last_event_id)
                if notice is not None:
                    yield notice
                for number, ts, event in replay:
                    client.last_sent = number
                    yield _message(number, event_record(ts, event))
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
                    number, ts, event = client.buffer.popleft()
                    if number > client.last_sent:  # not sent already from the replay
                        client.last_sent = number
                        yield _message(number, event_record(ts, event))
        finally:
            self._clients.discard(client)
