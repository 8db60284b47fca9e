"""The store's connection port, and the backend a store URL picks for it.

The journal and the crawl store each hold one `Database`: one connection,
opened on first use (the schema migrated then, see schema.py), dropped after
any failure and opened again on the next use. So a store that is missing at
start-up, or goes away for a while, costs StoreErrors for that time, never
the process; nothing has to notice the outage or its end. Operations on one
connection are serialised by a lock (a PostgreSQL connection runs one query
at a time, and a write's statements must commit or roll back together).

SQL is written once, with `?` placeholders; the PostgreSQL backend numbers
them ($1, $2, ...). Every message names the store by its path or redacted
URL, never with a password (see mandrill/store_url.py).

Two backends: SQLite (sqlite3 in a thread of its own, the embedded default) and PostgreSQL
(asyncpg, for several replicas or long history).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from mandrill.adapters import postgres, sqlite
from mandrill.store_url import Backend, StoreUrl

Rows = Sequence[Sequence[Any]]
Statement = tuple[str, Rows]
"""SQL with `?` placeholders and the rows to run it for (none: skipped)."""


class StoreMissingError(Exception):
    """There is no store (or no crawl results in it) at the given place."""


class Database(Protocol):
    """One lazily opened, self-healing connection to the store."""

    @property
    def where(self) -> str:
        """The store's path or redacted URL, for messages."""
        ...

    async def open(self) -> None:
        """Connect and migrate now; StoreError if the store cannot be used."""
        ...

    async def write(self, statements: Sequence[Statement]) -> None:
        """Run every statement for each of its rows, in one transaction; StoreError on failure."""
        ...

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one query; StoreError on failure."""
        ...

    async def close(self) -> None:
        """Drop the connection; a later use opens it again."""
        ...


class ReadRows(Protocol):
    """Read-only queries over an existing store, for export: it never creates or migrates one."""

    @property
    def where(self) -> str: ...

    @property
    def backend(self) -> Backend:
        """Which backend: the reader may word a query for it."""
        ...

    @property
    def order(self) -> str:
        """The column that orders rows as they were written (SQLite's rowid, PostgreSQL's seq)."""
        ...

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one query; StoreError on failure."""
        ...

    def iterate(self, sql: str, args: Sequence[Any] = ()) -> AsyncIterator[tuple[Any, ...]]:
        """The rows of one query, streamed; StoreError on failure."""
        ...


def for_url(url: StoreUrl, *, what: str, relaxed_sync: bool = False) -> Database:
    """The store's Database for one user (`what`: "journal", "crawl store").

    `relaxed_sync` lets SQLite skip the fsync on commit (in WAL mode a crash
    of the process still loses nothing; a power loss may lose the last
    commits): for crawl rows, which a crawl writes again from scratch."""
    if url.backend == "postgresql":
        return postgres.PostgresDatabase(url=url, what=what)
    pragmas = (*sqlite.PRAGMAS, "PRAGMA synchronous=NORMAL") if relaxed_sync else sqlite.PRAGMAS
    return sqlite.SqliteDatabase(path=url.sqlite_path, what=what, pragmas=pragmas)


def read_only(url: StoreUrl) -> AbstractAsyncContextManager[ReadRows]:
    """Open an existing store read-only; StoreMissingError if it is not there or unreachable."""
    if url.backend == "postgresql":
        return postgres.read_only(url, missing=StoreMissingError)
    return sqlite.read_only(url.sqlite_path, missing=StoreMissingError)
