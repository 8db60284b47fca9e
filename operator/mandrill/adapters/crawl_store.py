"""Crawl results in the store, beside the restart journal (SQLite or PostgreSQL).

Three tables, keyed by the CrawlJob's UID: `crawl_jobs` (one row per job:
attempt, when, how it ended), `crawl_pages` (one row per URL's outcome) and
`crawl_edges` (one row per source -> target link); schema.py creates them.
Pages and edges are written with INSERT ... ON CONFLICT DO NOTHING on their
primary keys, so a batch written twice never duplicates a row. Beside them,
in the same batches, the crawl's frontier (frontier_store.py), from which an
interrupted crawl resumes: `begin` returns it when there is one.

The store must not be the crawl's bottleneck: the sink buffers rows and
writes them one transaction per batch (a few thousand rows, or whatever came
within a second). On PostgreSQL a batch is executemany per table, a page's
edges one statement row (its targets as an array, expanded by the server in
document order: one bound row per link was the batches' largest cost). On
SQLite a batch is a handful of statements of many rows each
(sqlite_batch.py: every statement row there was a hand-off of the GIL
between the crawl and the writer thread). Neither backend makes the event
loop wait on the disk (SQLite runs in a thread of its own, sqlite.py;
asyncpg is a socket).
The connection's lock serialises batches of all crawls, which also pushes
back on a crawl that outruns the store.

Reading (for `mandrill results`) is read-only on both backends: it never
creates a store that is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import attrs

from mandrill.adapters import database, export, frontier_store, metrics, sqlite_batch
from mandrill.domain import timestamps
from mandrill.domain.crawl import frontier
from mandrill.domain.crawl.job import JobRef, Outcome, StoredResults
from mandrill.domain.crawl.models import Edge, EdgeList, ErrorKind, PageResult, Progress
from mandrill.domain.errors import StoreError
from mandrill.store_url import Backend, StoreUrl

INSERT_PAGE = (
    "INSERT INTO crawl_pages (job_uid, url, final_url, depth, status, error, message,"
    " content_type, bytes, links, attempts, elapsed)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_uid, url) DO NOTHING"
)
PG_PAGE_EDGES = (
    "INSERT INTO crawl_edges (job_uid, source, target)"
    " SELECT ?, ?, t FROM unnest(?::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n"
    " ON CONFLICT (job_uid, source, target) DO NOTHING"
)
"""PostgreSQL: one statement row per page, (job uid, source, its targets in document order)."""
BATCH_ROWS = 20_000
"""Rows (pages + edges + frontier rows) buffered before a batch is written: some
400 pages of the bench site. Every batch costs the writer a few hand-offs of the
GIL with the crawl, each waiting on a busy loop; at 5,000 rows a crawl at full
speed made batches faster than SQLite's thread could take them, and waited."""
BATCH_SECONDS = 1.0
"""Longest a row waits in the buffer while pages keep coming."""

PageRow = tuple[str, str, str, int, int | None, str | None, str, str | None, int, int, int, float]
EdgeRow = tuple[str, str, tuple[str, ...]]
"""A page's edges: (job uid, source, targets)."""


def _text(value: str) -> str:
    """PostgreSQL's TEXT cannot hold NUL (SQLite's can): one rule for both backends.

    Only for what a server sent us (a message, a Content-Type); URLs are
    canonical by now, a NUL in them percent-encoded."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def page_row(job_uid: str, result: PageResult) -> PageRow:
    """A crawl_pages row."""
    return (
        job_uid,
        result.url,
        result.final_url,
        result.depth,
        result.status,
        result.error.value if result.error is not None else None,
        _text(result.message),
        _text(result.content_type) if result.content_type is not None else None,
        result.size,
        result.links,
        result.attempts,
        result.elapsed,
    )


def edge_rows(job_uid: str, edges: Sequence[Edge]) -> list[EdgeRow]:
    """A page's edges as rows, one per source (one, from the engine's EdgeList)."""
    if isinstance(edges, EdgeList):
        return [(job_uid, edges.source, edges.targets)] if edges.targets else []
    by_source: dict[str, list[str]] = {}
    for edge in edges:
        by_source.setdefault(edge.source, []).append(edge.target)
    return [(job_uid, source, tuple(targets)) for source, targets in by_source.items()]


def _statements(
    backend: Backend, pages: Sequence[PageRow], edges: Sequence[EdgeRow], batch: Batch
) -> list[database.Statement]:
    """A batch in frontier_store.py's order: admissions, attempts, origins, outcomes, done."""
    if backend == "sqlite":
        return [
            *sqlite_batch.urls(batch.urls),
            (frontier_store.SET_ATTEMPT, batch.attempts),
            (frontier_store.INSERT_ORIGIN, batch.origins),
            *sqlite_batch.values(INSERT_PAGE, pages),
            *sqlite_batch.edges(edges),
            *sqlite_batch.done(batch.done),
        ]
    return [
        (frontier_store.INSERT_URL, batch.urls),
        (frontier_store.SET_ATTEMPT, batch.attempts),
        (frontier_store.INSERT_ORIGIN, batch.origins),
        (INSERT_PAGE, pages),
        (PG_PAGE_EDGES, [(u, s, list(t)) for u, s, t in edges]),
        (frontier_store.MARK_DONE, batch.done),
    ]


@attrs.define
class CrawlStore:
    """The engine-facing store: one connection shared by every crawl."""

    db: database.Database
    url: str
    """The store URL as shown in a CrawlJob's status: redacted, never with a password."""
    backend: Backend
    """Which backend `db` is: the edges' statement is worded for it."""

    @classmethod
    def from_url(cls, url: str | StoreUrl) -> CrawlStore:
        """From a store URL; ValueError (the URL redacted) if it is neither backend's."""
        parsed = url if isinstance(url, StoreUrl) else StoreUrl.parse(url)
        return cls(
            db=database.for_url(parsed, what="crawl store", relaxed_sync=True),
            url=parsed.redacted,
            backend=parsed.backend,
        )

    async def open(self) -> None:
        """Connect and migrate now, so a misconfigured store shows at start-up in the log."""
        await self.db.open()

    async def write_batch(
        self, pages: Sequence[PageRow], edges: Sequence[EdgeRow], *, batch: Batch | None = None
    ) -> None:
        """One transaction for a batch of pages and edges (and their frontier rows, in the
        order frontier_store.py gives); replaying it changes nothing."""
        await self.db.write(_statements(self.backend, pages, edges, batch or Batch()))

    async def begin(
        self, job: JobRef, *, attempt: int, started: datetime.datetime
    ) -> frontier.Resumption | None:
        """Note this attempt; the stored frontier to resume from, if the job has one.

        Without one (a new job, or one killed before its first batch) the job's
        rows are cleared, so the crawl starts from scratch on a clean slate."""
        resumption = await frontier_store.load(self.db, job.uid)
        clear: list[database.Statement] = []
        if resumption is None:
            clear = [
                ("DELETE FROM crawl_pages WHERE job_uid = ?", [(job.uid,)]),
                ("DELETE FROM crawl_edges WHERE job_uid = ?", [(job.uid,)]),
                *frontier_store.clear(job.uid),
            ]
        await self.db.write(
            [
                *clear,
                (
                    "INSERT INTO crawl_jobs (job_uid, namespace, name, attempt, started_at, phase)"
                    " VALUES (?, ?, ?, ?, ?, 'Running') ON CONFLICT (job_uid) DO UPDATE SET"
                    " attempt = excluded.attempt, started_at = excluded.started_at,"
                    " finished_at = NULL, phase = 'Running', reason = NULL, stats_json = NULL",
                    [(job.uid, job.namespace, job.name, attempt, timestamps.format(started))],
                ),
            ]
        )
        return resumption

    async def attempts(self, job: JobRef) -> int:
        """Attempts the store has noted for `job` (0 if none), for runs with no status."""
        rows = await self.db.fetch("SELECT attempt FROM crawl_jobs WHERE job_uid = ?", (job.uid,))
        return int(rows[0][0]) if rows else 0

    def sink(self, job: JobRef) -> BatchingSink:
        """A sink for one crawl of `job`."""
        return BatchingSink(store=self, job_uid=job.uid)

    async def finish(self, job: JobRef, outcome: Outcome) -> StoredResults:
        """Note how the job ended; returns the row counts for its status."""
        stats = outcome.stats
        summary = None if stats is None else json.dumps(attrs.asdict(stats), sort_keys=True)
        await self.db.write(
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
        ((pages, edges),) = await self.db.fetch(
            "SELECT (SELECT COUNT(*) FROM crawl_pages WHERE job_uid = ?),"
            " (SELECT COUNT(*) FROM crawl_edges WHERE job_uid = ?)",
            (job.uid, job.uid),
        )
        return StoredResults(store=self.url, pages=int(pages), edges=int(edges))

    async def close(self) -> None:
        """Close the connection; the next use opens it again."""
        await self.db.close()


@attrs.define
class Batch:
    """The frontier rows of one batch, beside its pages and edges."""

    urls: list[frontier_store.UrlRow] = attrs.Factory(list)
    attempts: list[frontier_store.AttemptRow] = attrs.Factory(list)
    origins: list[frontier_store.OriginRow] = attrs.Factory(list)
    done: list[frontier_store.DoneRow] = attrs.Factory(list)

    def __len__(self) -> int:
        return len(self.urls) + len(self.attempts) + len(self.origins) + len(self.done)

    def extend(self, later: Batch) -> None:
        """Add `later`'s rows after these (a failed batch is kept, then what came since)."""
        self.urls.extend(later.urls)
        self.attempts.extend(later.attempts)
        self.origins.extend(later.origins)
        self.done.extend(later.done)


@attrs.define
class BatchingSink:
    """The engine's ResultSink and FrontierLog for one crawl: buffers rows, writes batches.

    A batch is due when BATCH_ROWS rows are buffered or the oldest has waited
    BATCH_SECONDS (checked as pages arrive). A due batch is written behind
    the crawl: one batch at a time, in order, while the pages go on
    arriving; the page that finds the previous batch still being written
    and twice BATCH_ROWS buffered waits for it, so a crawl cannot run far
    ahead of its store. (Waiting for every batch left the crawl idle while
    SQLite wrote: batches took 90 % of a benchmark crawl's time.)
    `flush` waits for the batch in flight and writes the rest.

    A batch that fails (or is cancelled mid-write) stays buffered ahead of
    what came since, so the next flush writes it again: replays are harmless,
    and a crawl stopped by Ctrl-C or SIGTERM can still flush it all. The
    failure of a batch written behind is raised to the next page or flush.
    """

    store: CrawlStore
    job_uid: str
    max_rows: int = BATCH_ROWS
    max_seconds: float = BATCH_SECONDS
    clock: Callable[[], float] = time.monotonic
    counted: Callable[[PageResult], None] = metrics.page_crawled
    """Accounts for each page in the operator's /metrics (the CLI, which serves no
    /metrics, passes `uncounted`: the counters cost a crawl about 2 % of its time)."""
    batches: int = 0
    """Batches written, for tests and logs."""
    _pages: list[PageRow] = attrs.Factory(list)
    _edges: list[EdgeRow] = attrs.Factory(list)
    _edge_count: int = 0
    _frontier: Batch = attrs.Factory(Batch)
    _since: float | None = None
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    _behind: asyncio.Task[None] | None = None
    _failure: StoreError | None = None

    @property
    def buffered(self) -> int:
        """Rows waiting to be written."""
        return len(self._pages) + self._edge_count + len(self._frontier)

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        """Buffer one outcome (its frontier row done with it); start a batch if one is due."""
        self._raise_failure()
        self.counted(result)
        self._pages.append(page_row(self.job_uid, result))
        self._frontier.done.append((self.job_uid, result.url))
        if edges:
            self._edges.extend(edge_rows(self.job_uid, edges))
            self._edge_count += len(edges)
        if self._since is None:
            self._since = self.clock()
        if self.buffered >= self.max_rows or self.clock() - self._since >= self.max_seconds:
            await self._write_behind()

    def admitted(self, url: str, *, depth: int, parent: str | None, ordinal: int) -> None:
        """Buffer a new frontier row (written with the next batch, before any outcome)."""
        row = frontier_store.admitted_row(
            self.job_uid, url, depth=depth, parent=parent, ordinal=ordinal
        )
        self._frontier.urls.append(row)

    def redirected(self, hops: Iterable[str]) -> None:
        """Buffer redirect hops, seen from now on."""
        self._frontier.urls.extend(frontier_store.alias_rows(self.job_uid, hops))

    def retrying(self, url: str, *, attempt: int) -> None:
        """Buffer a URL's next attempt number."""
        self._frontier.attempts.append((attempt, self.job_uid, url))

    def robots(self, record: frontier.RobotsRecord) -> None:
        """Buffer what robots.txt of an origin said."""
        self._frontier.origins.append(frontier_store.origin_row(self.job_uid, record))

    async def settle(self) -> None:
        """Wait for the batch being written behind, if any; raise its failure."""
        if self._behind is not None:
            await asyncio.wait([self._behind])
            self._behind = None
        self._raise_failure()

    async def flush(self) -> None:
        """Write everything buffered (after the batch in flight); kept if it fails."""
        await self.settle()
        await self._write(self._take())

    async def _write_behind(self) -> None:
        # A loop: another page may have started the next batch while this one waited.
        while self._behind is not None and not self._behind.done():
            if self.buffered < 2 * self.max_rows:
                return  # the store is busy: keep buffering for now
            await asyncio.wait([self._behind])
        self._behind = None
        self._raise_failure()
        self._behind = asyncio.create_task(self._write_quietly(self._take()))

    async def _write_quietly(self, taken: _Taken) -> None:
        try:
            await self._write(taken)
        except StoreError as e:
            self._failure = e

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _take(self) -> _Taken:
        """What is buffered now, as the next batch; the buffer starts anew."""
        taken = (self._pages, self._edges, self._frontier, self._edge_count)
        self._pages, self._edges, self._frontier, self._since = [], [], Batch(), None
        self._edge_count = 0
        return taken

    async def _write(self, taken: _Taken) -> None:
        """Write one batch as one transaction; on failure put it back in front of the buffer.

        Batches are taken one at a time (the next only once this one is over),
        so the store always gets them in the order the crawl made them."""
        pages, edges, batch, count = taken
        if not (pages or edges or batch):
            return
        async with self._lock:
            try:
                await self.store.write_batch(pages, edges, batch=batch)
            except BaseException:
                pages.extend(self._pages)
                edges.extend(self._edges)
                batch.extend(self._frontier)
                self._pages, self._edges, self._frontier = pages, edges, batch
                self._edge_count += count
                self._since = self.clock()
                raise
            self.batches += 1


_Taken = tuple[list[PageRow], list[EdgeRow], Batch, int]


def uncounted(result: PageResult) -> None:
    """A BatchingSink's `counted` for a process without /metrics."""


StoreMissingError = database.StoreMissingError


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

    rows: database.ReadRows

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str | StoreUrl) -> AsyncIterator[ResultsReader]:
        """Open read-only; StoreMissingError if the store or its tables are not there.

        ValueError (the URL redacted) if `url` is neither backend's."""
        parsed = url if isinstance(url, StoreUrl) else StoreUrl.parse(url)
        async with database.read_only(parsed) as rows:
            try:
                await rows.fetch("SELECT 1 FROM crawl_jobs LIMIT 1")
            except StoreError as e:
                raise StoreMissingError(f"{rows.where} holds no crawl results ({e})") from e
            yield cls(rows)

    async def job(self, uid: str) -> JobRecord | None:
        """The job with this UID, if it ever started."""
        rows = await self._jobs("WHERE job_uid = ?", (uid,))
        return rows[0] if rows else None

    async def jobs_named(self, namespace: str, name: str) -> list[JobRecord]:
        """Every stored job of this name (a name is reused when a job is recreated)."""
        return await self._jobs(
            "WHERE namespace = ? AND name = ? ORDER BY started_at", (namespace, name)
        )

    async def _jobs(self, where: str, args: tuple[str, ...]) -> list[JobRecord]:
        rows = await self.rows.fetch(
            "SELECT job_uid, namespace, name, attempt, started_at, finished_at, phase, reason"
            f" FROM crawl_jobs {where}",
            args,
        )
        return [JobRecord(*row) for row in rows]

    async def pages(self, uid: str) -> AsyncIterator[PageResult]:
        """The job's page outcomes, in the order they were recorded."""
        rows = self.rows.iterate(
            f"SELECT {PAGE_COLUMNS} FROM crawl_pages WHERE job_uid = ? ORDER BY {self.rows.order}",
            (uid,),
        )
        async for row in rows:
            yield _page(row)

    async def _pages_with_targets(
        self, uid: str
    ) -> AsyncIterator[tuple[PageResult, tuple[str, ...] | None]]:
        """Each page, with its final URL's link targets where the backend can say them
        in the same row (None: ask `targets`).

        On PostgreSQL every query is a round trip, so one streamed query carries
        each page's targets as an array (7k -> 59k pages/s exported on loopback);
        on SQLite a query is a function call, and one per page is as fast."""
        if self.rows.backend != "postgresql":
            async for page in self.pages(uid):
                yield page, None
            return
        columns = ", ".join(f"p.{c}" for c in PAGE_COLUMNS.split(", "))
        rows = self.rows.iterate(
            f"SELECT {columns}, CASE WHEN p.links > 0 THEN ARRAY(SELECT e.target"
            " FROM crawl_edges e WHERE e.job_uid = p.job_uid AND e.source = p.final_url"
            " ORDER BY e.seq) END FROM crawl_pages p WHERE p.job_uid = ? ORDER BY p.seq",
            (uid,),
        )
        async for row in rows:
            yield _page(row[:-1]), tuple(row[-1] or ())

    async def targets(self, uid: str, source: str) -> tuple[str, ...]:
        """A page's link targets, in document order."""
        rows = await self.rows.fetch(
            "SELECT target FROM crawl_edges WHERE job_uid = ? AND source = ?"
            f" ORDER BY {self.rows.order}",
            (uid, source),
        )
        return tuple(row[0] for row in rows)

    async def export(self, uid: str, writer: export.Writer) -> int:
        """Feed the job's pages and edges to `writer` (not closed); returns the pages written."""
        exported: set[str] = set()
        count = 0
        async for page, found in self._pages_with_targets(uid):
            targets: tuple[str, ...] = ()
            # A page redirected to an already-crawled URL shares its final_url but has no links.
            if page.links and page.final_url not in exported:
                exported.add(page.final_url)
                targets = found if found is not None else await self.targets(uid, page.final_url)
            writer.write(page, EdgeList(page.final_url, targets))
            count += 1
        return count


PAGE_COLUMNS = (
    "url, final_url, depth, status, error, message, content_type, bytes, links, attempts, elapsed"
)


def _page(row: Sequence[Any]) -> PageResult:
    """A PageResult from PAGE_COLUMNS."""
    url, final_url, depth, status, error, message, ctype, size, links, attempts, elapsed = row
    return PageResult(
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
        elapsed=elapsed,
    )
