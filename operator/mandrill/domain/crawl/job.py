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
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

from mandrill.domain.crawl import frontier, ports
from mandrill.domain.crawl import status as crawl_status
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress

PROGRESS_INTERVAL = 2.0
"""Seconds between progress writes to status, at most one per interval."""


class Phase(enum.StrEnum):
    """A CrawlJob's phase, as in status.phase."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


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

    @classmethod
    def resumed(
        cls, resumption: frontier.Resumption, *, clock: Callable[[], datetime.datetime] = utc_now
    ) -> Tally:
        """The counters where a stored crawl stopped: a resumed run continues them."""
        counts = resumption.counts
        return cls(
            pages_ok=counts.pages_ok,
            pages_failed=sum(counts.failures.values()),
            links=counts.edges,
            bytes=counts.bytes,
            errors=collections.Counter(counts.failures),
            progress=Progress(
                done=counts.outcomes,
                scheduled=resumption.admitted + resumption.rejected,
                failed=sum(counts.failures.values()),
                elapsed=0.0,
            ),
            clock=clock,
        )


@attrs.frozen
class StoredResults:
    """Where a job's results are, and how many rows they are."""

    store: str
    """The store URL."""
    pages: int
    edges: int


@attrs.frozen
class Outcome:
    """How an attempt ended; `status.final` turns it into the last status patch."""

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


class SeedSource(Protocol):
    """Reads urlsFrom."""

    async def read(self, *, namespace: str, config_map: str, key: str) -> str:
        """The key's text; PermanentError (ConfigMapNotFound, KeyNotFound) if absent."""
        ...


class BatchSink(ports.ResultSink, frontier.FrontierLog, Protocol):
    """A ResultSink that buffers, the crawl's frontier with it; `flush` writes what is buffered."""

    async def flush(self) -> None:
        """Write everything recorded so far; StoreError if the store refuses."""
        ...


class JobStore(Protocol):
    """Where a job's pages and edges go."""

    async def begin(
        self, job: JobRef, *, attempt: int, started: datetime.datetime
    ) -> frontier.Resumption | None:
        """Note this attempt; the stored crawl to resume, or None (then any earlier rows
        are forgotten and the crawl starts from scratch). StoreError on failure."""
        ...

    def sink(self, job: JobRef) -> BatchSink:
        """A sink writing this job's results in batches."""
        ...

    async def finish(self, job: JobRef, outcome: Outcome) -> StoredResults:
        """Note how the job ended; StoreError on failure."""
        ...


class JobReporter(Protocol):
    """Status and Events of one CrawlJob. PermanentError("Gone") if it was deleted."""

    async def started(
        self,
        *,
        attempt: int,
        seeds: int,
        started: datetime.datetime,
        resumed: Tally | None = None,
    ) -> None:
        """Running: the crawl begins, or resumes from the counters in `resumed`."""
        ...

    async def progress(self, status: crawl_status.CrawlJobStatus) -> None:
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
