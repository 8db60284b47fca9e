"""The store behind the same fence as the API: a deposed leader writes no row either.

The services' ApiClient asks the elector before each write (adapters.kube.
fence); these wrappers make the journal and the crawl store ask it too, at
the same last moment, through their domain ports. The journal's writes are
idempotent and first-wins, so a late one from a deposed leader would be
harmless; the crawl store's are not: a new leader starts a crawl afresh by
deleting the job's rows, and a batch the old leader still held would be
mixed into the new attempt's results. A `check` that refuses raises
NotLeader (in production it ends the process first).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence

import attrs

from mandrill.domain.crawl import frontier, job
from mandrill.domain.crawl.models import Edge, PageResult, Progress
from mandrill.domain.restart.process import Journal, JournalEntry

Check = Callable[[str], None]
"""Returns if this process may write now; raises otherwise (Leadership.check)."""


@attrs.frozen
class FencedJournal:
    """A `Journal` whose saves ask first."""

    inner: Journal
    check: Check

    async def save(self, entry: JournalEntry) -> None:
        self.check("save to the journal")
        await self.inner.save(entry)


@attrs.frozen
class FencedSink:
    """A crawl's `BatchSink` whose every record and flush asks first."""

    inner: job.BatchSink
    check: Check

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        self.check("write crawl results")
        await self.inner.record(result, edges, progress)

    async def flush(self) -> None:
        self.check("write crawl results")
        await self.inner.flush()

    # The frontier's notes only go into the buffer; `flush` writes them, fenced.
    def admitted(self, url: str, *, depth: int, parent: str | None, ordinal: int) -> None:
        self.inner.admitted(url, depth=depth, parent=parent, ordinal=ordinal)

    def redirected(self, hops: Iterable[str]) -> None:
        self.inner.redirected(hops)

    def retrying(self, url: str, *, attempt: int) -> None:
        self.inner.retrying(url, attempt=attempt)

    def robots(self, record: frontier.RobotsRecord) -> None:
        self.inner.robots(record)


@attrs.frozen
class FencedJobStore:
    """A `JobStore` whose writes ask first."""

    inner: job.JobStore
    check: Check

    async def begin(
        self, ref: job.JobRef, *, attempt: int, started: datetime.datetime
    ) -> frontier.Resumption | None:
        self.check("begin a crawl in the store")
        return await self.inner.begin(ref, attempt=attempt, started=started)

    def sink(self, ref: job.JobRef) -> job.BatchSink:
        return FencedSink(self.inner.sink(ref), self.check)

    async def finish(self, ref: job.JobRef, outcome: job.Outcome) -> job.StoredResults:
        self.check("finish a crawl in the store")
        return await self.inner.finish(ref, outcome)
