"""EventHub: a slow client loses its own oldest events, and nothing waits for it."""

from __future__ import annotations

import asyncio
import json

from hato.events import MessageRemoved
from hato.web import EventHub


def test_a_slow_client_keeps_only_its_buffer_and_is_told_what_it_lost() -> None:
    async def scenario() -> list[str]:
        hub = EventHub(buffer=3)
        hub.bind(asyncio.get_running_loop())
        stream = hub.stream(heartbeat=5)
        assert (await anext(stream)).startswith(":")
        for index in range(10):  # nobody reads meanwhile: the publisher never blocks
            hub.publish(float(index), MessageRemoved(queue_id=f"Q{index}", delivered=1, failed=0))
        await asyncio.sleep(0)  # the loop delivers what publish handed over
        chunks = [await anext(stream) for _ in range(4)]
        hub.close()
        await stream.aclose()
        return chunks

    chunks = asyncio.run(scenario())
    assert chunks[0].startswith("event: dropped\n")
    assert json.loads(chunks[0].split("data: ")[1]) == {"dropped": 7}
    ids = [json.loads(c.split("data: ")[1])["queue_id"] for c in chunks[1:]]
    assert ids == ["Q7", "Q8", "Q9"]


def test_without_clients_publishing_costs_nothing() -> None:
    hub = EventHub(buffer=3)
    hub.publish(
        0.0, MessageRemoved(queue_id="Q", delivered=1, failed=0)
    )  # no loop, no client: no error
