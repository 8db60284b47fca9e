"""A frontier shared by worker processes: what a worker holds, for how long, and what it may write.

Several `mandrill crawl-worker` processes crawl one CrawlJob from one
frontier in PostgreSQL (the adapter: mandrill.adapters.shared_frontier).
They share nothing else: no coordinator, no messages between them. The
rules, all of them here or in the SQL:

- Hosts are partitioned, one holder at a time (as Nutch and StormCrawler
  partition their queues by host). A worker claims a host by a lease on its
  row, and only the holder fetches it, so the engine's per-host slots
  (`perHostConcurrency`) and Crawl-delay spacing, which are per process,
  hold across all workers without a round trip per request. The host's next
  allowed start goes with the row when the host changes hands. The price:
  one host is crawled by one worker at a time, so a one-host crawl does not
  go faster with more workers (it cannot anyway without breaking the
  per-host limit a second worker would have to share).
- URLs are leased, in batches, from the hosts a worker holds (`FOR UPDATE
  SKIP LOCKED`, so workers never wait on each other's rows), and the lease
  is renewed by a heartbeat. A lease whose end has passed is free again:
  whoever leases next takes it, so the URLs of a dead worker are finished
  by the others once its leases run out.
- Fencing. A URL's outcome is stored, and its row marked done, in one
  transaction that first checks the row is still leased to this worker
  (this process: a holder is the worker id plus a random suffix, so a
  restarted pod with the same name is another holder). An outcome whose
  lease was taken over is dropped, never stored twice. And a worker does not
  *fetch* a URL whose lease (or host lease) ends within `margin` seconds by
  its own clock: a worker cut off from the store, or paused, stops fetching
  before anyone can take its URLs over. With a request timeout below the
  margin, a URL is fetched twice only if its worker dies (or is killed)
  between the request and the commit of its outcome.
- Links are admitted by the store, not by a seen set in memory: an INSERT
  ... ON CONFLICT DO NOTHING, so a URL is in the frontier once across all
  workers, and the maxPages budget is a counter row updated under its row
  lock in the same transaction, so it holds exactly.
- Every worker seeds the frontier at start, idempotently (the same
  admission), so no one has to go first.
- The crawl is finished when no frontier row is pending: not leased, and not
  leased by anyone else either. A worker with nothing to lease while others
  hold pending URLs waits and asks again (they may admit more).

Time is wall-clock seconds (`clock`), since leases are compared across
processes and machines: the lease length must be well above the clocks'
skew (NTP keeps pods within milliseconds; leases are seconds).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

import attrs

from mandrill.domain.crawl import frontier, urls
from mandrill.domain.crawl.models import CrawlSpec, Edge, ErrorKind, PageResult
from mandrill.domain.crawl.politeness import Politeness
from mandrill.domain.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_RETRY_WAIT = 4.0
"""Longest wait between tries of a store that fails (they start at `Timing.poll`)."""


def holder_id(worker_id: str) -> str:
    """A lease holder's name: the worker's id and a random suffix, unique to this process."""
    return f"{worker_id}/{secrets.token_hex(4)}"


@attrs.frozen
class Lease:
    """A pending URL leased to this worker."""

    url: str
    depth: int
    attempt: int
    host: str


@attrs.frozen
class HostGrant:
    """A host this worker now holds."""

    host: str
    not_before: float
    """When its next request may start (the last holder's Crawl-delay), wall-clock seconds."""


@attrs.frozen
class Completion:
    """A URL's outcome, with what the store must admit and note beside it."""

    result: PageResult
    edges: Sequence[Edge]
    found: tuple[str, ...] = ()
    """Links to admit, at depth result.depth + 1, found on result.final_url."""
    hops: tuple[str, ...] = ()
    """Redirect hops followed from the URL (seen from now on)."""


@attrs.frozen
class Written:
    """What one write of outcomes did."""

    stored: frozenset[str]
    """URLs whose outcome is now stored (and row done)."""
    fenced: frozenset[str]
    """URLs whose outcome was dropped: their lease is no longer this worker's."""
    admitted: int = 0
    """New frontier rows."""


@attrs.frozen
class Renewed:
    """What a heartbeat kept."""

    urls: frozenset[str]
    hosts: frozenset[str]


class SharedFrontier(Protocol):
    """One job's frontier in a store all workers reach; every method is one transaction.

    `now` and `until` are wall-clock seconds from the caller's clock (a seam:
    the tests pass their own). StoreError when the store cannot be used."""

    async def seed(
        self, seeds: Sequence[str], *, invalid: Sequence[PageResult], max_pages: int
    ) -> int:
        """Admit the (canonical) seeds not admitted yet, within the budget; store the
        outcomes of invalid seeds. Idempotent; returns the rows it admitted."""
        ...

    async def claim_hosts(
        self, holder: str, *, limit: int, now: float, until: float
    ) -> list[HostGrant]:
        """Take up to `limit` hosts that have leasable pending URLs and no live holder."""
        ...

    async def lease(
        self, holder: str, *, rooms: Mapping[str, int], now: float, until: float
    ) -> list[Lease]:
        """Lease, in admission order, up to rooms[host] free pending URLs of each host."""
        ...

    async def renew(
        self,
        holder: str,
        *,
        urls: Iterable[str],
        hosts: Mapping[str, float],
        until: float,
    ) -> Renewed:
        """Extend the leases still this holder's (hosts: their next allowed start)."""
        ...

    async def complete(
        self,
        holder: str,
        *,
        completions: Sequence[Completion],
        attempts: Sequence[tuple[str, int]],
        robots: Sequence[frontier.RobotsRecord],
        max_pages: int,
    ) -> Written:
        """Store the outcomes whose URLs are still leased to `holder` (fenced: the others
        are dropped), with their edges, hops and admitted links; note next attempts and
        robots.txt records."""
        ...

    async def release(
        self,
        holder: str,
        *,
        urls: Iterable[str],
        hosts: Mapping[str, float],
        everything: bool = False,
    ) -> None:
        """Give back leases still this holder's (hosts: their next allowed start).
        `everything`: also every other lease the store has for this holder, for a
        stopping worker, whose last claim or lease may have committed unseen (the stop
        cancelled it while its answer was on the way)."""
        ...

    async def robots(self, host: str) -> list[frontier.RobotsRecord]:
        """robots.txt records any worker stored for the origins of `host`."""
        ...

    async def finished(self) -> bool:
        """Whether no frontier row is pending."""
        ...

    async def knows(self, url: str) -> bool:
        """Whether `url` has a frontier row (admitted, or reached as a redirect hop)."""
        ...


def seeds_of(spec: CrawlSpec) -> tuple[list[str], list[PageResult]]:
    """The seeds as canonical URLs (first occurrence kept), and outcomes for invalid ones."""
    valid: list[str] = []
    invalid: list[PageResult] = []
    for raw in spec.seeds:
        url = urls.canonicalize(raw)
        if url is None:
            invalid.append(
                PageResult(
                    url=raw,
                    depth=0,
                    final_url=raw,
                    error=ErrorKind.INVALID_URL,
                    message="not an absolute http(s) URL",
                )
            )
        elif url not in valid:
            valid.append(url)
    return valid, invalid


@attrs.frozen
class Timing:
    """How long leases last and how often the worker acts on them, in seconds."""

    lease: float = 30.0
    """A lease's length from its last renewal: how long a dead worker's URLs wait."""
    heartbeat: float = 10.0
    """Between renewals."""
    margin: float = 12.0
    """A URL is not fetched when its lease ends sooner than this (above the request timeout)."""
    poll: float = 0.5
    """Between asks when there is nothing to lease."""
    patience: float = 60.0
    """How long the store may keep failing before the worker gives up."""

    @classmethod
    def for_lease(cls, lease: float, *, request_timeout: float) -> Timing:
        """Heartbeat a third of the lease; the margin the request timeout plus a little,
        but never more than half the lease."""
        return cls(
            lease=lease,
            heartbeat=lease / 3,
            margin=min(request_timeout + 1.0, lease / 2),
            poll=min(0.5, lease / 6),
            patience=max(2 * lease, 10.0),
        )


@attrs.define
class _Held:
    host: str
    until: float


@attrs.define
class Participant:
    """One worker's part in a shared crawl: its leases, its outbox, and the feed loop.

    The engine asks `holds` before each fetch, `drop`s an item it will not
    finish, hands each outcome to `complete`, and runs `run` as the source
    of its queue. It is also the engine's FrontierLog (retries, redirect
    hops, robots.txt), written with the outcomes."""

    store: SharedFrontier
    spec: CrawlSpec
    holder: str
    timing: Timing = attrs.Factory(Timing)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    urls: dict[str, _Held] = attrs.Factory(dict)
    """URLs leased and not yet given up or stored, whether queued, in flight or written."""
    hosts: dict[str, float] = attrs.Factory(dict)
    """Hosts held, with their lease's end."""
    per_host: collections.Counter[str] = attrs.Factory(collections.Counter)
    stored: int = 0
    fenced: int = 0
    lost: int = 0
    """URLs given up because their lease ran out (or was taken over) before a fetch."""
    _outbox: list[Completion] = attrs.Factory(list)
    _attempts: list[tuple[str, int]] = attrs.Factory(list)
    _robots: list[frontier.RobotsRecord] = attrs.Factory(list)
    _hops: tuple[str, ...] = ()
    _wake: asyncio.Event = attrs.Factory(asyncio.Event)
    _room: asyncio.Event = attrs.Factory(asyncio.Event)
    _writing: bool = False
    _politeness: Politeness | None = None

    @property
    def max_hosts(self) -> int:
        """Hosts held at once: as many as keep `concurrency` busy at perHostConcurrency each."""
        return max(1, math.ceil(self.spec.concurrency / self.spec.per_host_concurrency))

    @property
    def per_host_target(self) -> int:
        """URLs leased ahead per host held: twice its slots."""
        return 2 * self.spec.per_host_concurrency

    async def seed(self) -> int:
        """Admit the spec's seeds (idempotent: every worker does it at start)."""
        valid, invalid = seeds_of(self.spec)
        return await self._patiently(
            "seeding",
            lambda: self.store.seed(valid, invalid=invalid, max_pages=self.spec.max_pages),
        )

    # --- what the engine asks -------------------------------------------------------

    def holds(self, url: str) -> bool:
        """Whether `url` may be fetched now: leased to us, and its host, for `margin` more."""
        held = self.urls.get(url)
        if held is None:
            return False
        edge = self.clock() + self.timing.margin
        return held.until > edge and self.hosts.get(held.host, 0.0) > edge

    def drop(self, url: str) -> None:
        """The engine gives `url` up unfinished (its lease ran out): forget it."""
        if url in self.urls:
            self.lost += 1
            self._forget(url)

    def complete(self, completion: Completion) -> None:
        """Queue an outcome for the next write (written behind the crawl, in groups)."""
        if self._hops:
            completion = attrs.evolve(completion, hops=self._hops)
            self._hops = ()
        self._outbox.append(completion)
        self._wake.set()

    async def knows(self, url: str) -> bool:
        """Whether the shared frontier has `url` already (asked before following a redirect
        to it: this worker's own seen set does not know what the others admitted)."""
        return await self._patiently("asking the frontier", lambda: self.store.knows(url))

    # --- FrontierLog ----------------------------------------------------------------

    def admitted(self, url: str, *, depth: int, parent: str | None, ordinal: int) -> None:
        """Not used: a shared crawl admits in the store (see `complete`)."""

    def redirected(self, hops: Iterable[str]) -> None:
        """Hops of the outcome the engine completes next."""
        self._hops = tuple(hops)

    def retrying(self, url: str, *, attempt: int) -> None:
        """Note the next attempt, so a worker taking the URL over does not grant it again."""
        self._attempts.append((url, attempt))

    def robots(self, record: frontier.RobotsRecord) -> None:
        """robots.txt was read: shared with the next holder of the host."""
        self._robots.append(record)

    # --- the loop -------------------------------------------------------------------

    async def run(self, *, enqueue: Callable[[Lease], None], politeness: Politeness) -> None:
        """Lease URLs into the crawl (`enqueue`) until the shared frontier is finished.

        Returns when this worker holds nothing, has written everything, and
        the store has no pending row left; cancelled, it just stops (the
        caller then `close`s)."""
        self._politeness = politeness
        async with asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(self._write_loop())
            await self._feed(enqueue)
            writer.cancel()

    async def _feed(self, enqueue: Callable[[Lease], None]) -> None:
        next_beat = self.clock() + self.timing.heartbeat
        while True:
            if self.clock() >= next_beat:
                await self._patiently("renewing leases", self._renew)
                next_beat = self.clock() + self.timing.heartbeat
            leased = await self._patiently("leasing", self._lease_more)
            for lease in leased:
                enqueue(lease)
            idle = not self.urls and not self._outbox and not self._writing
            if idle and await self._patiently("checking the frontier", self.store.finished):
                return
            if not leased:
                self._room.clear()
                wait = min(self.timing.poll, max(0.0, next_beat - self.clock()))
                await self._wait_for_room(wait)

    async def _wait_for_room(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._room.wait()
        except TimeoutError:
            pass

    async def _lease_more(self) -> list[Lease]:
        """Claim hosts while there is room for one, lease URLs of the hosts held; give
        back the hosts with nothing left to lease."""
        now = self.clock()
        until = now + self.timing.lease
        if len(self.hosts) < self.max_hosts:
            grants = await self.store.claim_hosts(
                self.holder, limit=self.max_hosts - len(self.hosts), now=now, until=until
            )
            for grant in grants:
                await self._take_host(grant, until=until)
        # A host is topped up once a round of its slots is free, not for each URL done:
        # half the lease transactions, and its slots still have a round queued.
        low = self.per_host_target - self.spec.per_host_concurrency
        rooms = {
            host: self.per_host_target - self.per_host[host]
            for host in self.hosts
            if self.per_host[host] <= low
        }
        if not rooms:
            return []
        leased = await self.store.lease(self.holder, rooms=rooms, now=now, until=until)
        for lease in leased:
            self.urls[lease.url] = _Held(host=lease.host, until=until)
            self.per_host[lease.host] += 1
        idle = {h: self._next_start(h) for h in rooms if self.per_host[h] == 0}
        if idle:
            await self.store.release(self.holder, urls=(), hosts=idle)
            for host in idle:
                self.hosts.pop(host, None)
        return leased

    async def _take_host(self, grant: HostGrant, *, until: float) -> None:
        self.hosts[grant.host] = until
        assert self._politeness is not None
        self._politeness.restore(await self.store.robots(grant.host))
        self._politeness.hold_off(grant.host, grant.not_before - self.clock())

    def _next_start(self, host: str) -> float:
        """The host's next allowed start, wall clock, to hand on with it."""
        if self._politeness is None:
            return self.clock()
        return self.clock() + max(0.0, self._politeness.wait_left(host))

    async def _renew(self) -> None:
        until = self.clock() + self.timing.lease
        hosts = {host: self._next_start(host) for host in self.hosts}
        renewed = await self.store.renew(
            self.holder, urls=list(self.urls), hosts=hosts, until=until
        )
        for host in list(self.hosts):
            if host in renewed.hosts:
                self.hosts[host] = until
            else:
                log.warning("lost the lease on host %s", host)
                del self.hosts[host]
        for url, held in self.urls.items():
            if url in renewed.urls:
                held.until = until

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._patiently("storing outcomes", self._write)

    async def _write(self) -> None:
        """Store the outbox in one transaction; kept for the next try if it fails."""
        if not (self._outbox or self._attempts or self._robots):
            return
        batch, attempts, records = self._outbox, self._attempts, self._robots
        self._outbox, self._attempts, self._robots = [], [], []
        self._writing = True
        try:
            written = await self.store.complete(
                self.holder,
                completions=batch,
                attempts=attempts,
                robots=records,
                max_pages=self.spec.max_pages,
            )
        except BaseException:
            self._outbox[:0], self._attempts[:0], self._robots[:0] = batch, attempts, records
            raise
        finally:
            self._writing = False
        self.stored += len(written.stored)
        if written.fenced:
            self.fenced += len(written.fenced)
            log.warning("%d outcomes dropped: their leases were taken over", len(written.fenced))
        for completion in batch:
            self._forget(completion.result.url)

    def _forget(self, url: str) -> None:
        held = self.urls.pop(url, None)
        if held is not None:
            self.per_host[held.host] -= 1
            self._room.set()

    async def close(self) -> None:
        """Write what is queued, give back every lease this holder has (a stopping worker):
        those it knows of, and any a claim or lease cut off by the stop took unseen, which
        would otherwise keep the others waiting for their lease to run out."""
        try:
            await self._write()
        finally:
            hosts = {host: self._next_start(host) for host in self.hosts}
            await self.store.release(
                self.holder, urls=list(self.urls), hosts=hosts, everything=True
            )
            self.urls.clear()
            self.hosts.clear()
            self.per_host.clear()

    async def _patiently(self, doing: str, work: Callable[[], Awaitable[T]]) -> T:
        """`work`, tried again while the store fails, for up to `timing.patience` seconds."""
        give_up = self.clock() + self.timing.patience
        wait = self.timing.poll
        while True:
            try:
                return await work()
            except StoreError as e:
                if self.clock() >= give_up:
                    raise
                log.warning("%s failed, trying again in %.1f s: %s", doing, wait, e)
                await self.sleep(wait)
                wait = min(wait * 2, MAX_RETRY_WAIT)
