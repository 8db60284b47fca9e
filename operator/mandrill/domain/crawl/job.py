"""One CrawlJob's run: seeds, the crawl, a running tally, and one outcome.

No Kubernetes types: the handler passes the spec as a plain mapping and the
ports (seed source, store, reporter, fetcher factory) as a Context.

An attempt always starts from scratch. The engine's state (frontier, seen
set, robots.txt policies, retry timers) lives in memory, and rebuilding it
from stored rows would not give the crawl a single run gives (the maxPages
budget and the frontier depend on the order pages came in). Crawls are
bounded GETs, so fetching again is cheap and harmless; clearing the job's
rows when an attempt begins, and writing with idempotent inserts, means the
store and the status always describe exactly one complete run.

What the schema cannot check (a ConfigMap that is missing, a key without a
valid URL, a regular expression Python rejects) ends the job Failed with a
one-line reason: retrying would meet the same problem.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs

from mandrill.domain.crawl import engine, ports, urls
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress
from mandrill.domain.errors import PermanentError, StoreError

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 2.0
"""Seconds between progress writes to status, at most one per interval."""


class Phase(enum.StrEnum):
    """A CrawlJob's phase, as in status.phase."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINISHED = frozenset({Phase.SUCCEEDED, Phase.FAILED})


def is_finished(status: Mapping[str, Any]) -> bool:
    """A finished job is never crawled again, not even after an operator restart."""
    return status.get("phase") in FINISHED


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, to the second, as Kubernetes writes times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> datetime.datetime:
    """The wall clock, for timestamps."""
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen
class JobRef:
    """Which CrawlJob: enough to find it again and to key its results."""

    namespace: str
    name: str
    uid: str
    """The store's key: a recreated job of the same name is another job."""
    generation: int = 1

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_url_list(text: str) -> list[str]:
    """The URLs of a urls.txt: one a line; blanks, # comments and non-http(s) lines skipped."""
    found: list[str] = []
    for line in text.splitlines():
        candidate = line.strip()
        if candidate and not candidate.startswith("#") and urls.canonicalize(candidate):
            found.append(candidate)
    return found


NO_PROGRESS = Progress(done=0, scheduled=0, failed=0, elapsed=0.0)


@attrs.define
class Tally:
    """Counters kept as pages come in, so progress never has to ask the store."""

    pages_ok: int = 0
    pages_failed: int = 0
    links: int = 0
    bytes: int = 0
    errors: collections.Counter[str] = attrs.Factory(collections.Counter)
    progress: Progress = NO_PROGRESS
    clock: Callable[[], datetime.datetime] = utc_now

    def add(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        """Count one URL's outcome."""
        if result.error is None:
            self.pages_ok += 1
        else:
            self.pages_failed += 1
            self.errors[result.error.value] += 1
        self.links += len(edges)
        self.bytes += result.size
        self.progress = progress

    def status(self) -> dict[str, Any]:
        """Counters and progress, as a status patch."""
        return {
            "pagesFetched": self.pages_ok,
            "pagesFailed": self.pages_failed,
            "linksFound": self.links,
            "bytes": self.bytes,
            "errorsByKind": dict(self.errors),
            "progress": {
                "done": self.progress.done,
                "scheduled": self.progress.scheduled,
                "elapsedSeconds": int(self.progress.elapsed),
                "updatedAt": timestamp(self.clock()),
            },
        }


@attrs.frozen
class StoredResults:
    """Where a job's results are, and how many rows they are."""

    store: str
    """The store URL."""
    pages: int
    edges: int


@attrs.frozen
class Outcome:
    """How an attempt ended; `final_status` turns it into the last status patch."""

    phase: Phase
    reason: str
    """CamelCase: Completed, TotalTimeout, ConfigMapNotFound, StoreError, ..."""
    message: str
    started: datetime.datetime
    finished: datetime.datetime
    seeds: int = 0
    stats: CrawlStats | None = None
    """None when the crawl never ran to its end."""
    tally: Tally | None = None
    """What was counted before the end; None when the crawl never started."""
    results: StoredResults | None = None


def final_status(outcome: Outcome, *, job: JobRef) -> dict[str, Any]:
    """The finishing status patch: phase, counters, errors by kind, results, conditions."""
    status: dict[str, Any] = {
        "phase": str(outcome.phase),
        "reason": outcome.reason,
        "message": outcome.message,
        "observedGeneration": job.generation,
        "finishedAt": timestamp(outcome.finished),
        "seeds": outcome.seeds,
    }
    if outcome.tally is not None:
        status.update(outcome.tally.status())
    stats = outcome.stats
    if stats is not None:
        # The engine's numbers are authoritative where the tally could only approximate.
        status.update(
            pagesFetched=stats.pages_ok,
            pagesFailed=stats.pages_failed,
            linksFound=stats.edges,
            uniqueLinks=stats.unique_urls,
            bytes=stats.bytes,
            errorsByKind=dict(stats.failures),
        )
    if outcome.results is not None:
        status["results"] = {
            "store": outcome.results.store,
            "jobUID": job.uid,
            "pages": outcome.results.pages,
            "edges": outcome.results.edges,
            "export": f"mandrill results {job} --store-url {outcome.results.store}",
        }
    succeeded = outcome.phase is Phase.SUCCEEDED
    when = timestamp(outcome.finished)
    status["conditions"] = [
        {
            "type": kind,
            "status": "True" if holds else "False",
            "reason": outcome.reason,
            "message": outcome.message,
            "observedGeneration": job.generation,
            "lastTransitionTime": when,
        }
        for kind, holds in (("Complete", succeeded), ("Failed", not succeeded))
    ]
    return status


class SeedSource(Protocol):
    """Reads urlsFrom."""

    async def read(self, *, namespace: str, config_map: str, key: str) -> str:
        """The key's text; PermanentError (ConfigMapNotFound, KeyNotFound) if absent."""
        ...


class BatchSink(ports.ResultSink, Protocol):
    """A ResultSink that buffers; `flush` writes what is buffered."""

    async def flush(self) -> None:
        """Write everything recorded so far; StoreError if the store refuses."""
        ...


class JobStore(Protocol):
    """Where a job's pages and edges go."""

    async def begin(self, job: JobRef, *, attempt: int, started: datetime.datetime) -> None:
        """Forget any earlier attempt's rows and note this one; StoreError on failure."""
        ...

    def sink(self, job: JobRef) -> BatchSink:
        """A sink writing this job's results in batches."""
        ...

    async def finish(self, job: JobRef, outcome: Outcome) -> StoredResults:
        """Note how the job ended; StoreError on failure."""
        ...


class JobReporter(Protocol):
    """Status and Events of one CrawlJob. PermanentError("Gone") if it was deleted."""

    async def started(self, *, attempt: int, seeds: int, started: datetime.datetime) -> None:
        """Running: the crawl begins."""
        ...

    async def progress(self, status: Mapping[str, Any]) -> None:
        """A progress patch (already rate limited by the caller)."""
        ...

    async def finished(self, outcome: Outcome) -> None:
        """The final status and its Event."""
        ...


FetcherFactory = Callable[[CrawlSpec], AbstractAsyncContextManager[ports.Fetcher]]


@attrs.frozen
class Context:
    """The ports one run uses."""

    seeds: SeedSource
    store: JobStore
    reporter: JobReporter
    open_fetcher: FetcherFactory
    """One fetcher (one HTTP session) per crawl, closed when the crawl ends."""
    progress_interval: float = PROGRESS_INTERVAL
    clock: Callable[[], datetime.datetime] = utc_now


@attrs.define
class ProgressPublisher:
    """Coalesces progress into at most one write per `interval`, off the crawl's path.

    `touch` is called for every page and only marks progress dirty; one task
    at a time waits out the interval and sends the latest snapshot. So a
    10 000-page crawl costs a status write every couple of seconds, and a slow
    API server never slows the crawl. Writes are best effort: the final status
    carries everything.
    """

    snapshot: Callable[[], Mapping[str, Any]]
    send: Callable[[Mapping[str, Any]], Awaitable[None]]
    interval: float = PROGRESS_INTERVAL
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _dirty: bool = False
    _sent_at: float | None = None
    _task: asyncio.Task[None] | None = None

    def touch(self) -> None:
        """Progress changed; a write follows within `interval`."""
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        if self._sent_at is not None:
            wait = self._sent_at + self.interval - self.clock()
            if wait > 0:
                await self.sleep(wait)
        if not self._dirty:
            return
        self._dirty = False
        self._sent_at = self.clock()
        try:
            await self.send(self.snapshot())
        except Exception as e:  # best effort: a missed progress write is not worth a crawl
            log.warning("progress not written: %s", e)

    async def close(self) -> None:
        """Drop any pending write (the final status follows); waits for the task to end."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])


@attrs.define
class _Recorder:
    """The engine's sink for a job: the store's sink, the tally, and progress."""

    sink: BatchSink
    tally: Tally
    publisher: ProgressPublisher

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        await self.sink.record(result, edges, progress)
        self.tally.add(result, edges, progress)
        self.publisher.touch()


async def resolve_spec(job: JobRef, raw_spec: Mapping[str, Any], *, seeds: SeedSource) -> CrawlSpec:
    """The CrawlSpec, seeds read from urlsFrom if given; PermanentError when it cannot be."""
    seed_list: list[str] | None = None
    source = raw_spec.get("urlsFrom")
    if source is not None:
        config_map, key = str(source["configMapName"]), str(source["key"])
        text = await seeds.read(namespace=job.namespace, config_map=config_map, key=key)
        seed_list = parse_url_list(text)
        if not seed_list:
            raise PermanentError(
                "NoValidURLs", f"ConfigMap {config_map} key {key} holds no http(s) URL"
            )
    try:
        return CrawlSpec.from_spec(raw_spec, seeds=seed_list)
    except ValueError as e:
        raise PermanentError("InvalidSpec", str(e)) from e


async def run(job: JobRef, *, raw_spec: Mapping[str, Any], attempt: int, ctx: Context) -> Outcome:
    """Run one attempt of `job` to its outcome, which is also reported.

    Raises only what the handler must map: TransientError (try again later),
    PermanentError("Gone") from the reporter when the job was deleted, and
    CancelledError when the operator stops the crawl.
    """
    started = ctx.clock()
    try:
        spec = await resolve_spec(job, raw_spec, seeds=ctx.seeds)
    except PermanentError as e:
        return await _report(
            ctx,
            Outcome(
                phase=Phase.FAILED,
                reason=e.reason,
                message=e.message,
                started=started,
                finished=ctx.clock(),
            ),
        )
    tally = Tally(clock=ctx.clock)
    try:
        await ctx.store.begin(job, attempt=attempt, started=started)
        await ctx.reporter.started(attempt=attempt, seeds=len(spec.seeds), started=started)
        try:
            stats = await _crawl(job, spec, tally=tally, ctx=ctx)
        except asyncio.CancelledError:
            await _record_interruption(ctx, tally)
            raise
        outcome = _completed(spec, stats, tally=tally, started=started, finished=ctx.clock())
        results = await ctx.store.finish(job, outcome)
    except StoreError as e:
        return await _report(
            ctx,
            Outcome(
                phase=Phase.FAILED,
                reason="StoreError",
                message=f"results could not be stored: {e}",
                started=started,
                finished=ctx.clock(),
                seeds=len(spec.seeds),
                tally=tally,
            ),
        )
    return await _report(ctx, attrs.evolve(outcome, results=results))


async def _record_interruption(ctx: Context, tally: Tally) -> None:
    """The operator is stopping this crawl: leave its progress in status, saying what next.

    Best effort and bounded (the process is on its way out); the job stays
    unfinished, so the next operator instance crawls it again from scratch."""
    status = {
        **tally.status(),
        "message": "interrupted by an operator shutdown at the counts shown; "
        "the next operator instance crawls it again from scratch",
    }
    with contextlib.suppress(Exception):
        async with asyncio.timeout(3):
            await ctx.reporter.progress(status)


async def _crawl(job: JobRef, spec: CrawlSpec, *, tally: Tally, ctx: Context) -> CrawlStats:
    sink = ctx.store.sink(job)
    publisher = ProgressPublisher(
        snapshot=tally.status, send=ctx.reporter.progress, interval=ctx.progress_interval
    )
    recorder = _Recorder(sink=sink, tally=tally, publisher=publisher)
    failure: StoreError | None = None
    try:
        async with ctx.open_fetcher(spec) as fetcher:
            stats = await engine.crawl(spec, fetcher=fetcher, sink=recorder)
        await sink.flush()
    except* StoreError as group:
        # The engine's TaskGroup wraps what a worker raised; one store failure is enough to say.
        failure = _first(group)
    finally:
        await publisher.close()
    if failure is not None:
        raise failure
    return stats


def _first(group: BaseExceptionGroup[StoreError]) -> StoreError:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, StoreError)
    return leaf


def _completed(
    spec: CrawlSpec,
    stats: CrawlStats,
    *,
    tally: Tally,
    started: datetime.datetime,
    finished: datetime.datetime,
) -> Outcome:
    summary = (
        f"{stats.pages_ok} pages fetched, {stats.pages_failed} failed, {stats.edges} links, "
        f"{stats.unique_urls} unique URLs in {stats.elapsed:.1f}s"
    )
    if stats.timed_out:
        reason, message = "TotalTimeout", f"stopped by totalTimeoutSeconds: {summary}"
    else:
        reason, message = "Completed", summary
    return Outcome(
        phase=Phase.SUCCEEDED,
        reason=reason,
        message=message,
        started=started,
        finished=finished,
        seeds=len(spec.seeds),
        stats=stats,
        tally=tally,
    )


async def _report(ctx: Context, outcome: Outcome) -> Outcome:
    await ctx.reporter.finished(outcome)
    return outcome
