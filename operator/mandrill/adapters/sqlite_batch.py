"""A crawl batch on SQLite in a few statements, each carrying many rows.

Why. The store's SQLite runs in a thread of its own (sqlite.py), and
Python's sqlite3 lets go of the GIL for each step of a statement and takes it back to bind
the next row: `executemany` over N rows is N hand-offs of the GIL between
the writer thread and the event loop's. A crawl at full speed keeps the
loop's thread busy, so each hand-off waits for the switch interval (5 ms)
to force the GIL out of it, and a batch of a few hundred statement rows
took a few hundred milliseconds of wall time: the writer fell behind, and
the crawl waited on its store (`mandrill crawl --resume` ran at 0.82x of a
plain crawl). Here a batch is a handful of statements whatever its size,
each one step run by SQLite in C with the GIL released:

- pages: `INSERT ... VALUES (...), (...), ...`, one statement for up to
  MAX_PARAMS bound values (SQLite's limit is 32,766 since 3.32), so the
  values keep their types exactly (a float through JSON might not);
- frontier rows: a JSON array of rows, expanded by json_each (ints, text
  and NULLs only);
- edges: one JSON object per batch, {source: [targets in document order]},
  expanded by json_each (the targets of a source stay in document order,
  which is rowid order, which is what export reads back);
- "done" marks: one `UPDATE ... WHERE url IN (SELECT value FROM
  json_each(?))`, each URL found by the primary key.

Every statement still costs a few hand-offs between the two threads, so
there are as few as can be, and batches are large (crawl_store.BATCH_ROWS).

The statements are the same upserts as frontier_store.py's and
crawl_store.py's (ON CONFLICT DO NOTHING, an UPDATE to a fixed value), so
a batch written twice still changes nothing. Rare rows (retry attempts,
robots.txt per origin) stay one statement row each.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from mandrill.adapters import database, frontier_store
from mandrill.domain.crawl import frontier

MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
"""Bound values a statement may carry (SQLITE_MAX_VARIABLE_NUMBER's default)."""
_VALUES = re.compile(r"^(?P<head>.+ VALUES )(?P<row>\(\?(?:, \?)*\))(?P<tail>.*)$", re.DOTALL)

EDGES = (
    "INSERT INTO crawl_edges (job_uid, source, target)"
    " SELECT ?, p.key, t.value FROM json_each(?) AS p, json_each(p.value) AS t WHERE true"
    " ON CONFLICT (job_uid, source, target) DO NOTHING"
)
"""A batch's edges of one job: (job uid, {source: [targets]}) as JSON.
(`WHERE true` is what SQLite's parser needs between INSERT ... SELECT and ON CONFLICT.)"""
URLS = (
    "INSERT INTO crawl_frontier (job_uid, url, state, depth, parent, host, ordinal)"
    " SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'),"
    " json_extract(value, '$[5]') FROM json_each(?) WHERE true"
    " ON CONFLICT (job_uid, url) DO NOTHING"
)
"""frontier_store.INSERT_URL for a batch's rows of one job: (job uid, [[url, state,
depth, parent, host, ordinal], ...]) as JSON."""
MARK_DONE = (
    f"UPDATE crawl_frontier SET state = '{frontier.State.DONE}'"
    " WHERE job_uid = ? AND url IN (SELECT value FROM json_each(?))"
)
"""frontier_store.MARK_DONE for a batch's URLs of one job: (job uid, [urls]) as JSON."""


def values(sql: str, rows: Sequence[Sequence[Any]]) -> list[database.Statement]:
    """`sql`, an INSERT ... VALUES (?, ...) for one row, as statements of many rows each."""
    if not rows:
        return []
    match = _VALUES.match(sql)
    if match is None:
        raise ValueError(f"not an INSERT ... VALUES (?, ...) statement: {sql}")
    per = max(1, MAX_PARAMS // len(rows[0]))
    statements: list[database.Statement] = []
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        tuples = ", ".join([match["row"]] * len(chunk))
        params = [value for row in chunk for value in row]
        statements.append((f"{match['head']}{tuples}{match['tail']}", [params]))
    return statements


def urls(rows: Iterable[frontier_store.UrlRow]) -> list[database.Statement]:
    """frontier_store.admitted_row / alias_rows rows, one statement per job."""
    by_job: dict[str, list[tuple[object, ...]]] = {}
    for job_uid, *row in rows:
        by_job.setdefault(job_uid, []).append(tuple(row))
    return [(URLS, [(job_uid, _json(found))]) for job_uid, found in by_job.items()]


def edges(rows: Iterable[tuple[str, str, Sequence[str]]]) -> list[database.Statement]:
    """(job uid, source, targets) rows as one statement per job (one, from a sink)."""
    by_job: dict[str, dict[str, Sequence[str]]] = {}
    for job_uid, source, targets in rows:
        sources = by_job.setdefault(job_uid, {})
        # A source comes once per crawl from the engine; were it twice, keep both.
        sources[source] = [*sources[source], *targets] if source in sources else targets
    return [(EDGES, [(job_uid, _json(sources))]) for job_uid, sources in by_job.items()]


def done(rows: Iterable[frontier_store.DoneRow]) -> list[database.Statement]:
    """(job uid, url) rows as "done" marks, one statement per job."""
    by_job: dict[str, list[str]] = {}
    for job_uid, url in rows:
        by_job.setdefault(job_uid, []).append(url)
    return [(MARK_DONE, [(job_uid, _json(found))]) for job_uid, found in by_job.items()]


def _json(document: object) -> str:
    """Compact JSON, non-ASCII as is (SQLite reads UTF-8; no \\u escapes to undo)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
