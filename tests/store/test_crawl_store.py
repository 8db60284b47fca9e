"""The crawl store on both backends: idempotent, batched, restartable.

Covers: a batch written twice leaves one row per page and edge; the sink
writes in batches (by row count and by age), not per page; beginning an
attempt clears the job's earlier rows but no other job's; finish counts rows;
the read side exports what was written, in order (PostgreSQL has no rowid:
its identity column must keep the order), and never creates a store; the
status shows the store's URL without its password.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Sequence

import attrs
import pytest

from mandrill.adapters import crawl_store, export, frontier_store, sqlite_batch
from mandrill.domain.crawl.job import JobRef, Outcome, Phase
from mandrill.domain.crawl.models import EdgeList, ErrorKind, PageResult, Progress
from tests.postgres import PostgresServer
from tests.store.conftest import Store

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
JOB = JobRef(namespace="team", name="links", uid="uid-1")
OTHER = JobRef(namespace="team", name="other", uid="uid-2")
PROGRESS = Progress(done=1, scheduled=1, failed=0, elapsed=0.1)
SUCCEEDED = Outcome(
    phase=Phase.SUCCEEDED, reason="Completed", message="", started=NOW, finished=NOW
)


@attrs.define
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def page(n: int, *, links: int = 2) -> tuple[PageResult, EdgeList]:
    url = f"https://example.com/{n}"
    targets = tuple(f"https://example.com/{n}/{k}" for k in range(links))
    return PageResult(url=url, depth=1, final_url=url, status=200, links=links), EdgeList(
        url, targets
    )


@pytest.fixture
async def crawls(store: Store) -> AsyncIterator[crawl_store.CrawlStore]:
    opened = crawl_store.CrawlStore.from_url(store.url)
    await opened.open()
    yield opened
    await opened.close()


async def test_a_batch_written_twice_leaves_one_row_each(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    pages, edges = [], []
    for n in range(3):
        result, links = page(n)
        pages.append(crawl_store.page_row(JOB.uid, result))
        edges.extend(crawl_store.edge_rows(JOB.uid, links))
    await crawls.write_batch(pages, edges)
    await crawls.write_batch(pages, edges)  # a replay, e.g. after a retry
    assert await store.count("crawl_pages", JOB.uid) == 3
    assert await store.count("crawl_edges", JOB.uid) == 6


async def test_the_sink_writes_in_batches_by_size(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    sink = crawl_store.BatchingSink(store=crawls, job_uid=JOB.uid, max_rows=40, clock=FakeClock())
    for n in range(25):
        # 4 rows a page (itself, 2 edges, its frontier row done): a batch every 10 pages.
        # The 10th starts one, written behind the crawl; the 20th finds it still in
        # flight (nothing has yielded yet) and keeps buffering.
        await sink.record(*page(n), PROGRESS)
    await sink.settle()
    assert sink.batches == 1
    assert await store.count("crawl_pages", JOB.uid) == 10
    await sink.flush()
    assert sink.batches == 2
    assert await store.count("crawl_pages", JOB.uid) == 25
    assert await store.count("crawl_edges", JOB.uid) == 50


async def test_a_page_waits_for_the_store_once_two_batches_are_buffered(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    sink = crawl_store.BatchingSink(store=crawls, job_uid=JOB.uid, max_rows=40, clock=FakeClock())
    for n in range(29):
        await sink.record(*page(n), PROGRESS)
    assert (sink.batches, sink.buffered) == (0, 76)  # the first batch not even started
    await sink.record(*page(29), PROGRESS)  # 80 rows: wait for the first, start the next
    assert (sink.batches, sink.buffered) == (1, 0)
    await sink.flush()
    assert await store.count("crawl_pages", JOB.uid) == 30


async def test_the_sink_writes_a_slow_trickle_by_age(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    clock = FakeClock()
    sink = crawl_store.BatchingSink(
        store=crawls, job_uid=JOB.uid, max_rows=10_000, max_seconds=1.0, clock=clock
    )
    await sink.record(*page(0), PROGRESS)
    clock.now = 0.5
    await sink.record(*page(1), PROGRESS)
    assert sink.batches == 0
    clock.now = 1.0
    await sink.record(*page(2), PROGRESS)
    await sink.settle()
    assert sink.batches == 1
    assert await store.count("crawl_pages", JOB.uid) == 3


async def test_begin_without_a_frontier_clears_only_this_jobs_earlier_attempt(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    for job in (JOB, OTHER):
        await crawls.begin(job, attempt=1, started=NOW)
        sink = crawls.sink(job)
        for n in range(4):
            await sink.record(*page(n), PROGRESS)
        await sink.flush()
    await crawls.begin(JOB, attempt=2, started=NOW)
    assert await store.count("crawl_pages", JOB.uid) == 0
    assert await store.count("crawl_edges", JOB.uid) == 0
    assert await store.count("crawl_pages", OTHER.uid) == 4
    found = await store.query("SELECT attempt, phase FROM crawl_jobs WHERE job_uid = ?", JOB.uid)
    assert found == [(2, "Running")]


async def test_finish_counts_rows_and_the_reader_exports_them(
    crawls: crawl_store.CrawlStore,
    store: Store,
) -> None:
    await crawls.begin(JOB, attempt=1, started=NOW)
    sink = crawls.sink(JOB)
    failed = PageResult(
        url="https://example.com/gone",
        depth=1,
        final_url="https://example.com/gone",
        status=404,
        error=ErrorKind.HTTP_STATUS,
        message="HTTP 404",
    )
    await sink.record(*page(0), PROGRESS)
    await sink.record(failed, (), PROGRESS)
    await sink.flush()
    stored = await crawls.finish(JOB, SUCCEEDED)
    assert (stored.pages, stored.edges, stored.store) == (2, 2, crawls.url)

    async with crawl_store.ResultsReader.open(store.url) as reader:
        record = await reader.job(JOB.uid)
        assert record is not None
        assert (record.phase, record.finished_at) == ("Succeeded", "2026-01-02T03:04:05.000000Z")
        out = io.StringIO()
        writer = export.open_writer("tsv", out)
        assert await reader.export(JOB.uid, writer) == 2
        writer.close()
        pages = [p async for p in reader.pages(JOB.uid)]
    assert out.getvalue().splitlines() == [
        "source_url\tparsed_url",
        "https://example.com/0\thttps://example.com/0/0",
        "https://example.com/0\thttps://example.com/0/1",
    ]
    assert pages[1].error is ErrorKind.HTTP_STATUS
    assert pages[1].status == 404


async def test_export_keeps_the_order_things_were_recorded_in(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    """Pages in crawl order and each page's links in document order, across batches:
    neither is the primary key's order, so the store must keep the insertion order."""
    await crawls.begin(JOB, attempt=1, started=NOW)
    sink = crawl_store.BatchingSink(store=crawls, job_uid=JOB.uid, max_rows=7, clock=FakeClock())
    order = [9, 3, 7, 1, 8, 2]
    for n in order:
        url = f"https://example.com/{n}"
        targets = tuple(f"https://example.com/{n}/{k}" for k in ("z", "a", "m"))
        await sink.record(
            PageResult(url=url, depth=1, final_url=url, status=200, links=3),
            EdgeList(url, targets),
            PROGRESS,
        )
    await sink.flush()
    assert sink.batches > 1
    async with crawl_store.ResultsReader.open(store.url) as reader:
        assert [p.url async for p in reader.pages(JOB.uid)] == [
            f"https://example.com/{n}" for n in order
        ]
        assert await reader.targets(JOB.uid, "https://example.com/3") == tuple(
            f"https://example.com/3/{k}" for k in ("z", "a", "m")
        )


async def test_pages_sharing_a_final_url_export_its_links_once(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    """Two URLs redirected to one page: the page's links are exported once, with the
    first, and every page without links exports none (on PostgreSQL they come
    with the page's row, so this is where a doubled or misplaced array would show)."""
    await crawls.begin(JOB, attempt=1, started=NOW)
    final = "https://example.com/final"
    first = PageResult(url="https://example.com/a", depth=1, final_url=final, status=200, links=2)
    again = attrs.evolve(first, url="https://example.com/b")
    bare = PageResult(url="https://example.com/c", depth=1, final_url="https://example.com/c")
    links = EdgeList(final, ("https://example.com/x", "https://example.com/y"))
    await crawls.write_batch(
        [crawl_store.page_row(JOB.uid, p) for p in (first, again, bare)],
        crawl_store.edge_rows(JOB.uid, links),
    )
    async with crawl_store.ResultsReader.open(store.url) as reader:
        out = io.StringIO()
        writer = export.open_writer("jsonl", out)
        assert await reader.export(JOB.uid, writer) == 3
        writer.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["type"], r.get("url") or r.get("target")) for r in records] == [
        ("page", "https://example.com/a"),
        ("edge", "https://example.com/x"),
        ("edge", "https://example.com/y"),
        ("page", "https://example.com/b"),
        ("page", "https://example.com/c"),
    ]


async def test_a_batch_larger_than_a_statement_keeps_every_row_and_its_order(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    """SQLite writes a batch in statements of many rows (sqlite_batch.py): a batch of
    more pages, links and frontier rows than one statement carries is written whole,
    links in document order, a replay adds nothing, and non-ASCII text survives the
    JSON the edges travel in."""
    await crawls.begin(JOB, attempt=1, started=NOW)
    count = sqlite_batch.MAX_PARAMS // 12 + 7  # more pages than one statement carries
    site = "https://example.com"
    wide = tuple(f"{site}/wide/{k}?q=été" for k in reversed(range(count)))
    results = [
        PageResult(url=f"{site}/{n}", depth=1, final_url=f"{site}/{n}") for n in range(count)
    ]
    pages = [crawl_store.page_row(JOB.uid, r) for r in results]
    edges = crawl_store.edge_rows(JOB.uid, EdgeList(f"{site}/0", wide))
    edges += crawl_store.edge_rows(JOB.uid, EdgeList(f"{site}/1", (f"{site}/2",)))
    batch = crawl_store.Batch(
        urls=[
            frontier_store.admitted_row(JOB.uid, r.url, depth=1, parent=None, ordinal=n)
            for n, r in enumerate(results)
        ],
        done=[(JOB.uid, r.url) for r in results[: count - 3]],
    )
    for _ in range(2):  # a replay, e.g. after a retry
        await crawls.write_batch(pages, edges, batch=batch)
    assert await store.count("crawl_pages", JOB.uid) == count
    assert await store.count("crawl_edges", JOB.uid) == count + 1
    states = await store.query(
        "SELECT state, COUNT(*) FROM crawl_frontier WHERE job_uid = ?"
        " GROUP BY state ORDER BY state",
        JOB.uid,
    )
    assert states == [("done", count - 3), ("pending", 3)]
    async with crawl_store.ResultsReader.open(store.url) as reader:
        assert [p.url async for p in reader.pages(JOB.uid)] == [r.url for r in results]
        assert await reader.targets(JOB.uid, f"{site}/0") == wide
        assert await reader.targets(JOB.uid, f"{site}/1") == (f"{site}/2",)


async def test_a_nul_from_a_server_is_stored_on_either_backend(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    """PostgreSQL refuses NUL in TEXT; a hostile server's reason phrase or Content-Type
    must not fail the batch (and so the crawl) there when SQLite would take it."""
    await crawls.begin(JOB, attempt=1, started=NOW)
    odd = PageResult(
        url="https://example.com/odd",
        depth=0,
        final_url="https://example.com/odd",
        status=500,
        error=ErrorKind.HTTP_STATUS,
        message="HTTP 500 bad\x00reason",
        content_type="text/html\x00",
    )
    await crawls.write_batch([crawl_store.page_row(JOB.uid, odd)], [])
    found = await store.query("SELECT message, content_type FROM crawl_pages")
    assert found == [("HTTP 500 bad\ufffdreason", "text/html\ufffd")]


def test_the_sqlite_reader_never_creates_a_store(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "absent.sqlite"

    async def read() -> None:
        async with crawl_store.ResultsReader.open(f"sqlite:///{path}"):
            pass

    with pytest.raises(crawl_store.StoreMissingError, match="no store at"):
        asyncio.run(read())
    assert not path.exists()


@pytest.mark.postgres
async def test_the_postgresql_reader_needs_the_database(postgres: PostgresServer) -> None:
    url = postgres.url("absent_db")
    with pytest.raises(crawl_store.StoreMissingError, match='"absent_db" does not exist'):
        async with crawl_store.ResultsReader.open(url):
            pass
    assert "absent_db" not in postgres.psql("SELECT datname FROM pg_database")


async def test_a_store_without_crawl_tables_is_reported_and_left_alone(store: Store) -> None:
    if store.backend == "sqlite":
        sqlite3.connect(store.path).close()  # a database, with nothing in it
    with pytest.raises(crawl_store.StoreMissingError, match="holds no crawl results"):
        async with crawl_store.ResultsReader.open(store.url):
            pass
    assert await store.tables() == set()


@pytest.mark.postgres
async def test_the_status_names_the_store_without_its_password(
    postgres: PostgresServer, postgres_url: str
) -> None:
    crawls = crawl_store.CrawlStore.from_url(postgres_url)
    try:
        await crawls.begin(JOB, attempt=1, started=NOW)
        stored = await crawls.finish(JOB, SUCCEEDED)
    finally:
        await crawls.close()
    assert postgres.password in postgres_url
    assert postgres.password not in stored.store
    assert stored.store == postgres_url.replace(postgres.password, "***")


@attrs.define
class GatedStore(crawl_store.CrawlStore):
    """Each batch waits at the gate: the store is slow exactly when the test says."""

    gate: asyncio.Event = attrs.Factory(asyncio.Event)

    async def write_batch(
        self,
        pages: Sequence[crawl_store.PageRow],
        edges: Sequence[crawl_store.EdgeRow],
        *,
        batch: crawl_store.Batch | None = None,
    ) -> None:
        await self.gate.wait()
        await super().write_batch(pages, edges, batch=batch)


async def test_pages_waiting_on_a_slow_store_together_lose_no_batch(
    crawls: crawl_store.CrawlStore, store: Store
) -> None:
    """Two pages that both wait for the batch in flight: one starts the next batch, the
    other keeps buffering; flush writes every row (a lost reference to the batch in
    flight once let flush return before it was written)."""
    gated = GatedStore(db=crawls.db, url=crawls.url, backend=crawls.backend)
    sink = crawl_store.BatchingSink(store=gated, job_uid=JOB.uid, max_rows=8, clock=FakeClock())
    for n in range(2):
        await sink.record(*page(n), PROGRESS)  # the second page starts a batch, held at the gate
    for n in range(2, 5):
        await sink.record(*page(n), PROGRESS)  # 12 rows: under twice the batch size
    waiting = [asyncio.create_task(sink.record(*page(n), PROGRESS)) for n in (5, 6)]
    await asyncio.sleep(0)  # both now wait for the batch in flight
    gated.gate.set()
    await asyncio.gather(*waiting)
    await sink.flush()
    assert await store.count("crawl_pages", JOB.uid) == 7
    assert await store.count("crawl_edges", JOB.uid) == 14
