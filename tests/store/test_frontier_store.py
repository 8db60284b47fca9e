"""A crawl's frontier in the store, on both backends: what a crawl resumes from.

Covers: what the sink buffers for the frontier (admissions, redirect hops,
retries, robots.txt) comes back from `begin` as a Resumption, pending URLs in
admission order and "taken but not done" as pending; a batch that fails stays
buffered and the next flush writes it; and the engine over the real store,
killed mid-crawl (its unwritten buffer dropped, as SIGKILL drops it) and
resumed on a new connection: no URL with a stored outcome is fetched again,
no edge is doubled, the edge set equals an uninterrupted crawl's, and a
crawl cut by maxPages stops at exactly maxPages pages within maxDepth.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import AsyncIterator, Sequence

import attrs
import pytest

from mandrill.adapters import crawl_store
from mandrill.domain.crawl import engine, frontier, ports
from mandrill.domain.crawl.job import JobRef
from mandrill.domain.crawl.models import (
    CrawlSpec,
    CrawlStats,
    EdgeList,
    ErrorKind,
    FetchFailure,
    FetchResult,
    PageResult,
    Progress,
)
from mandrill.domain.errors import StoreError
from tests.store.conftest import Store

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
JOB = JobRef(namespace="team", name="links", uid="uid-1")
PROGRESS = Progress(done=1, scheduled=1, failed=0, elapsed=0.1)
SITE = "http://site.test"


@pytest.fixture
async def crawls(store: Store) -> AsyncIterator[crawl_store.CrawlStore]:
    opened = crawl_store.CrawlStore.from_url(store.url)
    await opened.open()
    yield opened
    await opened.close()


def ok(url: str, *targets: str, depth: int = 0) -> tuple[PageResult, EdgeList]:
    return (
        PageResult(url=url, depth=depth, final_url=url, status=200, size=10, links=len(targets)),
        EdgeList(url, targets),
    )


async def test_the_frontier_comes_back_as_it_was_written(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    assert await crawls.begin(JOB, attempt=1, started=NOW) is None
    sink = crawls.sink(JOB)
    a, b, c, d, e = (f"{SITE}/{name}" for name in "abcde")
    for ordinal, url in enumerate((a, b, c), start=1):
        sink.admitted(url, depth=0, parent=None, ordinal=ordinal)
    sink.robots(frontier.RobotsRecord(origin=SITE, rules="User-agent: *\nDisallow: /x\n"))
    sink.robots(
        frontier.RobotsRecord(
            origin="http://down.test", failure=ErrorKind.DNS, message="no such host"
        )
    )
    sink.admitted(d, depth=1, parent=a, ordinal=4)
    await sink.record(*ok(a, b, d), PROGRESS)
    sink.retrying(b, attempt=2)
    sink.redirected([e])
    redirected = PageResult(url=c, depth=0, final_url=e, status=200, size=5)
    await sink.record(redirected, EdgeList(e, ()), PROGRESS)
    invalid = PageResult(url="nope", depth=0, final_url="nope", error=ErrorKind.INVALID_URL)
    await sink.record(invalid, (), PROGRESS)
    await sink.flush()

    resumed = await crawls.begin(JOB, attempt=2, started=NOW)
    assert resumed is not None
    # b was taken (it was being retried) but has no outcome: pending again, on attempt 2.
    assert resumed.pending == (
        frontier.PendingUrl(b, depth=0, attempt=2),
        frontier.PendingUrl(d, depth=1),
    )
    assert resumed.seen == {a, b, c, d, e}
    assert (resumed.admitted, resumed.rejected, resumed.done) == (4, 1, 3)
    assert resumed.counts == frontier.Counts(
        pages_ok=2, failures={"invalid_url": 1}, edges=2, bytes=15
    )
    assert resumed.linked == {b, d}
    by_origin = {r.origin: r for r in resumed.robots}
    policy = by_origin[SITE].policy()
    assert not isinstance(policy, FetchFailure)
    assert not policy.allows(f"{SITE}/x", user_agent="mandrill")
    assert by_origin["http://down.test"].policy() == FetchFailure(
        kind=ErrorKind.DNS, message="no such host"
    )
    # Resuming keeps the rows; the job's row notes the new attempt.
    assert await store.count("crawl_pages", JOB.uid) == 3
    found = await store.query("SELECT attempt, phase FROM crawl_jobs WHERE job_uid = ?", JOB.uid)
    assert found == [(2, "Running")]


async def test_a_batch_that_fails_stays_buffered_for_the_next_flush(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    failing = FailingOnce(db=crawls.db, url=crawls.url, backend=crawls.backend)
    sink = crawl_store.BatchingSink(store=failing, job_uid=JOB.uid)
    sink.admitted(f"{SITE}/a", depth=0, parent=None, ordinal=1)
    await sink.record(*ok(f"{SITE}/a", f"{SITE}/b"), PROGRESS)
    with pytest.raises(StoreError):
        await sink.flush()
    sink.admitted(f"{SITE}/b", depth=1, parent=f"{SITE}/a", ordinal=2)
    await sink.flush()
    assert await store.count("crawl_pages", JOB.uid) == 1
    assert await store.count("crawl_edges", JOB.uid) == 1
    states = await store.query("SELECT url, state FROM crawl_frontier ORDER BY ordinal")
    assert states == [(f"{SITE}/a", "done"), (f"{SITE}/b", "pending")]


@attrs.define
class FailingOnce(crawl_store.CrawlStore):
    failed: bool = False

    async def write_batch(
        self,
        pages: Sequence[crawl_store.PageRow],
        edges: Sequence[crawl_store.EdgeRow],
        *,
        batch: crawl_store.Batch | None = None,
    ) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("the disk is full, for now")
        await super().write_batch(pages, edges, batch=batch)


# --- the engine over the store, killed and resumed ---------------------------------


def links(i: int, *, size: int) -> list[int]:
    """Page i's links: up to three pages, many reached by several paths."""
    return list(dict.fromkeys(((2 * i + 1) % size, (3 * i + 2) % size, (i + 7) % size)))


@attrs.define
class GraphFetcher:
    """`size` pages; /p/5 redirects to /p/6's twin /r/6, which links like /p/6.

    Counts every fetch by URL. After `stall_after` fetches every request hangs
    (the crawl is killed while they are in flight)."""

    size: int
    stall_after: int | None = None
    fetched: collections.Counter[str] = attrs.Factory(collections.Counter)
    stalled: asyncio.Event = attrs.Factory(asyncio.Event)

    async def fetch(
        self, url: str, *, max_bytes: int, want_body: ports.BodyFilter
    ) -> FetchResult | FetchFailure:
        if self.stall_after is not None and sum(self.fetched.values()) >= self.stall_after:
            self.stalled.set()
            await asyncio.Event().wait()
        self.fetched[url] = self.fetched[url] + 1
        await asyncio.sleep(0)
        path = url.removeprefix(SITE)
        if path == "/p/5":
            return FetchResult(url=url, status=301, location="/r/6")
        number = int(path.rsplit("/", 1)[1])
        body = "".join(f'<a href="/p/{j}">{j}</a>' for j in links(number, size=self.size))
        return FetchResult(url=url, status=200, content_type="text/html", body=body.encode())


def spec(*, max_pages: int = 1000, max_depth: int = 10) -> CrawlSpec:
    return CrawlSpec.create(
        seeds=[f"{SITE}/p/0"],
        max_pages=max_pages,
        max_depth=max_depth,
        concurrency=4,
        respect_robots=False,
    )


async def crawl_once(
    crawls: crawl_store.CrawlStore,
    job: JobRef,
    fetcher: GraphFetcher,
    *,
    attempt: int,
    s: CrawlSpec,
) -> CrawlStats:
    resumption = await crawls.begin(job, attempt=attempt, started=NOW)
    sink = crawl_store.BatchingSink(store=crawls, job_uid=job.uid, max_rows=9)
    stats = await engine.crawl(s, fetcher=fetcher, sink=sink, log=sink, resume=resumption)
    await sink.flush()
    return stats


async def killed(store: Store, job: JobRef, fetcher: GraphFetcher, s: CrawlSpec) -> None:
    """Crawl until the fetcher stalls, then stop dead: what is not written is lost."""
    crawls = crawl_store.CrawlStore.from_url(store.url)
    resumption = await crawls.begin(job, attempt=1, started=NOW)
    sink = crawl_store.BatchingSink(store=crawls, job_uid=job.uid, max_rows=9)
    task = asyncio.create_task(
        engine.crawl(s, fetcher=fetcher, sink=sink, log=sink, resume=resumption)
    )
    await fetcher.stalled.wait()
    # Every request now hangs; let the batch being written reach the store (the kill
    # is meant to fall mid-crawl, not before the first write).
    async with asyncio.timeout(10):
        await sink.settle()
    assert sink.batches > 0
    task.cancel()
    await asyncio.wait([task])
    # The batch being written when the kill came either made it or not: here, it did.
    await sink.settle()
    await crawls.close()  # the rest of the buffer is dropped with the sink, as SIGKILL drops it


async def edges_of(store: Store, job: JobRef) -> list[tuple[str, str]]:
    rows = await store.query("SELECT source, target FROM crawl_edges WHERE job_uid = ?", job.uid)
    return [(str(s), str(t)) for s, t in rows]


@pytest.mark.parametrize("stall_after", [6, 13, 25])
async def test_a_killed_crawl_resumes_to_the_uninterrupted_result(
    crawls: crawl_store.CrawlStore, store: Store, stall_after: int
) -> None:
    whole = JobRef(namespace="team", name="whole", uid="uid-whole")
    whole_stats = await crawl_once(crawls, whole, GraphFetcher(size=30), attempt=1, s=spec())

    first = GraphFetcher(size=30, stall_after=stall_after)
    await killed(store, JOB, first, spec())
    pages_sql = "SELECT url FROM crawl_pages WHERE job_uid = ?"
    stored_before = {str(url) for (url,) in await store.query(pages_sql, JOB.uid)}
    assert 0 < len(stored_before) < whole_stats.pages_ok + whole_stats.pages_failed

    second = GraphFetcher(size=30)
    stats = await crawl_once(crawls, JOB, second, attempt=2, s=spec())

    assert not stored_before & set(second.fetched), "a page with a stored outcome was fetched again"
    assert max(second.fetched.values()) == 1
    edges = await edges_of(store, JOB)
    assert len(edges) == len(set(edges))
    assert set(edges) == set(await edges_of(store, whole))
    pages = await store.query(pages_sql, JOB.uid)
    assert sorted(pages) == sorted(await store.query(pages_sql, whole.uid))
    # Counters continue: the resumed crawl's totals are the whole crawl's.
    assert (stats.pages_ok, stats.pages_failed, stats.edges, stats.unique_urls) == (
        whole_stats.pages_ok,
        whole_stats.pages_failed,
        whole_stats.edges,
        whole_stats.unique_urls,
    )


async def test_a_resumed_crawl_cut_by_max_pages_stops_at_exactly_max_pages(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    cut = spec(max_pages=17, max_depth=3)
    await killed(store, JOB, GraphFetcher(size=60, stall_after=6), cut)
    second = GraphFetcher(size=60)
    await crawl_once(crawls, JOB, second, attempt=2, s=cut)
    rows = await store.query("SELECT url, depth FROM crawl_pages WHERE job_uid = ?", JOB.uid)
    assert len(rows) == 17
    assert max(int(depth) for _, depth in rows) <= 3
    assert len({url for url, _ in rows}) == 17
