"""The crawl slot queue (mandrill.domain.crawl.slots), without a cluster.

Covers: the limit, oldest-first hand-over (by creationTimestamp, then
namespace and name, not by arrival, also among crawls woken together), a
waiter cancelled before its turn (takes nothing, costs nobody a turn), one
cancelled as its slot is handed over (passes it on), release on an exception
and on cancellation, limit 0 (no limit), on_queued and the (running, queued)
observations.
"""

from __future__ import annotations

import asyncio

import pytest

from mandrill.domain.crawl import slots
from mandrill.domain.crawl.slots import CrawlSlots, Order, Usage


def _order(created: str, name: str, namespace: str = "default") -> Order:
    return (created, namespace, name)


class _Crawl:
    """A crawl holding its slot until `done` is set; `entered` once it has the slot."""

    def __init__(self, queue: CrawlSlots, order: Order, log: list[str]) -> None:
        self.entered = asyncio.Event()
        self.done = asyncio.Event()
        self.queued: list[Usage] = []
        self.task = asyncio.create_task(self._run(queue, order, log))

    async def _on_queued(self, usage: Usage) -> None:
        self.queued.append(usage)

    async def _run(self, queue: CrawlSlots, order: Order, log: list[str]) -> None:
        async with queue.held(order, on_queued=self._on_queued):
            log.append(order[2])
            self.entered.set()
            await self.done.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_limit_holds_and_the_oldest_waiter_goes_first() -> None:
    seen: list[tuple[int, int]] = []
    queue = CrawlSlots(limit=2, observe=lambda r, q: seen.append((r, q)))
    log: list[str] = []
    first = _Crawl(queue, _order("2026-01-01T00:00:05Z", "a"), log)
    second = _Crawl(queue, _order("2026-01-01T00:00:06Z", "b"), log)
    await _settle()
    # Arrive newest first: the order they are served in must not be arrival order.
    newest = _Crawl(queue, _order("2026-01-01T00:00:09Z", "z"), log)
    await _settle()
    older = _Crawl(queue, _order("2026-01-01T00:00:07Z", "y"), log)
    same_time = _Crawl(queue, _order("2026-01-01T00:00:07Z", "x"), log)
    await _settle()
    assert log == ["a", "b"]
    assert (queue.in_use, queue.queued) == (2, 3)
    assert seen[-1] == (2, 3)
    assert newest.queued == [Usage(in_use=2, limit=2)]
    assert newest.queued[0].message == (
        "waiting for a crawl slot: 2 of 2 in use (MANDRILL_MAX_CRAWLS)"
    )
    assert first.queued == []
    assert second.queued == []

    first.done.set()
    await _settle()
    assert log == ["a", "b", "x"]  # same creationTimestamp: by name
    assert (queue.in_use, queue.queued) == (2, 2)
    second.done.set()
    same_time.done.set()
    await _settle()
    assert log == ["a", "b", "x", "y", "z"]
    older.done.set()
    newest.done.set()
    await asyncio.gather(first.task, second.task, newest.task, older.task, same_time.task)
    assert (queue.in_use, queue.queued) == (0, 0)
    assert seen[-1] == (0, 0)


async def test_crawls_woken_together_are_served_oldest_first() -> None:
    queue = CrawlSlots(limit=1)
    log: list[str] = []
    leading = asyncio.Event()

    async def daemon(created: str, name: str) -> None:
        await leading.wait()  # as a standby's daemons wait to lead
        async with queue.held(_order(created, name)):
            log.append(name)

    names = [("t9", "newest"), ("t5", "middle"), ("t1", "oldest")]
    tasks = [asyncio.create_task(daemon(c, n)) for c, n in names]
    await _settle()
    leading.set()
    await asyncio.gather(*tasks)
    assert log == ["oldest", "middle", "newest"]


async def test_a_waiter_cancelled_before_its_turn_takes_nothing_and_costs_no_turn() -> None:
    queue = CrawlSlots(limit=1)
    log: list[str] = []
    holder = _Crawl(queue, _order("t1", "a"), log)
    await _settle()
    cancelled = _Crawl(queue, _order("t2", "b"), log)
    later = _Crawl(queue, _order("t3", "c"), log)
    await _settle()
    assert queue.queued == 2
    cancelled.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled.task
    assert (queue.in_use, queue.queued) == (1, 1)
    holder.done.set()
    await asyncio.wait_for(later.entered.wait(), 1)
    assert log == ["a", "c"]
    assert queue.in_use == 1
    later.done.set()
    await asyncio.gather(holder.task, later.task)
    assert (queue.in_use, queue.queued) == (0, 0)


async def test_a_waiter_cancelled_as_its_slot_is_handed_over_passes_it_on() -> None:
    queue = CrawlSlots(limit=1)
    log: list[str] = []
    async with queue.held(_order("t1", "a")):
        unlucky = _Crawl(queue, _order("t2", "b"), log)
        next_in_line = _Crawl(queue, _order("t3", "c"), log)
        await _settle()
        assert queue.queued == 2
    # Leaving handed the slot to b, which has not run since; it is cancelled before it does.
    assert (queue.in_use, queue.queued) == (1, 1)
    unlucky.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await unlucky.task
    await asyncio.wait_for(next_in_line.entered.wait(), 1)
    assert log == ["c"]
    assert (queue.in_use, queue.queued) == (1, 0)
    next_in_line.done.set()
    await next_in_line.task
    assert queue.in_use == 0


async def test_an_exception_inside_releases_the_slot() -> None:
    queue = CrawlSlots(limit=1)
    inside: list[int] = []

    async def crawl() -> None:
        async with queue.held(_order("t1", "a")):
            inside.append(queue.in_use)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await crawl()
    assert inside == [1]
    assert queue.in_use == 0
    async with queue.held(_order("t2", "b")):
        assert queue.in_use == 1


async def test_a_cancelled_crawl_releases_its_slot_to_the_next() -> None:
    queue = CrawlSlots(limit=1)
    log: list[str] = []
    holder = _Crawl(queue, _order("t1", "a"), log)
    waiter = _Crawl(queue, _order("t2", "b"), log)
    await _settle()
    holder.task.cancel()
    await asyncio.wait_for(waiter.entered.wait(), 1)
    assert log == ["a", "b"]
    waiter.done.set()
    await waiter.task
    assert holder.task.cancelled()
    assert (queue.in_use, queue.queued) == (0, 0)


async def test_an_on_queued_failure_leaves_the_queue_as_it_was() -> None:
    queue = CrawlSlots(limit=1)

    async def refuse(usage: Usage) -> None:
        raise ConnectionError("status not written")

    async with queue.held(_order("t1", "a")):
        with pytest.raises(ConnectionError):
            await queue.held(_order("t2", "b"), on_queued=refuse).__aenter__()
        assert (queue.in_use, queue.queued) == (1, 0)
    assert queue.in_use == 0


async def test_limit_zero_means_no_limit() -> None:
    seen: list[tuple[int, int]] = []
    queue = CrawlSlots(limit=0, observe=lambda r, q: seen.append((r, q)))
    log: list[str] = []
    crawls = [_Crawl(queue, _order(f"t{i}", f"j{i:02}"), log) for i in range(50)]
    await _settle()
    assert len(log) == 50
    assert (queue.in_use, queue.queued) == (50, 0)
    assert all(c.queued == [] for c in crawls)
    for c in crawls:
        c.done.set()
    await asyncio.gather(*(c.task for c in crawls))
    assert seen[-1] == (0, 0)


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        slots.CrawlSlots(limit=-1)
