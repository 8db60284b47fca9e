"""A crawl batch on SQLite in a few statements, each carrying many rows.

Why. aiosqlite runs SQLite in a thread of its own, and Python's sqlite3
lets go of the GIL for each step of a statement and takes it back to bind
the next row: `executemany` over N rows is N hand-offs of the GIL between
the writer thread and the event loop's. A crawl at full speed keeps the
loop's thread busy, so each hand-off waits for the switch interval (5 ms)
to force the GIL out of it, and a batch of a few hundred statement rows
took a few hundred milliseconds of wall time: the writer fell behind, and
the crawl waited on its store (`mandrill crawl --resume` ran at 0.82x of a
plain crawl). Here a batch is a handful of statements whatever its size,
each one step run by SQLite in C with the GIL released:

- frontier rows and pages: `INSERT ... VALUES (...), (...), ...`, up to
  MAX_PARAMS bound values a statement (SQLite's limit is 32,766 since 3.32);
- edges: one JSON object per batch, {source: [targets in document order]},
  expanded by json_each (the targets of a source stay in document order,
  which is rowid order, which is what export reads back);
- "done" marks: one `UPDATE ... WHERE url IN (...)` per chunk, found by the
  primary key (SQLite searches the key for each value of the list).

The statements are the same upserts as frontier_store.py's and
crawl_store.py's (ON CONFLICT DO NOTHING, an UPDATE to a fixed value), so
a batch written twice still changes nothing. Rare rows (retry attempts,
robots.txt per origin) stay one statement row each.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mandrill.adapters import database
from mandrill.domain.crawl import frontier

MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
"""Bound values a statement may carry (SQLITE_MAX_VARIABLE_NUMBER's default)."""
MAX_ROWS = 256
"""Rows a multi-row statement carries at most. A batch's rows go in statements of
MAX_ROWS, then of powers of two for the rest (256 + 128 + 64 + 2 for 450), so the
same few statement texts serve every batch: sqlite3 keeps each text it prepared
(128 of them), and a cache full of one-off sizes cost 12 MiB of memory."""

_VALUES = re.compile(r"^(?P<head>.+ VALUES )(?P<row>\(\?(?:, \?)*\))(?P<tail>.*)$", re.DOTALL)

EDGES = (
    "INSERT INTO crawl_edges (job_uid, source, target)"
    " SELECT ?, p.key, t.value FROM json_each(?) AS p, json_each(p.value) AS t WHERE true"
    " ON CONFLICT (job_uid, source, target) DO NOTHING"
)
"""A batch's edges of one job: (job uid, {source: [targets]}) as JSON.
(`WHERE true` is what SQLite's parser needs between INSERT ... SELECT and ON CONFLICT.)"""
MARK_DONE = (
    f"UPDATE crawl_frontier SET state = '{frontier.State.DONE}'"
    " WHERE job_uid = ? AND url IN ({marks})"
)


def values(sql: str, rows: Sequence[Sequence[Any]]) -> list[database.Statement]:
    """`sql`, an INSERT ... VALUES (?, ...) for one row, as statements of many rows each."""
    if not rows:
        return []
    match = _VALUES.match(sql)
    if match is None:
        raise ValueError(f"not an INSERT ... VALUES (?, ...) statement: {sql}")
    statements: list[database.Statement] = []
    for start, size in _chunks(len(rows), width=len(rows[0])):
        tuples = ", ".join([match["row"]] * size)
        params = [value for row in rows[start : start + size] for value in row]
        statements.append((f"{match['head']}{tuples}{match['tail']}", [params]))
    return statements


def edges(rows: Iterable[tuple[str, str, Sequence[str]]]) -> list[database.Statement]:
    """(job uid, source, targets) rows as one statement per job (one, from a sink)."""
    by_job: dict[str, dict[str, Sequence[str]]] = {}
    for job_uid, source, targets in rows:
        sources = by_job.setdefault(job_uid, {})
        # A source comes once per crawl from the engine; were it twice, keep both.
        sources[source] = [*sources[source], *targets] if source in sources else targets
    return [(EDGES, [(job_uid, _json(sources))]) for job_uid, sources in by_job.items()]


def done(rows: Iterable[tuple[str, str]]) -> list[database.Statement]:
    """(job uid, url) rows as "done" marks, a chunk of URLs a statement."""
    by_job: dict[str, list[str]] = {}
    for job_uid, url in rows:
        by_job.setdefault(job_uid, []).append(url)
    statements: list[database.Statement] = []
    for job_uid, found in by_job.items():
        for start, size in _chunks(len(found), width=1):
            marks = ", ".join(["?"] * size)
            chunk = found[start : start + size]
            statements.append((MARK_DONE.format(marks=marks), [[job_uid, *chunk]]))
    return statements


def _chunks(count: int, *, width: int) -> Iterator[tuple[int, int]]:
    """(start, size) of each statement's rows: full ones, then powers of two."""
    most = MAX_ROWS
    while most > 1 and most * width > MAX_PARAMS - 1:  # - 1: done's job uid
        most //= 2
    start = 0
    while count - start >= most:
        yield start, most
        start += most
    size = most
    while start < count:
        size //= 2
        if count - start >= size:
            yield start, size
            start += size


def _json(document: object) -> str:
    """Compact JSON, non-ASCII as is (SQLite reads UTF-8; no \\u escapes to undo)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
