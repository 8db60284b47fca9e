"""The crawl store against a real SQLite file: idempotent, batched, restartable.

Covers: a batch written twice leaves one row per page and edge; the sink
writes in batches (by row count and by age), not per page; beginning an
attempt clears the job's earlier rows but no other job's; finish counts rows;
the read side exports what was written, in order, and never creates a store.
"""

from __future__ import annotations

import datetime
import io
import pathlib
import sqlite3
from collections.abc import AsyncIterator

import attrs
import pytest

from mandrill.adapters import crawl_store, export
from mandrill.domain.crawl.job import JobRef, Outcome, Phase
from mandrill.domain.crawl.models import EdgeList, ErrorKind, PageResult, Progress

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
JOB = JobRef(namespace="team", name="links", uid="uid-1")
OTHER = JobRef(namespace="team", name="other", uid="uid-2")
PROGRESS = Progress(done=1, scheduled=1, failed=0, elapsed=0.1)


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


def rows(path: pathlib.Path, table: str, uid: str = JOB.uid) -> int:
    with sqlite3.connect(path) as db:
        found = db.execute(f"SELECT COUNT(*) FROM {table} WHERE job_uid = ?", (uid,)).fetchone()
    return int(found[0])


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[crawl_store.CrawlStore]:
    opened = crawl_store.CrawlStore.from_url(f"sqlite:///{tmp_path / 'store.sqlite'}")
    await opened.open()
    yield opened
    await opened.close()


async def test_a_batch_written_twice_leaves_one_row_each(store: crawl_store.CrawlStore) -> None:
    pages, edges = [], []
    for n in range(3):
        result, links = page(n)
        pages.append(crawl_store.page_row(JOB.uid, result))
        edges.extend(crawl_store.edge_rows(JOB.uid, links))
    await store.write_batch(pages, edges)
    await store.write_batch(pages, edges)  # a replay, e.g. after a retry
    assert rows(store.path, "crawl_pages") == 3
    assert rows(store.path, "crawl_edges") == 6


async def test_the_sink_writes_in_batches_by_size(store: crawl_store.CrawlStore) -> None:
    sink = crawl_store.BatchingSink(store=store, job_uid=JOB.uid, max_rows=30, clock=FakeClock())
    for n in range(25):
        await sink.record(*page(n), PROGRESS)  # 3 rows a page: a batch every 10 pages
    assert sink.batches == 2
    assert rows(store.path, "crawl_pages") == 20
    await sink.flush()
    assert sink.batches == 3
    assert rows(store.path, "crawl_pages") == 25
    assert rows(store.path, "crawl_edges") == 50


async def test_the_sink_writes_a_slow_trickle_by_age(store: crawl_store.CrawlStore) -> None:
    clock = FakeClock()
    sink = crawl_store.BatchingSink(
        store=store, job_uid=JOB.uid, max_rows=10_000, max_seconds=1.0, clock=clock
    )
    await sink.record(*page(0), PROGRESS)
    clock.now = 0.5
    await sink.record(*page(1), PROGRESS)
    assert sink.batches == 0
    clock.now = 1.0
    await sink.record(*page(2), PROGRESS)
    assert sink.batches == 1
    assert rows(store.path, "crawl_pages") == 3


async def test_begin_clears_only_this_jobs_earlier_attempt(store: crawl_store.CrawlStore) -> None:
    for job in (JOB, OTHER):
        await store.begin(job, attempt=1, started=NOW)
        sink = store.sink(job)
        for n in range(4):
            await sink.record(*page(n), PROGRESS)
        await sink.flush()
    await store.begin(JOB, attempt=2, started=NOW)
    assert rows(store.path, "crawl_pages") == 0
    assert rows(store.path, "crawl_edges") == 0
    assert rows(store.path, "crawl_pages", OTHER.uid) == 4
    with sqlite3.connect(store.path) as db:
        attempt, phase = db.execute(
            "SELECT attempt, phase FROM crawl_jobs WHERE job_uid = ?", (JOB.uid,)
        ).fetchone()
    assert (attempt, phase) == (2, "Running")


async def test_finish_counts_rows_and_the_reader_exports_them(
    store: crawl_store.CrawlStore,
) -> None:
    await store.begin(JOB, attempt=1, started=NOW)
    sink = store.sink(JOB)
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
    outcome = Outcome(
        phase=Phase.SUCCEEDED, reason="Completed", message="", started=NOW, finished=NOW
    )
    stored = await store.finish(JOB, outcome)
    assert (stored.pages, stored.edges, stored.store) == (2, 2, store.url)

    with crawl_store.ResultsReader.open(store.url) as reader:
        record = reader.job(JOB.uid)
        assert record is not None
        assert (record.phase, record.finished_at) == ("Succeeded", "2026-01-02T03:04:05.000000Z")
        out = io.StringIO()
        writer = export.open_writer("tsv", out)
        assert reader.export(JOB.uid, writer) == 2
        writer.close()
        pages = list(reader.pages(JOB.uid))
    assert out.getvalue().splitlines() == [
        "source_url\tparsed_url",
        "https://example.com/0\thttps://example.com/0/0",
        "https://example.com/0\thttps://example.com/0/1",
    ]
    assert pages[1].error is ErrorKind.HTTP_STATUS
    assert pages[1].status == 404


def test_the_reader_never_creates_a_store(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "absent.sqlite"
    with (
        pytest.raises(crawl_store.StoreMissingError, match="no store at"),
        crawl_store.ResultsReader.open(f"sqlite:///{path}"),
    ):
        pass
    assert not path.exists()


def test_a_store_without_crawl_tables_is_reported(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "journal-only.sqlite"
    sqlite3.connect(path).close()
    with (
        pytest.raises(crawl_store.StoreMissingError, match="holds no crawl results"),
        crawl_store.ResultsReader.open(f"sqlite:///{path}"),
    ):
        pass
