"""The shared frontier in PostgreSQL: the SQL of mandrill.domain.crawl.shared.

Every method is one transaction on the worker's own connection. The rows:
`crawl_frontier` (one per URL: pending -> done, `leased_by`/`lease_until`
while a worker has it), `crawl_host_leases` (one per host: its holder and
the next allowed start), `crawl_budget` (admitted URLs, for maxPages), and
the pages, edges and robots.txt records exactly as a single-process crawl
writes them (crawl_store.py, frontier_store.py), so export and status read
a shared crawl the same way.

Leases are taken with `FOR UPDATE SKIP LOCKED`, so workers never queue
behind each other's rows; a lease is free when it is NULL or its end has
passed. Times are fixed-width RFC 3339 UTC text (timestamps.format), so
comparing them as text compares them as times.

Admission runs last in its transaction, because it takes the one row lock
all workers share (the job's budget row): under it the insert sees every
admission committed before it (READ COMMITTED takes a new snapshot per
statement), so the budget is exact and ordinals are unique, and it is held
only for the few statements before the commit. It is taken only when a
lookup without it found a link not in the frontier yet: most links of a
page are known by the time it is crawled.

`counters` count transactions and statements (a call to execute, fetch or
executemany: one round trip) and the seconds spent in them, for the
benchmark's cost per URL.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import attrs

from mandrill.adapters import crawl_store, frontier_store, postgres
from mandrill.domain import timestamps
from mandrill.domain.crawl import frontier, shared, urls
from mandrill.domain.crawl.models import PageResult
from mandrill.store_url import StoreUrl

T = TypeVar("T")
PENDING = frontier.State.PENDING.value

UNKNOWN = """
SELECT c.url FROM unnest($2::text[]) AS c(url)
WHERE NOT EXISTS (SELECT 1 FROM crawl_frontier f WHERE f.job_uid = $1 AND f.url = c.url)"""
LOCK_BUDGET = "SELECT admitted FROM crawl_budget WHERE job_uid = $1 FOR UPDATE"
ADMIT = f"""
INSERT INTO crawl_frontier (job_uid, url, state, depth, parent, host, ordinal)
SELECT $1, c.url, '{PENDING}', c.depth, c.parent, c.host, $2 + row_number() OVER (ORDER BY c.n)
FROM unnest($3::text[], $4::int[], $5::text[], $6::text[])
     WITH ORDINALITY AS c(url, depth, parent, host, n)
WHERE NOT EXISTS (SELECT 1 FROM crawl_frontier f WHERE f.job_uid = $1 AND f.url = c.url)
ORDER BY c.n LIMIT $7
ON CONFLICT (job_uid, url) DO NOTHING
RETURNING host"""
COUNT_ADMITTED = "UPDATE crawl_budget SET admitted = admitted + $2 WHERE job_uid = $1"
ADD_HOSTS = """
INSERT INTO crawl_host_leases (job_uid, host)
SELECT DISTINCT $1, h FROM unnest($2::text[]) AS h
ON CONFLICT (job_uid, host) DO NOTHING"""
FENCE = f"""
UPDATE crawl_frontier SET state = '{frontier.State.DONE}', leased_by = NULL, lease_until = NULL
WHERE job_uid = $1 AND url = ANY($2::text[]) AND state = '{PENDING}' AND leased_by = $3
RETURNING url"""
SET_ATTEMPT = f"""
UPDATE crawl_frontier SET attempt = $3
WHERE job_uid = $1 AND url = $2 AND leased_by = $4 AND state = '{PENDING}'"""
CLAIM_HOSTS = f"""
UPDATE crawl_host_leases h SET holder = $2, lease_until = $3
FROM (
    SELECT c.host FROM crawl_host_leases c
    WHERE c.job_uid = $1 AND (c.holder IS NULL OR c.lease_until < $4)
      AND EXISTS (
        SELECT 1 FROM crawl_frontier f
        WHERE f.job_uid = $1 AND f.state = '{PENDING}' AND f.host = c.host
          AND (f.leased_by IS NULL OR f.lease_until < $4))
    LIMIT $5
    FOR UPDATE OF c SKIP LOCKED
) picked
WHERE h.job_uid = $1 AND h.host = picked.host
RETURNING h.host, h.next_start"""
LEASE = f"""
UPDATE crawl_frontier f SET leased_by = $2, lease_until = $3
FROM (
    SELECT c.url FROM unnest($4::text[], $5::int[]) AS r(host, room)
    CROSS JOIN LATERAL (
        SELECT url FROM crawl_frontier
        WHERE job_uid = $1 AND state = '{PENDING}' AND host = r.host
          AND (leased_by IS NULL OR lease_until < $6)
        ORDER BY ordinal LIMIT r.room
        FOR UPDATE SKIP LOCKED
    ) c
) picked
WHERE f.job_uid = $1 AND f.url = picked.url
RETURNING f.url, f.depth, f.attempt, f.host"""
RENEW_URLS = f"""
UPDATE crawl_frontier SET lease_until = $3
WHERE job_uid = $1 AND url = ANY($4::text[]) AND leased_by = $2 AND state = '{PENDING}'
RETURNING url"""
RENEW_HOSTS = """
UPDATE crawl_host_leases h SET lease_until = $3, next_start = v.next_start
FROM unnest($4::text[], $5::text[]) AS v(host, next_start)
WHERE h.job_uid = $1 AND h.host = v.host AND h.holder = $2
RETURNING h.host"""
RELEASE_URLS = f"""
UPDATE crawl_frontier SET leased_by = NULL, lease_until = NULL
WHERE job_uid = $1 AND url = ANY($3::text[]) AND leased_by = $2 AND state = '{PENDING}'"""
RELEASE_HOSTS = """
UPDATE crawl_host_leases h SET holder = NULL, lease_until = NULL, next_start = v.next_start
FROM unnest($3::text[], $4::text[]) AS v(host, next_start)
WHERE h.job_uid = $1 AND h.host = v.host AND h.holder = $2"""
RELEASE_EVERY_URL = f"""
UPDATE crawl_frontier SET leased_by = NULL, lease_until = NULL
WHERE job_uid = $1 AND leased_by = $2 AND state = '{PENDING}'"""
RELEASE_EVERY_HOST = """
UPDATE crawl_host_leases SET holder = NULL, lease_until = NULL
WHERE job_uid = $1 AND holder = $2"""
ROBOTS = """
SELECT origin, robots_rules, unavailable, failure, message FROM crawl_hosts
WHERE job_uid = $1 AND origin = ANY($2::text[])"""
KNOWS = "SELECT EXISTS (SELECT 1 FROM crawl_frontier WHERE job_uid = $1 AND url = $2)"
FINISHED = (
    f"SELECT NOT EXISTS (SELECT 1 FROM crawl_frontier WHERE job_uid = $1 AND state = '{PENDING}')"
)


def at(seconds: float) -> str:
    """Wall-clock seconds as the stored timestamp text."""
    return timestamps.format(datetime.datetime.fromtimestamp(seconds, datetime.UTC))


def seconds(text: str | None) -> float:
    """A stored timestamp as wall-clock seconds (0 for none)."""
    if text is None:
        return 0.0
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@attrs.define
class Counters:
    """What the frontier cost this worker."""

    transactions: int = 0
    statements: int = 0
    seconds: float = 0.0


@attrs.define
class _Counted:
    """A connection whose every round trip is counted."""

    conn: asyncpg.Connection
    counters: Counters

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.counters.statements += 1
        rows: list[asyncpg.Record] = await self.conn.fetch(sql, *args)
        return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.counters.statements += 1
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        self.counters.statements += 1
        await self.conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if len(rows) == 1:
            await self.execute(sql, *rows[0])
        elif rows:
            self.counters.statements += 1
            await self.conn.executemany(sql, rows)


Candidate = tuple[str, int, str | None]
"""A URL to admit: (url, depth, parent)."""


@attrs.define
class PostgresSharedFrontier:
    """`shared.SharedFrontier` for one job, over its own PostgreSQL connection."""

    db: postgres.PostgresDatabase
    job_uid: str
    counters: Counters = attrs.Factory(Counters)

    @classmethod
    def from_url(
        cls, url: StoreUrl, *, job_uid: str, idle_timeout: float = 10.0
    ) -> PostgresSharedFrontier:
        """ValueError unless `url` is PostgreSQL's: workers share nothing else.

        `idle_timeout`: seconds the server lets this session sit in a transaction
        without a statement before it ends it. A worker paused mid-transaction (a
        frozen VM, SIGSTOP) would otherwise hold its row locks -- the budget row's
        among them -- and every other worker's admissions would wait for it."""
        if url.backend != "postgresql":
            raise ValueError(f"workers share a frontier in PostgreSQL only, not {url.redacted}")
        settings = {"idle_in_transaction_session_timeout": str(max(1, round(idle_timeout * 1000)))}
        db = postgres.PostgresDatabase(url=url, what="shared frontier", settings=settings)
        return cls(db=db, job_uid=job_uid)

    async def close(self) -> None:
        await self.db.close()

    async def _run(self, doing: str, work: Callable[[_Counted], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            return await self.db.transact(doing, lambda conn: work(_Counted(conn, self.counters)))
        finally:
            self.counters.transactions += 1
            self.counters.seconds += time.perf_counter() - started

    async def _admit(self, conn: _Counted, candidates: Sequence[Candidate], max_pages: int) -> int:
        """Admit what is new of `candidates` (in order) while the budget lasts."""
        unique: dict[str, Candidate] = {}
        for candidate in candidates:
            unique.setdefault(candidate[0], candidate)
        if not unique:
            return 0
        # Most links of a page are known by then: ask first, without the lock, and take it
        # only for a URL that was new a moment ago (the insert asks again under it).
        fresh = {row[0] for row in await conn.fetch(UNKNOWN, self.job_uid, list(unique))}
        if not fresh:
            return 0
        admitted = await conn.fetchval(LOCK_BUDGET, self.job_uid)
        if admitted is None:  # seeded by no one yet: the budget row comes with the seeds
            await conn.execute(
                "INSERT INTO crawl_budget (job_uid, admitted) VALUES ($1, 0)"
                " ON CONFLICT (job_uid) DO NOTHING",
                self.job_uid,
            )
            admitted = await conn.fetchval(LOCK_BUDGET, self.job_uid)
        room = max_pages - int(admitted)
        if room <= 0:
            return 0
        values = [c for url, c in unique.items() if url in fresh]
        hosts = await conn.fetch(
            ADMIT,
            self.job_uid,
            int(admitted),
            [c[0] for c in values],
            [c[1] for c in values],
            [c[2] for c in values],
            [urls.authority_of(c[0]) for c in values],
            room,
        )
        if hosts:
            await conn.execute(COUNT_ADMITTED, self.job_uid, len(hosts))
            await conn.execute(ADD_HOSTS, self.job_uid, sorted({r[0] for r in hosts}))
        return len(hosts)

    async def seed(
        self, seeds: Sequence[str], *, invalid: Sequence[PageResult], max_pages: int
    ) -> int:
        async def work(conn: _Counted) -> int:
            rows = [crawl_store.page_row(self.job_uid, result) for result in invalid]
            await conn.executemany(postgres.numbered(crawl_store.INSERT_PAGE), rows)
            return await self._admit(conn, [(url, 0, None) for url in seeds], max_pages)

        return await self._run("cannot seed", work)

    async def claim_hosts(
        self, holder: str, *, limit: int, now: float, until: float
    ) -> list[shared.HostGrant]:
        async def work(conn: _Counted) -> list[shared.HostGrant]:
            rows = await conn.fetch(CLAIM_HOSTS, self.job_uid, holder, at(until), at(now), limit)
            return [shared.HostGrant(host=r[0], not_before=seconds(r[1])) for r in rows]

        return await self._run("cannot claim hosts in", work)

    async def lease(
        self, holder: str, *, rooms: Mapping[str, int], now: float, until: float
    ) -> list[shared.Lease]:
        async def work(conn: _Counted) -> list[shared.Lease]:
            hosts = list(rooms)
            rows = await conn.fetch(
                LEASE, self.job_uid, holder, at(until), hosts, [rooms[h] for h in hosts], at(now)
            )
            return [shared.Lease(url=r[0], depth=r[1], attempt=r[2], host=r[3]) for r in rows]

        return await self._run("cannot lease from", work)

    async def renew(
        self, holder: str, *, urls: Iterable[str], hosts: Mapping[str, float], until: float
    ) -> shared.Renewed:
        async def work(conn: _Counted) -> shared.Renewed:
            held = list(urls)
            kept = await conn.fetch(RENEW_URLS, self.job_uid, holder, at(until), held)
            names = list(hosts)
            starts = [at(hosts[h]) for h in names]
            kept_hosts = await conn.fetch(
                RENEW_HOSTS, self.job_uid, holder, at(until), names, starts
            )
            return shared.Renewed(
                urls=frozenset(r[0] for r in kept), hosts=frozenset(r[0] for r in kept_hosts)
            )

        return await self._run("cannot renew leases in", work)

    async def complete(
        self,
        holder: str,
        *,
        completions: Sequence[shared.Completion],
        attempts: Sequence[tuple[str, int]],
        robots: Sequence[frontier.RobotsRecord],
        max_pages: int,
    ) -> shared.Written:
        async def work(conn: _Counted) -> shared.Written:
            uid = self.job_uid
            stored: set[str] = set()
            if completions:
                rows = await conn.fetch(FENCE, uid, [c.result.url for c in completions], holder)
                stored = {r[0] for r in rows}
            kept = [c for c in completions if c.result.url in stored]
            if attempts:
                await conn.executemany(SET_ATTEMPT, [(uid, u, a, holder) for u, a in attempts])
            if robots:
                origin_rows = [frontier_store.origin_row(uid, r) for r in robots]
                await conn.executemany(postgres.numbered(frontier_store.INSERT_ORIGIN), origin_rows)
            admitted = 0
            if kept:
                pages = [crawl_store.page_row(uid, c.result) for c in kept]
                await conn.executemany(postgres.numbered(crawl_store.INSERT_PAGE), pages)
                edges = [
                    (u, s, list(t)) for c in kept for u, s, t in crawl_store.edge_rows(uid, c.edges)
                ]
                await conn.executemany(postgres.numbered(crawl_store.PG_PAGE_EDGES), edges)
                hops = [row for c in kept for row in frontier_store.alias_rows(uid, c.hops)]
                await conn.executemany(postgres.numbered(frontier_store.INSERT_URL), hops)
                candidates = [
                    (url, c.result.depth + 1, c.result.final_url) for c in kept for url in c.found
                ]
                admitted = await self._admit(conn, candidates, max_pages)
            fenced = frozenset(c.result.url for c in completions if c.result.url not in stored)
            return shared.Written(stored=frozenset(stored), fenced=fenced, admitted=admitted)

        return await self._run("cannot store outcomes in", work)

    async def release(
        self,
        holder: str,
        *,
        urls: Iterable[str],
        hosts: Mapping[str, float],
        everything: bool = False,
    ) -> None:
        held = list(urls)
        if not held and not hosts and not everything:
            return

        async def work(conn: _Counted) -> None:
            if held and not everything:
                await conn.execute(RELEASE_URLS, self.job_uid, holder, held)
            if hosts:
                names = list(hosts)
                starts = [at(hosts[h]) for h in names]
                await conn.execute(RELEASE_HOSTS, self.job_uid, holder, names, starts)
            if everything:  # what the holder took without knowing it (a cut-off claim)
                await conn.execute(RELEASE_EVERY_URL, self.job_uid, holder)
                await conn.execute(RELEASE_EVERY_HOST, self.job_uid, holder)

        await self._run("cannot release leases in", work)

    async def robots(self, host: str) -> list[frontier.RobotsRecord]:
        async def work(conn: _Counted) -> list[frontier.RobotsRecord]:
            rows = await conn.fetch(ROBOTS, self.job_uid, [f"http://{host}", f"https://{host}"])
            return [frontier_store.robots_record(row) for row in rows]

        return await self._run("cannot read robots.txt records in", work)

    async def finished(self) -> bool:
        async def work(conn: _Counted) -> bool:
            return bool(await conn.fetchval(FINISHED, self.job_uid))

        return await self._run("cannot read", work)

    async def knows(self, url: str) -> bool:
        async def work(conn: _Counted) -> bool:
            return bool(await conn.fetchval(KNOWS, self.job_uid, url))

        return await self._run("cannot read", work)
