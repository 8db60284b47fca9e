"""The crawl loop: a frontier, N workers, politeness, and an outcome for every URL.

Shape. `spec.concurrency` worker tasks take items from one asyncio queue;
each item is a canonical URL with its depth. Every request goes through
`politeness` (a per-host semaphore bounds the requests one host sees at once,
a host whose robots.txt sets Crawl-delay gets its request starts spaced by
that delay), and a final response is turned into links or a failure by
`pages`. Every admitted URL ends with exactly one PageResult handed to the
sink, ok or failed with an ErrorKind: no failure stops the crawl.

Retries (429, 503, reset connections) are not slept on by the worker: a timer
task puts the item back on the queue when its backoff (or Retry-After) is
over, and the worker moves on. The crawl is finished when no URL is queued,
in flight, or waiting to be retried.

Redirects are followed here, not by the HTTP client: each hop is a new URL
that must pass the same checks (scope, robots.txt, dedup, and the adapter's
address guard), and a chain that comes back on itself or runs past
`max_redirects` is recorded as such.

The event loop must never stall on one page, so decoding and parsing of any
body larger than a few KiB runs in a worker thread (`pages.examine`), and the
bookkeeping over a page's links yields to the loop between batches.

Resuming. A crawl given a `frontier.FrontierLog` tells it each admission,
redirect hop, retry and robots.txt read, buffered beside the outcomes (see
`frontier` for the rules); a crawl given a `frontier.Resumption` starts from
one: its pending URLs queued in admission order, its seen set, URL budget and
counters restored, robots.txt policies as they were read. Seeds are admitted
all before the first outcome is recorded, so a stored frontier holds every
seed or none.

Sharing. A crawl given a `shared.Participant` is one worker of several
sharing a frontier in the store (see `shared`): its queue is fed with the
URLs the participant leases instead of seeds, a URL is fetched only while
its lease holds, each outcome goes to the participant with the links to
admit (the store decides what is new and what the maxPages budget still
allows, so the seen set here is only a cache), and the crawl ends when the
participant says the shared frontier is finished. Everything else -- pages,
politeness, retries, redirects, robots.txt, scope -- is this same code.

Cancellation (the operator cancels crawls on shutdown or deletion) is never
swallowed: the workers and retry timers live in a TaskGroup, so cancelling
`crawl` stops them all promptly. The total timeout ends the crawl the same way
and is reported in the stats rather than raised.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable, Sequence

import attrs

from mandrill.domain.crawl import frontier, pages, shared, urls
from mandrill.domain.crawl.models import (
    CrawlSpec,
    CrawlStats,
    Edge,
    ErrorKind,
    FetchFailure,
    FetchResult,
    PageResult,
    Progress,
)
from mandrill.domain.crawl.pages import Failure
from mandrill.domain.crawl.politeness import Politeness, Withdrawn
from mandrill.domain.crawl.ports import Fetcher, ResultSink

LINK_BATCH = 1000
"""Links handled between yields to the event loop."""


async def crawl(
    spec: CrawlSpec,
    *,
    fetcher: Fetcher,
    sink: ResultSink,
    log: frontier.FrontierLog = frontier.NO_LOG,
    resume: frontier.Resumption | None = None,
    participant: shared.Participant | None = None,
) -> CrawlStats:
    """Crawl from `spec.seeds` (or from `resume`) until the frontier is exhausted or the
    total timeout passes; `log` hears what a later resumption needs.

    With a `participant`, crawl the URLs it leases from a shared frontier
    (which is then also the log) until it says the frontier is finished."""
    if participant is not None:
        log = participant
    politeness = Politeness(spec=spec, fetcher=fetcher, log=log)
    return await _Crawl(
        spec=spec, politeness=politeness, sink=sink, log=log, participant=participant
    ).run(resume)


@attrs.frozen
class _Item:
    url: str
    depth: int
    attempt: int = 1
    started: float | None = None


@attrs.define
class _Crawl:
    """The mutable state of one crawl; lives only inside `crawl`."""

    spec: CrawlSpec
    politeness: Politeness
    sink: ResultSink
    log: frontier.FrontierLog
    participant: shared.Participant | None = None
    queue: asyncio.Queue[_Item] = attrs.Factory(asyncio.Queue)
    seen: set[str] = attrs.Factory(set)
    known: set[str] = attrs.Factory(set)
    failures: collections.Counter[str] = attrs.Factory(collections.Counter)
    hops: dict[str, list[str]] = attrs.Factory(dict)
    """Redirect hops followed so far, by the URL that was scheduled."""
    done: asyncio.Event = attrs.Factory(asyncio.Event)
    tasks: asyncio.TaskGroup | None = None
    admitted: int = 0
    rejected: int = 0
    pending: int = 0
    outcomes: int = 0
    pages_ok: int = 0
    edges: int = 0
    bytes_read: int = 0
    started: float = 0.0

    async def run(self, resume: frontier.Resumption | None) -> CrawlStats:
        self.started = time.monotonic()
        deadline = asyncio.timeout(self.spec.total_timeout)
        try:
            async with deadline, asyncio.TaskGroup() as tasks:
                self.tasks = tasks
                workers = [tasks.create_task(self._work()) for _ in range(self.spec.concurrency)]
                if self.participant is not None:
                    await self.participant.run(enqueue=self._take_lease, politeness=self.politeness)
                elif resume is None:
                    await self._admit_seeds()
                    await self.done.wait()
                else:
                    self._restore(resume)
                    await self.done.wait()
                for worker in workers:
                    worker.cancel()
        except TimeoutError:
            if not deadline.expired():
                raise
        return CrawlStats(
            pages_ok=self.pages_ok,
            pages_failed=self.outcomes - self.pages_ok,
            failures=dict(self.failures),
            edges=self.edges,
            unique_urls=len(self.known),
            bytes=self.bytes_read,
            elapsed=time.monotonic() - self.started,
            timed_out=deadline.expired(),
        )

    async def _admit_seeds(self) -> None:
        # Hold one pending unit while admitting, so an early outcome (an invalid
        # seed, a fast page) cannot bring the count to zero before all are in.
        # Every valid seed is admitted before any outcome is recorded (see above).
        self.pending += 1
        invalid: list[str] = []
        for raw in self.spec.seeds:
            url = urls.canonicalize(raw)
            if url is None:
                invalid.append(raw)
            elif url not in self.seen and self.admitted < self.spec.max_pages:
                self._admit(url, depth=0, parent=None)
        for raw in invalid:
            result = PageResult(
                url=raw,
                depth=0,
                final_url=raw,
                error=ErrorKind.INVALID_URL,
                message="not an absolute http(s) URL",
            )
            self.rejected += 1
            self.pending += 1
            await self._finish(result, ())
        self._settle()

    def _restore(self, resume: frontier.Resumption) -> None:
        """Continue a stored crawl: its pending URLs queued, its counts and seen set taken."""
        counts = resume.counts
        self.seen.update(resume.seen)
        self.known.update(resume.seen)
        self.known.update(resume.linked)
        self.admitted = resume.admitted
        self.rejected = resume.rejected
        self.outcomes = counts.outcomes
        self.pages_ok = counts.pages_ok
        self.failures.update(counts.failures)
        self.edges = counts.edges
        self.bytes_read = counts.bytes
        self.politeness.restore(resume.robots)
        self.pending += 1
        for pending in resume.pending:
            self.pending += 1
            self.queue.put_nowait(
                _Item(url=pending.url, depth=pending.depth, attempt=pending.attempt)
            )
        self._settle()

    def _take_lease(self, lease: shared.Lease) -> None:
        """A URL leased from the shared frontier joins the queue."""
        self.seen.add(lease.url)
        self.known.add(lease.url)
        self.queue.put_nowait(_Item(url=lease.url, depth=lease.depth, attempt=lease.attempt))

    def _still_leased(self, item: _Item) -> bool:
        """Whether the item may be fetched (always, unless its shared lease is running out)."""
        if self.participant is None or self.participant.holds(item.url):
            return True
        self._give_up(item)
        return False

    def _lease_check(self, item: _Item) -> Callable[[], bool] | None:
        """For a shared crawl: asked again right before the request (after the host's
        slot and delay, which can take a while)."""
        participant = self.participant
        if participant is None:
            return None
        return lambda: participant.holds(item.url)

    def _give_up(self, item: _Item) -> None:
        """The item's lease ran out before its request: drop it, unfinished (see `shared`)."""
        assert self.participant is not None
        self.hops.pop(item.url, None)
        self.participant.drop(item.url)

    async def _known_elsewhere(self, url: str) -> bool:
        """Whether another worker sharing the frontier has admitted `url` (or met it as a hop)."""
        if self.participant is None:
            return False
        return await self.participant.knows(url)

    def _admit(self, url: str, *, depth: int, parent: str | None) -> None:
        self.seen.add(url)
        self.known.add(url)
        self.admitted += 1
        self.pending += 1
        self.log.admitted(url, depth=depth, parent=parent, ordinal=self.admitted)
        self.queue.put_nowait(_Item(url=url, depth=depth))

    async def _work(self) -> None:
        while True:
            item = await self.queue.get()
            if not self._still_leased(item):
                continue
            if item.started is None:
                item = _Item(item.url, item.depth, item.attempt, time.monotonic())
            await self._process(item)

    async def _process(self, item: _Item) -> None:  # noqa: PLR0911 - one return per way a hop ends
        url = item.url
        chain = [url]
        for hop in range(self.spec.max_redirects + 1):
            if not self._still_leased(item):
                return
            refusal = await self.politeness.refusal(url)
            if refusal is not None:
                await self._fail(item, url, refusal)
                return
            try:
                outcome = await self.politeness.fetch(
                    url,
                    max_bytes=self.spec.max_response_bytes,
                    want_body=pages.wants_html,
                    still_wanted=self._lease_check(item),
                )
            except Withdrawn:
                self._give_up(item)
                return
            if isinstance(outcome, FetchFailure):
                if outcome.retryable and item.attempt <= self.spec.max_retries:
                    self._retry(item, delay=None)
                    return
                await self._fail(item, url, Failure(kind=outcome.kind, message=outcome.message))
                return
            if outcome.status not in pages.REDIRECT_STATUSES or outcome.location is None:
                await self._respond(item, outcome)
                return
            target = pages.redirect_target(url, outcome.location)
            failure = self._redirect_refusal(target, chain=chain, hop=hop, status=outcome.status)
            if failure is not None:
                await self._fail(item, url, failure)
                return
            assert target is not None
            self.known.add(target)
            if target in self.seen or await self._known_elsewhere(target):
                await self._finish_item(
                    item,
                    final_url=target,
                    status=outcome.status,
                    message="redirects to a URL already in this crawl",
                )
                return
            self.seen.add(target)
            chain.append(target)
            self.hops[item.url] = chain
            url = target
        raise AssertionError("unreachable: the last hop always ends the loop")  # pragma: no cover

    def _redirect_refusal(
        self, target: str | None, *, chain: list[str], hop: int, status: int
    ) -> Failure | None:
        if target is None:
            return Failure(
                kind=ErrorKind.INVALID_URL,
                message="redirect to a non-http(s) or invalid URL",
                status=status,
            )
        if target in chain:
            return Failure(
                kind=ErrorKind.REDIRECT_LOOP,
                message=f"redirect loop back to {target}",
                status=status,
            )
        if hop >= self.spec.max_redirects:
            return Failure(
                kind=ErrorKind.TOO_MANY_REDIRECTS,
                message=f"more than {self.spec.max_redirects} redirects",
                status=status,
            )
        if not self.spec.follows(target):
            return Failure(
                kind=ErrorKind.OUT_OF_SCOPE,
                message=f"redirect to {target}, outside the allowed domains or patterns",
                status=status,
            )
        return None

    async def _respond(self, item: _Item, response: FetchResult) -> None:
        if response.status in pages.RETRY_STATUSES and item.attempt <= self.spec.max_retries:
            self._retry(item, delay=pages.retry_after(response.retry_after))
            return
        examined = await pages.examine(self.spec, response, depth=item.depth)
        if isinstance(examined, Failure):
            await self._fail(item, response.url, examined)
            return
        found = await self._note_links(examined, depth=item.depth, parent=response.url)
        await self._finish_item(
            item,
            final_url=response.url,
            status=response.status,
            message=examined.note,
            content_type=response.content_type,
            size=len(response.body or b""),
            edges=examined.edges,
            found=found,
        )

    async def _note_links(
        self, analysis: pages.Analysis, *, depth: int, parent: str
    ) -> tuple[str, ...]:
        """Admit the page's new links; shared: return them, for the store to admit."""
        self.known.update(analysis.edges.targets)
        if self.participant is not None:
            found = tuple(t for t in analysis.follow if t not in self.seen)
            self.seen.update(found)
            return found
        for index, target in enumerate(analysis.follow, start=1):
            if self.admitted >= self.spec.max_pages:
                break
            if target not in self.seen:
                self._admit(target, depth=depth + 1, parent=parent)
            if index % LINK_BATCH == 0:
                await asyncio.sleep(0)
        return ()

    def _retry(self, item: _Item, *, delay: float | None) -> None:
        if delay is None:
            delay = self.spec.retry_backoff * 2 ** (item.attempt - 1) * random.uniform(0.8, 1.2)
        delay = min(delay, self.spec.max_retry_delay)
        assert self.tasks is not None
        self.hops.pop(item.url, None)
        self.log.retrying(item.url, attempt=item.attempt + 1)
        self.tasks.create_task(self._requeue(attrs.evolve(item, attempt=item.attempt + 1), delay))

    async def _requeue(self, item: _Item, delay: float) -> None:
        await asyncio.sleep(delay)
        self.queue.put_nowait(item)

    async def _fail(self, item: _Item, url: str, failure: Failure) -> None:
        await self._finish_item(
            item,
            final_url=url,
            status=failure.status,
            error=failure.kind,
            message=failure.message,
            content_type=failure.content_type,
            size=failure.size,
        )

    async def _finish_item(
        self,
        item: _Item,
        *,
        final_url: str,
        status: int | None,
        error: ErrorKind | None = None,
        message: str = "",
        content_type: str | None = None,
        size: int = 0,
        edges: Sequence[Edge] = (),
        found: tuple[str, ...] = (),
    ) -> None:
        started = item.started if item.started is not None else time.monotonic()
        result = PageResult(
            url=item.url,
            depth=item.depth,
            final_url=final_url,
            status=status,
            error=error,
            message=message,
            content_type=content_type,
            size=size,
            links=len(edges),
            attempts=item.attempt,
            elapsed=time.monotonic() - started,
        )
        chain = self.hops.pop(item.url, None)
        if chain is not None:
            self.log.redirected(chain[1:])
        if self.participant is not None:
            self.participant.complete(shared.Completion(result=result, edges=edges, found=found))
        await self._finish(result, edges)

    async def _finish(self, result: PageResult, edges: Sequence[Edge]) -> None:
        self.outcomes += 1
        if result.error is None:
            self.pages_ok += 1
        else:
            self.failures[result.error.value] += 1
        self.edges += len(edges)
        self.bytes_read += result.size
        progress = Progress(
            done=self.outcomes,
            scheduled=self.admitted + self.rejected,
            failed=self.outcomes - self.pages_ok,
            elapsed=time.monotonic() - self.started,
        )
        await self.sink.record(result, edges, progress)
        self._settle()

    def _settle(self) -> None:
        """One pending unit is done; the crawl is over when none are left (a shared crawl's
        end is its participant's to say)."""
        if self.participant is not None:
            return
        self.pending -= 1
        if self.pending == 0:
            self.done.set()
