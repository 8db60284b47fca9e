"""A crawl's frontier in the store: the SQL of mandrill.domain.crawl.frontier.

The crawl store's sink writes these rows in its batches, in this order in
one transaction: new frontier rows (admitted URLs and redirect hops), next
attempts, robots.txt per origin, then the pages and edges, then the pages'
frontier rows marked done. So a batch that commits holds each URL's
admission before its outcome, and the outcome with its "done"; a batch that
does not commit leaves all of it pending. Every statement is idempotent
(ON CONFLICT DO NOTHING, or an UPDATE to a fixed value), so a batch written
again changes nothing.

`load` reads a stored crawl back as a `Resumption`. It reads every frontier
row of the job once; that is what the crawl holds in memory anyway.

The same tables serve workers sharing a frontier (shared_frontier.py): a
worker leases pending rows of the hosts it holds (`leased_by`,
`lease_until`), the hosts themselves in crawl_host_leases, and the maxPages
budget is counted in crawl_budget. A single process needs none of them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from mandrill.adapters import database
from mandrill.domain.crawl import frontier, urls
from mandrill.domain.crawl.models import ErrorKind

INSERT_URL = (
    "INSERT INTO crawl_frontier (job_uid, url, state, depth, parent, host, ordinal)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_uid, url) DO NOTHING"
)
SET_ATTEMPT = "UPDATE crawl_frontier SET attempt = ? WHERE job_uid = ? AND url = ?"
MARK_DONE = (
    f"UPDATE crawl_frontier SET state = '{frontier.State.DONE}' WHERE job_uid = ? AND url = ?"
)
INSERT_ORIGIN = (
    "INSERT INTO crawl_hosts (job_uid, origin, robots_rules, unavailable, failure, message)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_uid, origin) DO NOTHING"
)

UrlRow = tuple[str, str, str, int, str | None, str, int | None]
AttemptRow = tuple[int, str, str]
DoneRow = tuple[str, str]
OriginRow = tuple[str, str, str | None, str | None, str | None, str]


def clear(job_uid: str) -> list[database.Statement]:
    """Statements that forget a job's frontier (a crawl that starts from scratch)."""
    return [
        ("DELETE FROM crawl_frontier WHERE job_uid = ?", [(job_uid,)]),
        ("DELETE FROM crawl_hosts WHERE job_uid = ?", [(job_uid,)]),
        ("DELETE FROM crawl_host_leases WHERE job_uid = ?", [(job_uid,)]),
        ("DELETE FROM crawl_budget WHERE job_uid = ?", [(job_uid,)]),
    ]


def admitted_row(job_uid: str, url: str, *, depth: int, parent: str | None, ordinal: int) -> UrlRow:
    """A pending crawl_frontier row."""
    state = frontier.State.PENDING.value
    return (job_uid, url, state, depth, parent, urls.authority_of(url), ordinal)


def alias_rows(job_uid: str, hops: Iterable[str]) -> list[UrlRow]:
    """crawl_frontier rows for redirect hops: seen, not admitted (no depth that counts)."""
    state = frontier.State.ALIAS.value
    return [(job_uid, hop, state, 0, None, urls.authority_of(hop), None) for hop in hops]


def origin_row(job_uid: str, record: frontier.RobotsRecord) -> OriginRow:
    """A crawl_hosts row."""
    failure = record.failure.value if record.failure is not None else None
    return (job_uid, record.origin, record.rules, record.unavailable, failure, record.message)


def robots_record(row: Iterable[Any]) -> frontier.RobotsRecord:
    """A crawl_hosts row read back: (origin, rules, unavailable, failure, message)."""
    origin, rules, unavailable, failure, message = row
    return frontier.RobotsRecord(
        origin=origin,
        rules=rules,
        unavailable=unavailable,
        failure=ErrorKind(failure) if failure is not None else None,
        message=message,
    )


async def load(db: database.Database, job_uid: str) -> frontier.Resumption | None:
    """The stored crawl of `job_uid`; None if it has no frontier (start from scratch)."""
    rows = await db.fetch(
        "SELECT url, state, depth, attempt, ordinal FROM crawl_frontier WHERE job_uid = ?",
        (job_uid,),
    )
    if not rows:
        return None
    pending: list[tuple[int, frontier.PendingUrl]] = []
    admitted = done = 0
    for url, state, depth, attempt, ordinal in rows:
        if state == frontier.State.PENDING:
            admitted += 1
            pending.append((int(ordinal), frontier.PendingUrl(url, int(depth), int(attempt))))
        elif state == frontier.State.DONE:
            admitted += 1
            done += 1
    pending.sort(key=lambda p: p[0])
    counts, outcomes = await stored_counts(db, job_uid)
    linked = await db.fetch("SELECT DISTINCT target FROM crawl_edges WHERE job_uid = ?", (job_uid,))
    origins = await db.fetch(
        "SELECT origin, robots_rules, unavailable, failure, message FROM crawl_hosts"
        " WHERE job_uid = ?",
        (job_uid,),
    )
    return frontier.Resumption(
        pending=tuple(p for _, p in pending),
        seen=frozenset(str(row[0]) for row in rows),
        admitted=admitted,
        rejected=outcomes - done,
        counts=counts,
        linked=frozenset(str(t) for (t,) in linked),
        robots=tuple(robots_record(row) for row in origins),
    )


async def stored_counts(db: database.Database, job_uid: str) -> tuple[frontier.Counts, int]:
    """The stored outcomes summed by error kind, and how many there are: where a
    resumed crawl's counters start, and a worker crawl's progress."""
    rows = await db.fetch(
        "SELECT error, COUNT(*), COALESCE(SUM(bytes), 0), COALESCE(SUM(links), 0)"
        " FROM crawl_pages WHERE job_uid = ? GROUP BY error",
        (job_uid,),
    )
    failures: collections.Counter[str] = collections.Counter()
    ok = size = links = outcomes = 0
    for error, count, body_bytes, found in rows:
        outcomes += int(count)
        size += int(body_bytes)
        links += int(found)
        if error is None:
            ok = int(count)
        else:
            failures[str(error)] = int(count)
    return frontier.Counts(pages_ok=ok, failures=dict(failures), edges=links, bytes=size), outcomes
