"""Fixtures for the shared-frontier suite: workers over one frontier in real PostgreSQL.

`frontiers` opens PostgresSharedFrontier adapters on the test's own
database (tests/postgres.py), one per simulated worker, and closes them
afterwards; `query` reads the tables directly with asyncpg, not through the
code under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from mandrill.adapters import shared_frontier
from mandrill.store_url import StoreUrl

JOB_UID = "job-uid-1"

Query = Callable[..., Awaitable[list[tuple[Any, ...]]]]
Opener = Callable[[], Awaitable[shared_frontier.PostgresSharedFrontier]]


@pytest.fixture
async def frontiers(postgres_url: str) -> AsyncIterator[Opener]:
    """Open another worker's adapter on the test's database (migrated on first use)."""
    opened: list[shared_frontier.PostgresSharedFrontier] = []

    async def open_one() -> shared_frontier.PostgresSharedFrontier:
        one = shared_frontier.PostgresSharedFrontier.from_url(
            StoreUrl.parse(postgres_url), job_uid=JOB_UID
        )
        await one.db.open()
        opened.append(one)
        return one

    yield open_one
    for one in opened:
        await one.close()


@pytest.fixture
async def query(postgres_url: str) -> AsyncIterator[Query]:
    """Rows of one query ($n placeholders), read directly."""
    conn = await asyncpg.connect(postgres_url)

    async def run(sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await conn.fetch(sql, *args)]

    yield run
    await conn.close()
