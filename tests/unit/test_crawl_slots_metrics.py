"""The crawl slot queue on the metrics adapter: mandrill_crawls_queued follows the
queue as a job starts waiting and as it leaves it (given its slot, or cancelled),
read from the exposition text as Prometheus reads it."""

from __future__ import annotations

import asyncio

import prometheus_client as prom

from mandrill.adapters import metrics
from mandrill.domain.crawl.slots import CrawlSlots


def sample(name: str) -> float:
    for line in prom.generate_latest().decode().splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    raise AssertionError(f"{name} not exposed")


async def test_the_queued_gauge_follows_the_queue() -> None:
    queue = CrawlSlots(limit=1, observe=metrics.crawl_slots_changed)
    got_it = asyncio.Event()

    async def waiter(name: str) -> None:
        async with queue.held(("t", "ns", name)):
            got_it.set()

    async with queue.held(("t0", "ns", "holder")):
        first = asyncio.create_task(waiter("a"))
        second = asyncio.create_task(waiter("b"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert sample("mandrill_crawls_queued") == 2.0
        second.cancel()
        await asyncio.wait([second])
        assert sample("mandrill_crawls_queued") == 1.0
    await asyncio.wait_for(got_it.wait(), 1)
    await first
    assert sample("mandrill_crawls_queued") == 0.0
