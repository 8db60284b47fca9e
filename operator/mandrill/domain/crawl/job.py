"""A CrawlJob as values, and what one run of it is given and gives back.

Which job (JobRef), its phase, the tally kept as pages come in, how an attempt
ended (Outcome) and the status patches made of them; the ports a run uses
(seed source, store, reporter, fetcher factory) as a Context. No Kubernetes
types: the handler and the adapters translate. The run itself is `job_run`.
"""

from __future__ import annotations

import collections
import datetime
import enum
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs

from mandrill.domain import conditions, timestamps
from mandrill.domain.crawl import ports
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress

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
                "updatedAt": timestamps.format(self.clock()),
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
        "finishedAt": timestamps.format(outcome.finished),
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
    # A run starts with no conditions (CrawlJobStatus.started clears them), so
    # both are set once, at the end, as a Job's Complete and Failed are.
    made: list[conditions.Condition] = []
    for kind, holds in (("Complete", succeeded), ("Failed", not succeeded)):
        made = conditions.set_condition(
            made,
            type=kind,
            status=holds,
            reason=outcome.reason,
            message=outcome.message,
            generation=job.generation,
            now=outcome.finished,
        )
    status["conditions"] = made
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
