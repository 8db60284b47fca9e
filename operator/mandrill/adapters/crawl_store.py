"""Crawl results in SQLite, in the same file as the restart journal.

Three tables, keyed by the CrawlJob's UID: `crawl_jobs` (one row per job:
attempt, when, how it ended), `crawl_pages` (one row per URL's outcome) and
`crawl_edges` (one row per source -> target link). Pages and edges are
written with INSERT ... ON CONFLICT DO NOTHING on their primary keys, so a
batch written twice never duplicates a row.

The store must not be the crawl's bottleneck: the sink buffers rows and
writes them with executemany, one transaction per batch (a few thousand rows,
or whatever came within a second), and aiosqlite runs SQLite in its own
thread, so the event loop never waits on the disk. A lock serialises batches
of all crawls on the one connection, which also pushes back on a crawl that
outruns the disk.

Reading (for `mandrill results`) is plain sqlite3, read-only: it never
creates a store that is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import pathlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiosqlite
import attrs

from mandrill.adapters import export, metrics
from mandrill.adapters.sqlite import PRAGMAS, LazyConnection, sqlite_path
from mandrill.domain import timestamps
from mandrill.domain.crawl.job import JobRef, Outcome, StoredResults
from mandrill.domain.crawl.models import Edge, EdgeList, ErrorKind, PageResult, Progress
from mandrill.domain.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS crawl_jobs (
    job_uid     TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    phase       TEXT NOT NULL,
    reason      TEXT,
    stats_json  TEXT
);
CREATE INDEX IF NOT EXISTS crawl_jobs_by_name ON crawl_jobs (namespace, name);
CREATE TABLE IF NOT EXISTS crawl_pages (
    job_uid      TEXT NOT NULL,
    url          TEXT NOT NULL,
    final_url    TEXT NOT NULL,
    depth        INTEGER NOT NULL,
    status       INTEGER,
    error        TEXT,
    message      TEXT NOT NULL,
    content_type TEXT,
    bytes        INTEGER NOT NULL,
    links        INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    elapsed      REAL NOT NULL,
    PRIMARY KEY (job_uid, url)
);
CREATE TABLE IF NOT EXISTS crawl_edges (
    job_uid TEXT NOT NULL,
    source  TEXT NOT NULL,
    target  TEXT NOT NULL,
    PRIMARY KEY (job_uid, source, target)
);
"""

INSERT_PAGE = (
    "INSERT INTO crawl_pages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(job_uid, url) DO NOTHING"
)
INSERT_EDGE = (
    "INSERT INTO crawl_edges VALUES (?, ?, ?) ON CONFLICT(job_uid, source, target) DO NOTHING"
)
BATCH_ROWS = 5000
"""Rows (pages + edges) buffered before a batch is written."""
BATCH_SECONDS = 1.0
"""Longest a row waits in the buffer while pages keep coming."""

PageRow = tuple[str, str, str, int, int | None, str | None, str, str | None, int, int, int, float]
EdgeRow = tuple[str, str, str]


def page_row(job_uid: str, result: PageResult) -> PageRow:
    """A crawl_pages row."""
    return (
        job_uid,
        result.url,
        result.final_url,
        result.depth,
        result.status,
        result.error.value if result.error is not None else None,
        result.message,
        result.content_type,
        result.size,
        result.links,
        result.attempts,
        result.elapsed,
    )


def edge_rows(job_uid: str, edges: Sequence[Edge]) -> list[EdgeRow]:
    """crawl_edges rows, without an Edge object per link when the engine sent an EdgeList."""
    if isinstance(edges, EdgeList):
        source = edges.source
        return [(job_uid, source, target) for target in edges.targets]
    return [(job_uid, e.source, e.target) for e in edges]


@attrs.define
class CrawlStore:
    """The engine-facing store: one aiosqlite connection shared by every crawl."""

    path: pathlib.Path
    url: str
    """The store URL, as shown in a CrawlJob's status."""
    _write_lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    _connection: LazyConnection = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._connection = LazyConnection(
            path=self.path,
            schema=SCHEMA,
            what="crawl store",
            pragmas=(*PRAGMAS, "PRAGMA synchronous=NORMAL"),
        )

    @classmethod
    def from_url(cls, url: str) -> CrawlStore:
        """From a sqlite:///PATH store URL; ValueError for anything else."""
        return cls(path=sqlite_path(url), url=url)

    async def open(self) -> None:
        """Create the schema now, so a misconfigured store shows at start-up in the log."""
        await self._connection.get()

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run (sql, rows) pairs with executemany in one transaction; StoreError on failure."""
        db = await self._connection.get()
        async with self._write_lock:
            try:
                for sql, rows in statements:
                    if rows:
                        await db.executemany(sql, rows)
                await db.commit()
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                await self._connection.reset()
                raise StoreError(f"cannot write crawl store {self.path}: {e}") from e

    async def write_batch(self, pages: Sequence[PageRow], edges: Sequence[EdgeRow]) -> None:
        """One transaction for a batch of pages and edges; replaying it changes nothing."""
        await self._transaction([(INSERT_PAGE, pages), (INSERT_EDGE, edges)])

    async def begin(self, job: JobRef, *, attempt: int, started: datetime.datetime) -> None:
        """Forget an earlier attempt's rows (each attempt starts from scratch) and note this one."""
        await self._transaction(
            [
                ("DELETE FROM crawl_pages WHERE job_uid = ?", [(job.uid,)]),
                ("DELETE FROM crawl_edges WHERE job_uid = ?", [(job.uid,)]),
                (
                    "INSERT INTO crawl_jobs (job_uid, namespace, name, attempt, started_at, phase)"
                    " VALUES (?, ?, ?, ?, ?, 'Running') ON CONFLICT(job_uid) DO UPDATE SET"
                    " attempt = excluded.attempt, started_at = excluded.started_at,"
                    " finished_at = NULL, phase = 'Running', reason = NULL, stats_json = NULL",
                    [(job.uid, job.namespace, job.name, attempt, timestamps.format(started))],
                ),
            ]
        )

    def sink(self, job: JobRef) -> BatchingSink:
        """A sink for one crawl of `job`."""
        return BatchingSink(store=self, job_uid=job.uid)

    async def finish(self, job: JobRef, outcome: Outcome) -> StoredResults:
        """Note how the job ended; returns the row counts for its status."""
        stats = outcome.stats
        summary = None if stats is None else json.dumps(attrs.asdict(stats), sort_keys=True)
        await self._transaction(
            [
                (
                    "UPDATE crawl_jobs SET finished_at = ?, phase = ?, reason = ?, stats_json = ?"
                    " WHERE job_uid = ?",
                    [
                        (
                            timestamps.format(outcome.finished),
                            str(outcome.phase),
                            outcome.reason,
                            summary,
                            job.uid,
                        )
                    ],
                )
            ]
        )
        db = await self._connection.get()
        try:
            pages = await _count(db, "crawl_pages", job.uid)
            edges = await _count(db, "crawl_edges", job.uid)
        except sqlite3.Error as e:
            raise StoreError(f"cannot read crawl store {self.path}: {e}") from e
        return StoredResults(store=self.url, pages=pages, edges=edges)

    async def close(self) -> None:
        """Close the connection; the next use opens it again."""
        await self._connection.reset()


async def _count(db: aiosqlite.Connection, table: str, job_uid: str) -> int:
    async with db.execute(f"SELECT COUNT(*) FROM {table} WHERE job_uid = ?", (job_uid,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


@attrs.define
class BatchingSink:
    """The engine's ResultSink for one crawl: buffers rows, writes them in batches.

    A batch is written when BATCH_ROWS rows are buffered or the oldest has
    waited BATCH_SECONDS (checked as pages arrive); `flush` writes the rest.
    Whoever triggers a batch waits for it, so a crawl cannot run far ahead of
    its store.
    """

    store: CrawlStore
    job_uid: str
    max_rows: int = BATCH_ROWS
    max_seconds: float = BATCH_SECONDS
    clock: Callable[[], float] = time.monotonic
    batches: int = 0
    """Batches written, for tests and logs."""
    _pages: list[PageRow] = attrs.Factory(list)
    _edges: list[EdgeRow] = attrs.Factory(list)
    _since: float | None = None
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        """Buffer one outcome; write a batch if it is due."""
        metrics.page_crawled(result)
        self._pages.append(page_row(self.job_uid, result))
        if edges:
            self._edges.extend(edge_rows(self.job_uid, edges))
        if self._since is None:
            self._since = self.clock()
        buffered = len(self._pages) + len(self._edges)
        if buffered >= self.max_rows or self.clock() - self._since >= self.max_seconds:
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered, as one transaction."""
        async with self._lock:
            pages, edges = self._pages, self._edges
            self._pages, self._edges, self._since = [], [], None
            if pages or edges:
                await self.store.write_batch(pages, edges)
                self.batches += 1


class StoreMissingError(Exception):
    """There is no store (or no crawl results in it) at the given place."""


@attrs.frozen
class JobRecord:
    """A crawl_jobs row."""

    uid: str
    namespace: str
    name: str
    attempt: int
    started_at: str
    finished_at: str | None
    phase: str
    reason: str | None


@attrs.define
class ResultsReader:
    """Read-only access to stored results, for export."""

    db: sqlite3.Connection

    @classmethod
    @contextlib.contextmanager
    def open(cls, url: str) -> Iterator[ResultsReader]:
        """Open read-only; StoreMissingError if the file or the tables are not there."""
        path = sqlite_path(url)
        if not path.is_file():
            raise StoreMissingError(f"no store at {path}")
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as e:
            raise StoreMissingError(f"cannot open store {path}: {e}") from e
        try:
            try:
                db.execute("SELECT 1 FROM crawl_jobs LIMIT 1").fetchall()
            except sqlite3.Error as e:
                raise StoreMissingError(f"{path} holds no crawl results ({e})") from e
            yield cls(db)
        finally:
            db.close()

    def job(self, uid: str) -> JobRecord | None:
        """The job with this UID, if it ever started."""
        rows = self._jobs("WHERE job_uid = ?", (uid,))
        return rows[0] if rows else None

    def jobs_named(self, namespace: str, name: str) -> list[JobRecord]:
        """Every stored job of this name (a name is reused when a job is recreated)."""
        return self._jobs("WHERE namespace = ? AND name = ? ORDER BY started_at", (namespace, name))

    def _jobs(self, where: str, args: tuple[str, ...]) -> list[JobRecord]:
        rows = self.db.execute(
            "SELECT job_uid, namespace, name, attempt, started_at, finished_at, phase, reason"
            f" FROM crawl_jobs {where}",
            args,
        ).fetchall()
        return [JobRecord(*row) for row in rows]

    def pages(self, uid: str) -> Iterator[PageResult]:
        """The job's page outcomes, in the order they were recorded."""
        cursor = self.db.execute(
            "SELECT url, final_url, depth, status, error, message, content_type, bytes, links,"
            " attempts, elapsed FROM crawl_pages WHERE job_uid = ? ORDER BY rowid",
            (uid,),
        )
        for row in cursor:
            url, final_url, depth, status, error, message, ctype, size, links, attempts, el = row
            yield PageResult(
                url=url,
                depth=depth,
                final_url=final_url,
                status=status,
                error=ErrorKind(error) if error is not None else None,
                message=message,
                content_type=ctype,
                size=size,
                links=links,
                attempts=attempts,
                elapsed=el,
            )

    def targets(self, uid: str, source: str) -> tuple[str, ...]:
        """A page's link targets, in document order."""
        rows = self.db.execute(
            "SELECT target FROM crawl_edges WHERE job_uid = ? AND source = ? ORDER BY rowid",
            (uid, source),
        ).fetchall()
        return tuple(row[0] for row in rows)

    def export(self, uid: str, writer: export.Writer) -> int:
        """Feed the job's pages and edges to `writer` (not closed); returns the pages written."""
        exported: set[str] = set()
        count = 0
        for page in self.pages(uid):
            targets: tuple[str, ...] = ()
            # A page redirected to an already-crawled URL shares its final_url but has no links.
            if page.links and page.final_url not in exported:
                exported.add(page.final_url)
                targets = self.targets(uid, page.final_url)
            writer.write(page, EdgeList(page.final_url, targets))
            count += 1
        return count
