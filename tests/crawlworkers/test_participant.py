"""The Participant's own rules over a small fake SharedFrontier, with a fake clock: no database.

Covers: a store that keeps failing is tried again with a growing wait (the
fake sleep advances the fake clock) until the patience is spent, then the
StoreError goes up; a write that fails keeps its outcomes, attempts and
robots.txt records for the next try, in order; stored and fenced outcomes
are forgotten, freeing their host's room; hosts are topped up only once a
round of their slots is free; a host with nothing left to lease is given
back with its next allowed start; `close` writes what is queued and gives
back every lease still held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs
import pytest

from mandrill.domain.crawl import frontier, shared
from mandrill.domain.crawl.models import CrawlSpec, EdgeList, PageResult
from mandrill.domain.crawl.politeness import Politeness
from mandrill.domain.errors import StoreError

T0 = 1_800_000_000.0


@attrs.define
class Clock:
    now: float = T0
    slept: list[float] = attrs.Factory(list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@attrs.define
class FakeFrontier:
    """Hands out what it is told to; records what it is asked; fails while `failing` > 0."""

    grants: list[shared.HostGrant] = attrs.Factory(list)
    pending: dict[str, list[shared.Lease]] = attrs.Factory(dict)
    fence: set[str] = attrs.Factory(set)
    """URLs whose outcome is dropped as taken over."""
    failing: int = 0
    leased: list[dict[str, int]] = attrs.Factory(list)
    written: list[tuple[list[str], list[tuple[str, int]], list[str]]] = attrs.Factory(list)
    released: list[tuple[list[str], dict[str, float]]] = attrs.Factory(list)
    everything: list[bool] = attrs.Factory(list)

    def _maybe_fail(self) -> None:
        if self.failing:
            self.failing -= 1
            raise StoreError("the store is away")

    async def seed(
        self, seeds: Sequence[str], *, invalid: Sequence[PageResult], max_pages: int
    ) -> int:
        self._maybe_fail()
        return len(seeds)

    async def claim_hosts(
        self, holder: str, *, limit: int, now: float, until: float
    ) -> list[shared.HostGrant]:
        taken, self.grants = self.grants[:limit], self.grants[limit:]
        return taken

    async def lease(
        self, holder: str, *, rooms: Mapping[str, int], now: float, until: float
    ) -> list[shared.Lease]:
        self.leased.append(dict(rooms))
        out: list[shared.Lease] = []
        for host, room in rooms.items():
            queue = self.pending.get(host, [])
            out += queue[:room]
            self.pending[host] = queue[room:]
        return out

    async def renew(
        self, holder: str, *, urls: Iterable[str], hosts: Mapping[str, float], until: float
    ) -> shared.Renewed:
        return shared.Renewed(urls=frozenset(urls), hosts=frozenset(hosts))

    async def complete(
        self,
        holder: str,
        *,
        completions: Sequence[shared.Completion],
        attempts: Sequence[tuple[str, int]],
        robots: Sequence[frontier.RobotsRecord],
        max_pages: int,
    ) -> shared.Written:
        self._maybe_fail()
        urls = [c.result.url for c in completions]
        self.written.append((urls, list(attempts), [r.origin for r in robots]))
        return shared.Written(
            stored=frozenset(u for u in urls if u not in self.fence),
            fenced=frozenset(u for u in urls if u in self.fence),
        )

    async def release(
        self,
        holder: str,
        *,
        urls: Iterable[str],
        hosts: Mapping[str, float],
        everything: bool = False,
    ) -> None:
        self.released.append((sorted(urls), dict(hosts)))
        self.everything.append(everything)

    async def robots(self, host: str) -> list[frontier.RobotsRecord]:
        return []

    async def finished(self) -> bool:
        return not any(self.pending.values())

    async def knows(self, url: str) -> bool:
        return False


def lease(n: int, host: str = "a.test") -> shared.Lease:
    return shared.Lease(url=f"http://{host}/{n}", depth=0, attempt=1, host=host)


def done(url: str) -> shared.Completion:
    result = PageResult(url=url, depth=0, final_url=url, status=200)
    return shared.Completion(result=result, edges=EdgeList(url, ()))


def participant(store: FakeFrontier, clock: Clock) -> shared.Participant:
    spec = CrawlSpec.create(seeds=("http://a.test/",), concurrency=2, per_host_concurrency=2)
    timing = shared.Timing(lease=10, heartbeat=3, margin=4, poll=0.5, patience=6)
    me = shared.Participant(
        store=store, spec=spec, holder="me", timing=timing, clock=clock, sleep=clock.sleep
    )
    me._politeness = Politeness(spec=spec, fetcher=None)  # type: ignore[arg-type]
    return me


async def test_a_failing_store_is_tried_with_a_growing_wait_until_the_patience_is_spent() -> None:
    clock = Clock()
    store = FakeFrontier(failing=100)
    with pytest.raises(StoreError):
        await participant(store, clock).seed()
    assert clock.slept == [0.5, 1.0, 2.0, 4.0]
    assert clock.now - T0 == 7.5  # gave up at the first failure after 6 s


async def test_a_store_back_within_the_patience_is_used() -> None:
    clock = Clock()
    assert await participant(FakeFrontier(failing=2), clock).seed() == 1
    assert clock.slept == [0.5, 1.0]


async def test_a_failed_write_keeps_everything_for_the_next_in_order() -> None:
    clock = Clock()
    store = FakeFrontier(failing=1)
    me = participant(store, clock)
    me.retrying("http://a.test/1", attempt=2)
    me.robots(frontier.RobotsRecord(origin="http://a.test"))
    me.complete(done("http://a.test/1"))
    with pytest.raises(StoreError):
        await me._write()
    me.complete(done("http://a.test/2"))
    await me._write()
    assert store.written == [
        (["http://a.test/1", "http://a.test/2"], [("http://a.test/1", 2)], ["http://a.test"])
    ]


async def test_outcomes_written_free_their_hosts_room_a_round_at_a_time() -> None:
    clock = Clock()
    store = FakeFrontier(
        grants=[shared.HostGrant(host="a.test", not_before=0.0)],
        pending={"a.test": [lease(n) for n in range(10)]},
        fence={"http://a.test/1"},
    )
    me = participant(store, clock)
    first = await me._lease_more()
    assert [x.url for x in first] == [f"http://a.test/{n}" for n in range(4)]  # 2 x 2 slots
    me.complete(done("http://a.test/0"))
    await me._write()
    assert await me._lease_more() == []  # one slot free: not a round yet
    me.complete(done("http://a.test/1"))  # fenced: forgotten as well
    await me._write()
    assert me.stored == 1
    assert me.fenced == 1
    again = await me._lease_more()
    assert [x.url for x in again] == ["http://a.test/4", "http://a.test/5"]
    assert store.leased == [{"a.test": 4}, {"a.test": 2}]


async def test_a_host_with_nothing_left_is_given_back_with_its_next_start() -> None:
    clock = Clock()
    store = FakeFrontier(grants=[shared.HostGrant(host="a.test", not_before=T0 + 3)])
    me = participant(store, clock)
    assert await me._lease_more() == []
    assert me.hosts == {}
    ((urls, hosts),) = store.released
    assert store.everything == [False]  # only that host: the worker goes on
    assert urls == []
    assert hosts["a.test"] == pytest.approx(T0 + 3, abs=0.1)  # the delay handed on again


async def test_close_writes_what_is_queued_and_gives_back_every_lease() -> None:
    clock = Clock()
    store = FakeFrontier(
        grants=[shared.HostGrant(host="a.test", not_before=0.0)],
        pending={"a.test": [lease(n) for n in range(3)]},
    )
    me = participant(store, clock)
    await me._lease_more()
    me.complete(done("http://a.test/0"))
    await me.close()
    assert store.written[0][0] == ["http://a.test/0"]
    assert store.released[-1][0] == ["http://a.test/1", "http://a.test/2"]
    assert set(store.released[-1][1]) == {"a.test"}
    assert store.everything == [True], "a stopping worker gives back what it holds unseen too"
    assert me.urls == {}
    assert me.hosts == {}
