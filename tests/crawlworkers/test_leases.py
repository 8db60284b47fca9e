"""Leases, fencing and the budget of the shared frontier, on real PostgreSQL, with a fake clock.

Covers: seeding is idempotent across workers; a host has one holder until
its lease ends, then anyone may claim it; URLs of a held host are leased in
admission order, once; a lease that ran out is taken over, and the old
holder's outcome is then fenced off (nothing stored twice) while the new
holder's is stored; a heartbeat keeps a lease from being taken; a released
host hands its next allowed start (Crawl-delay) on; releasing everything frees
leases the holder did not know it had (a claim cut off by its stop); concurrent outcomes
with overlapping links admit each URL once and exactly maxPages URLs in
all; the Participant stops fetching a URL whose lease ends within its
margin, and gives up a host whose renewal was refused; a host's next start
is handed to Politeness and read back from it; the server ends a worker's
session that sits idle in a transaction (a paused worker holding locks).

Times are explicit (`now`, `until`) or come from a FakeClock: nothing
sleeps on a lease.
"""

from __future__ import annotations

import asyncio

import attrs

from mandrill.adapters import shared_frontier
from mandrill.domain.crawl import shared
from mandrill.domain.crawl.models import CrawlSpec, EdgeList, ErrorKind, PageResult
from mandrill.domain.crawl.politeness import Politeness
from mandrill.store_url import StoreUrl
from tests.crawlworkers.conftest import JOB_UID, Opener, Query

T0 = 1_800_000_000.0
SITE = "http://a.test"
OTHER = "http://b.test"


@attrs.define
class FakeClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


def done(url: str, *found: str, depth: int = 0) -> shared.Completion:
    result = PageResult(url=url, depth=depth, final_url=url, status=200, size=5, links=len(found))
    return shared.Completion(result=result, edges=EdgeList(url, found), found=found)


async def seeded(open_frontier: Opener, *seeds: str, max_pages: int = 100) -> int:
    one = await open_frontier()
    return await one.seed(list(seeds), invalid=[], max_pages=max_pages)


async def test_seeding_twice_admits_once_and_keeps_invalid_seeds(
    frontiers: Opener, query: Query
) -> None:
    bad = PageResult(url="ftp://x", depth=0, final_url="ftp://x", error=ErrorKind.INVALID_URL)
    first, second = await frontiers(), await frontiers()
    assert await first.seed([f"{SITE}/", f"{OTHER}/"], invalid=[bad], max_pages=100) == 2
    assert await second.seed([f"{SITE}/", f"{OTHER}/"], invalid=[bad], max_pages=100) == 0
    rows = await query("SELECT url, ordinal FROM crawl_frontier ORDER BY ordinal")
    assert rows == [(f"{SITE}/", 1), (f"{OTHER}/", 2)]
    assert await query("SELECT admitted FROM crawl_budget") == [(2,)]
    assert await query("SELECT url, error FROM crawl_pages") == [("ftp://x", "invalid_url")]
    hosts = await query("SELECT host FROM crawl_host_leases ORDER BY host")
    assert hosts == [("a.test",), ("b.test",)]


async def test_a_host_has_one_holder_until_its_lease_ends(frontiers: Opener) -> None:
    await seeded(frontiers, f"{SITE}/")
    a, b = await frontiers(), await frontiers()
    grants = await a.claim_hosts("a", limit=4, now=T0, until=T0 + 10)
    assert [g.host for g in grants] == ["a.test"]
    assert await b.claim_hosts("b", limit=4, now=T0 + 9, until=T0 + 19) == []
    later = await b.claim_hosts("b", limit=4, now=T0 + 11, until=T0 + 21)
    assert [g.host for g in later] == ["a.test"]


async def test_urls_are_leased_in_admission_order_and_only_once(frontiers: Opener) -> None:
    await seeded(frontiers, *(f"{SITE}/{i}" for i in range(6)))
    a = await frontiers()
    await a.claim_hosts("a", limit=1, now=T0, until=T0 + 10)
    first = await a.lease("a", rooms={"a.test": 4}, now=T0, until=T0 + 10)
    assert [lease.url for lease in first] == [f"{SITE}/{i}" for i in range(4)]
    second = await a.lease("a", rooms={"a.test": 4}, now=T0, until=T0 + 10)
    assert [lease.url for lease in second] == [f"{SITE}/4", f"{SITE}/5"]
    assert await a.lease("a", rooms={"a.test": 4}, now=T0, until=T0 + 10) == []


async def test_a_lease_taken_over_fences_the_old_holders_outcome(
    frontiers: Opener, query: Query
) -> None:
    await seeded(frontiers, f"{SITE}/")
    slow, other = await frontiers(), await frontiers()
    await slow.claim_hosts("slow", limit=1, now=T0, until=T0 + 10)
    assert len(await slow.lease("slow", rooms={"a.test": 2}, now=T0, until=T0 + 10)) == 1
    # The slow worker's leases run out; the other takes the host and the URL over.
    assert await other.claim_hosts("other", limit=1, now=T0 + 11, until=T0 + 21)
    taken = await other.lease("other", rooms={"a.test": 2}, now=T0 + 11, until=T0 + 21)
    assert [lease.url for lease in taken] == [f"{SITE}/"]
    late = await slow.complete(
        "slow", completions=[done(f"{SITE}/", f"{SITE}/x")], attempts=[], robots=[], max_pages=9
    )
    assert late.stored == frozenset()
    assert late.fenced == {f"{SITE}/"}
    assert await query("SELECT COUNT(*) FROM crawl_pages") == [(0,)]
    on_time = await other.complete(
        "other", completions=[done(f"{SITE}/", f"{SITE}/x")], attempts=[], robots=[], max_pages=9
    )
    assert on_time.stored == {f"{SITE}/"}
    assert on_time.admitted == 1
    assert await query("SELECT url FROM crawl_pages") == [(f"{SITE}/",)]
    states = await query("SELECT url, state, leased_by FROM crawl_frontier ORDER BY ordinal")
    assert states == [(f"{SITE}/", "done", None), (f"{SITE}/x", "pending", None)]
    assert await query("SELECT source, target FROM crawl_edges") == [(f"{SITE}/", f"{SITE}/x")]


async def test_a_heartbeat_keeps_the_leases(frontiers: Opener) -> None:
    await seeded(frontiers, f"{SITE}/")
    a, b = await frontiers(), await frontiers()
    await a.claim_hosts("a", limit=1, now=T0, until=T0 + 10)
    await a.lease("a", rooms={"a.test": 2}, now=T0, until=T0 + 10)
    renewed = await a.renew("a", urls=[f"{SITE}/"], hosts={"a.test": T0}, until=T0 + 18)
    assert renewed == shared.Renewed(urls=frozenset({f"{SITE}/"}), hosts=frozenset({"a.test"}))
    assert await b.claim_hosts("b", limit=1, now=T0 + 11, until=T0 + 21) == []
    assert await b.lease("b", rooms={"a.test": 2}, now=T0 + 11, until=T0 + 21) == []
    # A holder that lost its leases is told so by the next heartbeat.
    assert await b.claim_hosts("b", limit=1, now=T0 + 19, until=T0 + 29)
    assert await b.lease("b", rooms={"a.test": 2}, now=T0 + 19, until=T0 + 29)
    lost = await a.renew("a", urls=[f"{SITE}/"], hosts={"a.test": T0}, until=T0 + 30)
    assert lost == shared.Renewed(urls=frozenset(), hosts=frozenset())


async def test_a_released_host_hands_on_its_next_start(frontiers: Opener) -> None:
    await seeded(frontiers, f"{SITE}/", f"{SITE}/2")
    a, b = await frontiers(), await frontiers()
    await a.claim_hosts("a", limit=1, now=T0, until=T0 + 10)
    leased = await a.lease("a", rooms={"a.test": 1}, now=T0, until=T0 + 10)
    await a.release("a", urls=[x.url for x in leased], hosts={"a.test": T0 + 7.5})
    (grant,) = await b.claim_hosts("b", limit=1, now=T0 + 1, until=T0 + 11)
    assert grant.not_before == T0 + 7.5
    again = await b.lease("b", rooms={"a.test": 2}, now=T0 + 1, until=T0 + 11)
    assert [x.url for x in again] == [f"{SITE}/", f"{SITE}/2"]


async def test_releasing_everything_frees_leases_the_holder_did_not_know_it_had(
    frontiers: Opener, query: Query
) -> None:
    """A stopping worker whose last claim and lease committed while the stop cancelled
    them: it names nothing, and still nothing stays leased to it."""
    await seeded(frontiers, f"{SITE}/", f"{SITE}/2", f"{OTHER}/")
    a, b = await frontiers(), await frontiers()
    await a.claim_hosts("a", limit=2, now=T0, until=T0 + 60)
    await a.lease("a", rooms={"a.test": 2, "b.test": 2}, now=T0, until=T0 + 60)
    assert await b.claim_hosts("b", limit=2, now=T0, until=T0 + 60) == [], "both are a's"

    await a.release("a", urls=[], hosts={"a.test": T0 + 2.5}, everything=True)

    assert await query("SELECT COUNT(*) FROM crawl_frontier WHERE leased_by IS NOT NULL") == [(0,)]
    assert await query("SELECT COUNT(*) FROM crawl_host_leases WHERE holder IS NOT NULL") == [(0,)]
    grants = {g.host: g for g in await b.claim_hosts("b", limit=2, now=T0 + 1, until=T0 + 61)}
    assert set(grants) == {"a.test", "b.test"}, "taken over at once, not after 60 s"
    assert grants["a.test"].not_before == T0 + 2.5  # a known host's next start handed on
    taken = await b.lease("b", rooms={"a.test": 2, "b.test": 2}, now=T0 + 1, until=T0 + 61)
    assert sorted(x.url for x in taken) == sorted([f"{SITE}/", f"{SITE}/2", f"{OTHER}/"])


async def test_concurrent_outcomes_admit_each_url_once_and_exactly_max_pages(
    frontiers: Opener, query: Query
) -> None:
    seeds = [f"{SITE}/s{i}" for i in range(8)]
    await seeded(frontiers, *seeds, max_pages=30)
    workers = [await frontiers() for _ in range(4)]
    holder = [f"w{i}" for i in range(4)]
    # Each worker pretends to hold two seeds (leased by hand) and finds overlapping links.
    await workers[0].claim_hosts("w0", limit=1, now=T0, until=T0 + 60)
    for i, url in enumerate(seeds):
        await query(
            "UPDATE crawl_frontier SET leased_by = $1, lease_until = '2099-01-01T00:00:00.000000Z'"
            " WHERE url = $2",
            holder[i % 4],
            url,
        )

    async def finish(i: int) -> shared.Written:
        mine = [(n, url) for n, url in enumerate(seeds) if n % 4 == i]
        found = [(url, tuple(f"{SITE}/p{(n * 7 + k) % 40}" for k in range(12))) for n, url in mine]
        return await workers[i].complete(
            holder[i],
            completions=[done(url, *links) for url, links in found],
            attempts=[],
            robots=[],
            max_pages=30,
        )

    written = await asyncio.gather(*(finish(i) for i in range(4)))
    assert sum(len(w.stored) for w in written) == 8
    assert sum(w.admitted for w in written) == 22
    ((rows, distinct, ordinals),) = await query(
        "SELECT COUNT(*), COUNT(DISTINCT url), COUNT(DISTINCT ordinal) FROM crawl_frontier"
    )
    assert (rows, distinct, ordinals) == (30, 30, 30)
    assert await query("SELECT admitted FROM crawl_budget WHERE job_uid = $1", JOB_UID) == [(30,)]


async def test_the_frontier_is_finished_when_nothing_is_pending(frontiers: Opener) -> None:
    await seeded(frontiers, f"{SITE}/")
    a = await frontiers()
    assert not await a.finished()
    await a.claim_hosts("a", limit=1, now=T0, until=T0 + 10)
    await a.lease("a", rooms={"a.test": 1}, now=T0, until=T0 + 10)
    await a.complete("a", completions=[done(f"{SITE}/")], attempts=[], robots=[], max_pages=1)
    assert await a.finished()


async def test_a_participant_stops_fetching_within_the_margin_and_drops_lost_hosts(
    frontiers: Opener,
) -> None:
    await seeded(frontiers, f"{SITE}/", f"{SITE}/2")
    store = await frontiers()
    clock = FakeClock()
    spec = CrawlSpec.create(seeds=(), concurrency=2, per_host_concurrency=2)
    timing = shared.Timing(lease=10, heartbeat=3, margin=4, poll=0.1, patience=1)
    me = shared.Participant(store=store, spec=spec, holder="me", timing=timing, clock=clock)
    me._politeness = Politeness(spec=spec, fetcher=None)  # type: ignore[arg-type]
    leased = await me._lease_more()
    assert {x.url for x in leased} == {f"{SITE}/", f"{SITE}/2"}
    assert me.holds(f"{SITE}/")
    clock.now = T0 + 5.9
    assert me.holds(f"{SITE}/")
    clock.now = T0 + 6.1  # the lease ends in less than the margin: no fetch now
    assert not me.holds(f"{SITE}/")
    await me._renew()
    assert me.holds(f"{SITE}/")
    # Someone takes the host over after our lease ran out; our next heartbeat says so.
    other = await frontiers()
    clock.now = T0 + 6.1 + 10.5
    assert await other.claim_hosts("other", limit=1, now=clock.now, until=clock.now + 10)
    await me._renew()
    assert me.hosts == {}
    assert not me.holds(f"{SITE}/")
    me.drop(f"{SITE}/")
    assert me.lost == 1
    assert f"{SITE}/" not in me.urls


def test_a_hosts_next_start_is_handed_on_and_read_back() -> None:
    spec = CrawlSpec.create(seeds=())
    politeness = Politeness(spec=spec, fetcher=None)  # type: ignore[arg-type]
    assert politeness.wait_left("a.test") == 0.0
    politeness.hold_off("a.test", 5.0)
    assert 4.5 < politeness.wait_left("a.test") <= 5.0
    politeness.hold_off("a.test", 1.0)  # an earlier start never shortens the wait
    assert 4.5 < politeness.wait_left("a.test") <= 5.0


async def test_a_session_idle_in_its_transaction_is_ended_by_the_server(
    postgres_url: str,
) -> None:
    one = shared_frontier.PostgresSharedFrontier.from_url(
        StoreUrl.parse(postgres_url), job_uid=JOB_UID, idle_timeout=0.5
    )
    try:
        setting = await one.db.transact(
            "reading", lambda conn: conn.fetchval("SHOW idle_in_transaction_session_timeout")
        )
    finally:
        await one.close()
    # So a worker paused mid-transaction holds the budget row's lock half a second at most.
    assert setting == "500ms"
