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


def _removed(n: int) -> MessageRemoved:
    return MessageRemoved(queue_id=f"Q{n}", delivered=1, failed=0)


def _parse(chunk: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in chunk.strip().splitlines())


def _resume(hub: EventHub, last_event_id: int, count: int) -> list[dict[str, str]]:
    """The first ``count`` messages a client reconnecting with ``last_event_id`` gets."""

    async def scenario() -> list[dict[str, str]]:
        hub.bind(asyncio.get_running_loop())
        stream = hub.stream(heartbeat=5, last_event_id=last_event_id)
        assert (await anext(stream)).startswith(":")
        chunks = [_parse(await anext(stream)) for _ in range(count)]
        await stream.aclose()
        return chunks

    return asyncio.run(scenario())


def test_every_event_has_an_id_and_a_reconnect_gets_what_it_missed() -> None:
    hub = EventHub(buffer=10)
    for index in range(5):  # no client listens: the recent buffer keeps them anyway
        hub.publish(float(index), _removed(index))
    first = _resume(hub, hub.first_number, 5)  # everything after the hub's first number
    ids = [int(chunk["id"]) for chunk in first]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [json.loads(c["data"])["queue_id"] for c in first] == [f"Q{n}" for n in range(5)]
    again = _resume(hub, ids[2], 2)  # the client had seen Q0..Q2
    assert [json.loads(c["data"])["queue_id"] for c in again] == ["Q3", "Q4"]
    assert [int(c["id"]) for c in again] == ids[3:]


def test_a_reconnect_beyond_the_buffer_is_told_how_much_is_gone() -> None:
    hub = EventHub(buffer=3)
    for index in range(10):
        hub.publish(float(index), _removed(index))
    chunks = _resume(hub, hub.first_number + 2, 4)  # had seen Q0 and Q1 (numbers +1, +2)
    assert chunks[0]["event"] == "missed"
    notice = json.loads(chunks[0]["data"])
    assert notice["missed"] == 5 and notice["replayed"] == 3  # Q2..Q6 are gone
    assert [json.loads(c["data"])["queue_id"] for c in chunks[1:]] == ["Q7", "Q8", "Q9"]


def test_an_id_from_before_a_restart_gets_the_whole_buffer_and_a_notice() -> None:
    hub = EventHub(buffer=5)
    for index in range(2):
        hub.publish(float(index), _removed(index))
    chunks = _resume(hub, hub.first_number - 1000, 3)
    assert chunks[0]["event"] == "missed"
    assert json.loads(chunks[0]["data"])["missed"] is None
    assert [json.loads(c["data"])["queue_id"] for c in chunks[1:]] == ["Q0", "Q1"]
