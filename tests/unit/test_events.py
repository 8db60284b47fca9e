"""The Event poster without a cluster: the Event it writes (involved object, source,
message cut to the API's limit), Events waiting while requests are in flight but
never longer than max_delay, and a full queue dropping instead of growing."""

from __future__ import annotations

import asyncio
from typing import Any

from mandrill.adapters.events import EventPoster

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"namespace": "shop", "name": "web-1", "uid": "u-1"},
}


async def test_the_event_names_its_object_and_comes_from_mandrill() -> None:
    written: list[tuple[str, dict[str, Any]]] = []

    async def create(namespace: str, event: dict[str, Any]) -> None:
        written.append((namespace, event))

    poster = EventPoster(create=create)
    poster.start()
    poster.post(POD, "Normal", "Restarted", "x" * 5000)
    await poster.close()
    ((namespace, event),) = written
    assert namespace == "shop"
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-1",
        "namespace": "shop",
        "uid": "u-1",
    }
    assert (event["type"], event["reason"]) == ("Normal", "Restarted")
    assert len(event["message"]) == 1000
    assert event["source"] == {"component": "mandrill"}
    assert event["metadata"]["generateName"] == "web-1."


async def test_events_wait_while_busy_but_not_past_max_delay() -> None:
    written: list[str] = []

    async def create(namespace: str, event: dict[str, Any]) -> None:
        written.append(event["reason"])

    busy = True
    poster = EventPoster(create=create, busy=lambda: busy, max_delay=0.3)
    poster.start()
    poster.post(POD, "Normal", "First", "")
    await asyncio.sleep(0.1)
    assert written == []  # requests in flight: the Event waits
    busy = False
    await asyncio.sleep(0.1)
    assert written == ["First"]
    busy = True
    poster.post(POD, "Normal", "Second", "")
    await asyncio.sleep(0.5)
    assert written == ["First", "Second"]  # busy for good: posted after max_delay anyway
    await poster.close()


async def test_a_full_queue_drops_the_newest() -> None:
    poster = EventPoster(create=lambda ns, e: asyncio.sleep(0), capacity=2)
    for reason in ("a", "b", "c"):
        poster.post(POD, "Normal", reason, "")
    assert poster.queued == 2
