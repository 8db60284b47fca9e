"""Fixtures for the store suite: one suite, two backends.

`store` is parametrized: every test that takes it runs once against a SQLite
file in the test's folder and once against a database of its own on the
session's real PostgreSQL server (tests/postgres.py). Tests read back what
the adapters wrote with `Store.query`, which talks to the backend directly
(sqlite3, asyncpg), not through the code under test.

The few tests that only make sense on one backend (a SQLite file that is
not a database, a PostgreSQL server stopped mid-run) say so in their names.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import sqlite3
from typing import Any

import asyncpg
import attrs
import pytest

from tests.postgres import PostgresServer

SQLITE, POSTGRESQL = "sqlite", "postgresql"
BACKENDS = [SQLITE, pytest.param(POSTGRESQL, marks=pytest.mark.postgres)]


@attrs.frozen
class Store:
    """A store under test: its URL, and a side door to read it."""

    backend: str
    url: str
    server: PostgresServer | None = None

    @property
    def path(self) -> pathlib.Path:
        """The SQLite file."""
        assert self.backend == SQLITE
        return pathlib.Path(self.url.removeprefix("sqlite:///"))

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of one query (`?` placeholders), read directly from the backend."""
        if self.backend == SQLITE:
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                return [tuple(r) for r in db.execute(sql, args).fetchall()]
        count = iter(range(1, 1000))
        numbered = re.sub(r"\?", lambda _: f"${next(count)}", sql)
        conn = await asyncpg.connect(self.url)
        try:
            return [tuple(r) for r in await conn.fetch(numbered, *args)]
        finally:
            await conn.close()

    async def execute(self, *statements: str) -> None:
        """Run statements directly on the backend (to set up a store by hand)."""
        if self.backend == SQLITE:
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                for statement in statements:
                    db.execute(statement)
                db.commit()
            return
        conn = await asyncpg.connect(self.url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def count(self, table: str, job_uid: str) -> int:
        ((found,),) = await self.query(f"SELECT COUNT(*) FROM {table} WHERE job_uid = ?", job_uid)
        return int(found)

    async def columns(self, table: str) -> list[str]:
        """The table's columns, in order."""
        if self.backend == SQLITE:
            return [str(row[1]) for row in await self.query(f"PRAGMA table_info({table})")]
        rows = await self.query(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = ? ORDER BY ordinal_position",
            table,
        )
        return [str(row[0]) for row in rows]

    async def tables(self) -> set[str]:
        if self.backend == SQLITE:
            rows = await self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = await self.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        return {str(row[0]) for row in rows}


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Store:
    """An empty store (nothing created yet) on each backend in turn."""
    if request.param == SQLITE:
        return Store(backend=SQLITE, url=f"sqlite:///{tmp_path / 'store.sqlite'}")
    server: PostgresServer = request.getfixturevalue("postgres")
    return Store(backend=POSTGRESQL, url=request.getfixturevalue("postgres_url"), server=server)
