"""One CrawlJob run by worker pods: make sure its Job exists, watch it, end it.

The operator crawls nothing itself here. It checks what the workers need
(PostgreSQL: a SQLite file cannot be shared by pods), notes the attempt in
the store (`begin`, before any worker exists, so no worker's seeding can race
with it), creates the Job, and then every `interval` reads the Job's status
and the store's counts into the CrawlJob's status, until `decide` says the
crawl ended. The end goes to the store (`finish`) and the status, with an
Event, like a single-process crawl's.

Level-triggered: a later run (the operator restarted, a standby took over)
finds the Job by name and carries on watching it; a Job someone deleted
while the crawl was unfinished is created again, and its workers carry on
from the shared frontier. Deleting the Job when the CrawlJob goes is the
handler's business (it knows why the run stopped).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs

from mandrill.domain import timestamps
from mandrill.domain.crawl import job_run, worker_status, workers
from mandrill.domain.crawl.job import JobRef, JobStore, Outcome, Phase, SeedSource, utc_now
from mandrill.domain.crawl.worker_status import JobState, StoreProgress, Verdict
from mandrill.domain.errors import PermanentError, StoreError, TransientError
from mandrill.domain.events import EventType

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 5.0
"""Seconds between looks at the Job and the store (MANDRILL_WORKER_PROGRESS_INTERVAL)."""
HEARTBEAT_LOOKS = 6
"""A look that changed nothing is not written, but at least every this many looks is,
so progress.updatedAt shows that the operator is still watching."""


class WorkerJobs(Protocol):
    """The worker Jobs in the operator's namespace."""

    async def get(self, job: JobRef) -> JobState | None:
        """The Job's state; None if there is none."""
        ...

    async def create(self, manifest: Mapping[str, Any]) -> None:
        """Create it; one that already exists counts as created."""
        ...


class ProgressSource(Protocol):
    async def read(self, job: JobRef) -> StoreProgress:
        """The job's rows, counted; StoreError if the store cannot say."""
        ...

    async def unique_urls(self, job: JobRef) -> int:
        """Distinct URLs the crawl met (status.uniqueLinks, at the end); StoreError."""
        ...


class WorkerReporter(Protocol):
    """Status and Events of one CrawlJob. PermanentError("Gone") if it was deleted."""

    async def patch(self, status: Mapping[str, Any]) -> None: ...

    def event(self, type: EventType, reason: str, message: str) -> None: ...


@attrs.frozen
class Context:
    """The ports of one run, and what the operator's configuration says."""

    seeds: SeedSource
    store: JobStore
    jobs: WorkerJobs
    progress: ProgressSource
    reporter: WorkerReporter
    settings: Callable[[], Awaitable[workers.WorkerSettings]]
    """The Job's settings; PermanentError if they cannot be had (no image known)."""
    shared_store: bool
    """The store is PostgreSQL, which pods can share; SQLite is a file of the operator's."""
    interval: float = PROGRESS_INTERVAL
    clock: Callable[[], datetime.datetime] = utc_now
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


async def run(
    job: JobRef, *, raw_spec: Mapping[str, Any], status: Mapping[str, Any], ctx: Context
) -> Outcome:
    """Run `job` on workers until they end; returns (and reports) the outcome.

    Raises only PermanentError("Gone") (the CrawlJob was deleted) and
    CancelledError (the handler stops the run)."""
    count = workers.requested_workers(raw_spec)
    now = ctx.clock()
    if not ctx.shared_store:
        return await _fail(
            ctx,
            job,
            count=count,
            reason="WorkersNeedPostgreSQL",
            message=f"spec.workers is {count}: workers share their frontier in PostgreSQL, "
            "but the operator's store is SQLite; set MANDRILL_STORE_URL to a postgresql:// URL "
            "or use workers: 1",
            started=now,
            status=status,
        )
    try:
        spec = await job_run.resolve_spec(job, raw_spec, seeds=ctx.seeds)
        settings = await ctx.settings()
    except PermanentError as e:
        return await _fail(
            ctx, job, count=count, reason=e.reason, message=e.message, started=now, status=status
        )
    name = f"{settings.namespace}/{workers.job_name(job)}"
    started = worker_status.started_at(status, default=now)
    first = status.get("workers") is None

    def manifest() -> dict[str, Any]:
        """The Job, its deadline what the total timeout leaves now (a Job made again
        mid-crawl gets less)."""
        elapsed = max(0.0, (ctx.clock() - started).total_seconds())
        return workers.job_manifest(
            job,
            spec=workers.worker_spec(raw_spec, seeds=spec.seeds),
            workers=count,
            settings=settings,
            time_left=None if spec.total_timeout is None else spec.total_timeout - elapsed,
        )

    written: Mapping[str, Any] | None = None
    looks = 0
    while True:
        try:
            state = await ctx.jobs.get(job)
            if state is None:
                await _create(
                    ctx,
                    job,
                    manifest(),
                    first=first,
                    name=name,
                    count=count,
                    started=started,
                    status=status,
                )
                first = False
                state = await ctx.jobs.get(job)
            progress = await ctx.progress.read(job)
        except PermanentError as e:
            if e.reason == "Gone":
                raise
            # The API refused the Job (Forbidden, invalid): trying again would meet the same.
            return await _fail(
                ctx, job, count=count, reason=e.reason, message=f"the worker Job: {e.message}",
                started=now, status=status,
            )  # fmt: skip
        except StoreError as e:
            if first:  # the attempt could not begin: as a single-process crawl would end
                return await _fail(
                    ctx,
                    job,
                    count=count,
                    reason="StoreError",
                    message=f"the workers could not be started: {e}",
                    started=now,
                    status=status,
                )
            log.warning(
                "worker progress of %s not read (%s); again in %.0f s", job, e, ctx.interval
            )
            await ctx.sleep(ctx.interval)
            continue
        except TransientError as e:
            if first:
                raise  # the handler tries again later; nothing was begun twice
            log.warning("worker Job of %s not read (%s); again in %.0f s", job, e, ctx.interval)
            await ctx.sleep(ctx.interval)
            continue
        now = ctx.clock()
        elapsed = max(0.0, (now - started).total_seconds())
        verdict = worker_status.decide(
            state or JobState(desired=count),
            progress,
            max_pages=spec.max_pages,
            total_timeout=spec.total_timeout,
            elapsed=elapsed,
        )
        seen = worker_status.workers(state, job=name, desired=count)
        if verdict.phase is not Phase.RUNNING:
            return await _end(ctx, job, verdict, progress, seen, seeds=len(spec.seeds),
                              started=started, status=status)  # fmt: skip
        patch = worker_status.running(
            verdict, progress, workers_status=seen, elapsed=elapsed, now=now, job=job
        )
        looks += 1
        if written is None or _news(patch, written) or looks >= HEARTBEAT_LOOKS:
            await _best_effort(ctx.reporter.patch(patch))
            written, looks = patch, 0
        await ctx.sleep(ctx.interval)


def _news(patch: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    """Whether a progress patch says more than the last one written: the clock aside."""

    def sans_clock(p: Mapping[str, Any]) -> dict[str, Any]:
        progress = {k: v for k, v in (p.get("progress") or {}).items()
                    if k not in ("elapsedSeconds", "updatedAt")}  # fmt: skip
        return {**p, "progress": progress}

    return sans_clock(patch) != sans_clock(written)


async def _create(
    ctx: Context,
    job: JobRef,
    manifest: Mapping[str, Any],
    *,
    first: bool,
    name: str,
    count: int,
    started: datetime.datetime,
    status: Mapping[str, Any],
) -> None:
    """Note the attempt in the store (the first time only), then create the Job."""
    attempt = int(status.get("attempts") or 0) + (1 if first else 0)
    if first:
        await ctx.store.begin(job, attempt=attempt, started=started)
        await ctx.reporter.patch(
            {
                "phase": str(Phase.RUNNING),
                "reason": "WorkersStarting",
                "message": f"starting {count} workers as Job {name}",
                "attempts": attempt,
                "startedAt": timestamps.format(started),
                "finishedAt": None,
                "results": None,
                "conditions": None,
                "observedGeneration": job.generation,
                "workers": worker_status.workers(None, job=name, desired=count),
            }
        )
    await ctx.jobs.create(manifest)
    if first:
        ctx.reporter.event("Normal", "WorkersStarted", f"{count} workers started as Job {name}")
    else:
        ctx.reporter.event(
            "Warning",
            "WorkersRecreated",
            f"Job {name} was gone before the crawl finished; created again "
            "(the workers carry on from the shared frontier)",
        )


async def _end(
    ctx: Context,
    job: JobRef,
    verdict: Verdict,
    progress: StoreProgress,
    seen: worker_status.WorkersStatus,
    *,
    seeds: int,
    started: datetime.datetime,
    status: Mapping[str, Any],
) -> Outcome:
    now = ctx.clock()
    ended = worker_status.outcome(verdict, progress, seeds=seeds, started=started, now=now)
    try:
        results = await ctx.store.finish(job, ended)
    except StoreError as e:
        log.warning("the end of %s not noted in the store: %s", job, e)
    else:
        ended = attrs.evolve(ended, results=results)
    try:
        unique: int | None = await ctx.progress.unique_urls(job)
    except StoreError as e:
        log.warning("the unique URLs of %s not counted: %s", job, e)
        unique = None
    await _report(ctx, job, ended, seen, status, unique_urls=unique)
    return ended


async def _fail(
    ctx: Context,
    job: JobRef,
    *,
    count: int,
    reason: str,
    message: str,
    started: datetime.datetime,
    status: Mapping[str, Any],
) -> Outcome:
    """Failed before any worker ran: nothing in the store to note."""
    ended = Outcome(
        phase=Phase.FAILED, reason=reason, message=message, started=started, finished=ctx.clock()
    )
    seen = worker_status.workers(None, job="", desired=count)
    await _report(ctx, job, ended, seen, status)
    return ended


async def _report(
    ctx: Context,
    job: JobRef,
    ended: Outcome,
    seen: worker_status.WorkersStatus,
    status: Mapping[str, Any],
    *,
    unique_urls: int | None = None,
) -> None:
    """The final patch, then its Event. Shielded: the patch makes the job finished, and
    kopf may stop the handler on seeing it before the response is in."""

    async def report() -> None:
        await ctx.reporter.patch(
            worker_status.final(
                ended, workers_status=seen, job=job, previous=status, unique_urls=unique_urls
            )
        )
        if ended.phase is Phase.SUCCEEDED:
            ctx.reporter.event("Normal", "Succeeded", f"{ended.reason}: {ended.message}")
        else:
            ctx.reporter.event("Warning", "Failed", f"{ended.reason}: {ended.message}")

    await asyncio.shield(asyncio.ensure_future(report()))


async def _best_effort(write: Awaitable[None]) -> None:
    """A progress patch: a missed one is not worth the run (the final one carries all),
    but a CrawlJob that is gone ends it."""
    try:
        await write
    except PermanentError as e:
        if e.reason == "Gone":
            raise
        log.warning("worker progress not written: %s", e)
    except TransientError as e:
        log.warning("worker progress not written: %s", e)
