"""One CrawlJob's run: seeds, the crawl, a running tally, and one outcome.

No Kubernetes types: the handler passes the spec as a plain mapping and the
ports (seed source, store, reporter, fetcher factory) as a `job.Context`.

An attempt resumes where the last one's store left off. The engine tells
the store's sink, in the same batches as the outcomes, what a resumption
needs (admitted URLs with depth and parent, redirect hops, retries,
robots.txt: see `frontier`); when an attempt begins the store hands back
that frontier, and the crawl continues from it: no URL with a stored outcome
is fetched again, the counters and the maxPages budget carry on, and the
status and an Event say it resumed. A job with no stored frontier (new, or
killed before its first batch) starts from scratch on cleared rows.

What the schema cannot check (a ConfigMap that is missing, a key without a
valid URL, a regular expression Python rejects) ends the job Failed with a
one-line reason: retrying would meet the same problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from mandrill.domain.crawl import engine, frontier, urls
from mandrill.domain.crawl import status as crawl_status
from mandrill.domain.crawl.job import (
    PROGRESS_INTERVAL,
    BatchSink,
    Context,
    JobRef,
    Outcome,
    Phase,
    SeedSource,
    Tally,
)
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress
from mandrill.domain.errors import PermanentError, StoreError

log = logging.getLogger(__name__)


def parse_url_list(text: str) -> list[str]:
    """The URLs of a urls.txt: one a line; blanks, # comments and non-http(s) lines skipped."""
    found: list[str] = []
    for line in text.splitlines():
        candidate = line.strip()
        if candidate and not candidate.startswith("#") and urls.canonicalize(candidate):
            found.append(candidate)
    return found


@attrs.define
class ProgressPublisher:
    """Coalesces progress into at most one write per `interval`, off the crawl's path.

    `touch` is called for every page and only marks progress dirty; one task
    at a time waits out the interval and sends the latest snapshot. So a
    10 000-page crawl costs a status write every couple of seconds, and a slow
    API server never slows the crawl. Writes are best effort: the final status
    carries everything.
    """

    snapshot: Callable[[], crawl_status.CrawlJobStatus]
    send: Callable[[crawl_status.CrawlJobStatus], Awaitable[None]]
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
        resumption = await ctx.store.begin(job, attempt=attempt, started=started)
        if resumption is not None:
            tally = Tally.resumed(resumption, clock=ctx.clock)
        await ctx.reporter.started(
            attempt=attempt,
            seeds=len(spec.seeds),
            started=started,
            resumed=tally if resumption is not None else None,
        )
        try:
            stats = await _crawl(job, spec, tally=tally, ctx=ctx, resume=resumption)
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
    unfinished, so the next operator instance resumes it."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(3):
            await ctx.reporter.progress(crawl_status.interrupted(tally))


async def _crawl(
    job: JobRef,
    spec: CrawlSpec,
    *,
    tally: Tally,
    ctx: Context,
    resume: frontier.Resumption | None,
) -> CrawlStats:
    sink = ctx.store.sink(job)
    publisher = ProgressPublisher(
        snapshot=lambda: crawl_status.counters(tally),
        send=ctx.reporter.progress,
        interval=ctx.progress_interval,
    )
    recorder = _Recorder(sink=sink, tally=tally, publisher=publisher)
    failure: StoreError | None = None
    try:
        try:
            async with ctx.open_fetcher(spec) as fetcher:
                stats = await engine.crawl(
                    spec, fetcher=fetcher, sink=recorder, log=sink, resume=resume
                )
        except asyncio.CancelledError:
            await _flush_on_the_way_out(sink)
            raise
        await sink.flush()
    except* StoreError as group:
        # The engine's TaskGroup wraps what a worker raised; one store failure is enough to say.
        failure = _first(group)
    finally:
        await publisher.close()
    if failure is not None:
        raise failure
    return stats


async def _flush_on_the_way_out(sink: BatchSink) -> None:
    """The crawl is being stopped: write what is buffered, so the next attempt redoes less.

    Best effort and bounded, like the last progress write; whatever is not
    written is simply pending again for the next attempt."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(3):
            await sink.flush()


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
