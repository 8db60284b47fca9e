"""The restart journal on both backends: the schema is created on open, a replayed
request leaves one row, saves at once share commits (and all land, or all fail, and a
cancelled one stops nobody else), an unusable store raises StoreError and the journal
recovers once the store works (it re-opens lazily), every save's outcome reaches the
metrics hook, and a failed open leaks no connection."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mandrill.adapters import schema, sqlite
from mandrill.adapters.journal import StoreJournal
from mandrill.domain.errors import StoreError
from mandrill.domain.restart.models import Kind, Outcome, RequestRef, TargetResult
from mandrill.domain.restart.process import JournalEntry
from mandrill.store_url import StoreUrl
from tests.postgres import PostgresServer
from tests.store.conftest import Store
from tests.unit.fakes import NOW, REQUEST

TARGET = TargetResult(
    kind=Kind.POD, name="web-a", uid="u1", action="Delete", outcome=Outcome.PENDING
)


def entry(request: RequestRef = REQUEST) -> JournalEntry:
    return JournalEntry(
        request=request, spec={"target": {"name": "web-a"}}, targets=(TARGET,), received=NOW
    )


async def rows(store: Store) -> list[tuple[Any, ...]]:
    return await store.query("SELECT * FROM restart_journal ORDER BY request_uid")


@pytest.fixture
async def journal(store: Store) -> AsyncIterator[StoreJournal]:
    j = StoreJournal.from_url(StoreUrl.parse(store.url))
    yield j
    await j.close()


async def test_open_creates_the_schema(journal: StoreJournal, store: Store) -> None:
    await journal.open()
    assert await store.columns("restart_journal") == [
        "request_uid",
        "namespace",
        "name",
        "generation",
        "spec_json",
        "targets_json",
        "received_at",
    ]
    assert await store.query("SELECT MAX(version) FROM mandrill_schema") == [(schema.latest(),)]


async def test_saving_a_request_twice_leaves_one_row(journal: StoreJournal, store: Store) -> None:
    await journal.save(entry())
    await journal.save(entry())
    (row,) = await rows(store)
    uid, namespace, name, generation, spec_json, targets_json, received = row
    assert (uid, namespace, name, generation) == ("req-uid-1", "shop", "restart-web", 3)
    assert json.loads(spec_json) == {"target": {"name": "web-a"}}
    assert json.loads(targets_json) == [TARGET.to_status()]
    assert received == "2025-03-01T12:00:00.000000Z"
    other = RequestRef(namespace="shop", name="again", uid="req-uid-2")
    await journal.save(entry(other))
    assert [r[0] for r in await rows(store)] == ["req-uid-1", "req-uid-2"]


def many(count: int) -> list[JournalEntry]:
    return [
        entry(RequestRef(namespace="shop", name=f"r{n}", uid=f"uid-{n:03}")) for n in range(count)
    ]


async def test_saves_at_once_share_commits_and_all_land(
    journal: StoreJournal, store: Store
) -> None:
    await asyncio.gather(*(journal.save(e) for e in many(50)))
    assert await store.query("SELECT COUNT(*) FROM restart_journal") == [(50,)]
    assert 1 <= journal.transactions <= 2, "50 saves at once are one or two commits, not 50"


async def test_a_cancelled_save_stops_no_other(journal: StoreJournal, store: Store) -> None:
    await journal.open()
    entries = many(20)
    saves = [asyncio.create_task(journal.save(e)) for e in entries]
    saves[3].cancel()
    results = await asyncio.gather(*saves, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 3] == [None] * 19
    found = {uid for (uid,) in await store.query("SELECT request_uid FROM restart_journal")}
    assert found >= {e.request.uid for i, e in enumerate(entries) if i != 3}


async def test_a_generation_beyond_32_bits_is_kept(journal: StoreJournal, store: Store) -> None:
    """metadata.generation is an int64: PostgreSQL's column must be BIGINT."""
    big = RequestRef(namespace="shop", name="old", uid="req-big", generation=2**40)
    await journal.save(entry(big))
    assert await store.query("SELECT generation FROM restart_journal") == [(2**40,)]


async def test_unusable_sqlite_path_raises_store_error_then_recovers(
    tmp_path: pathlib.Path,
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a regular file where a directory should be")
    url = f"sqlite:///{blocker / 'journal.sqlite'}"
    outcomes: list[str] = []
    journal = StoreJournal.from_url(StoreUrl.parse(url), on_save=outcomes.append)
    try:
        with pytest.raises(StoreError, match="cannot open journal"):
            await journal.save(entry())
        with pytest.raises(StoreError):
            await journal.open()
        together = await asyncio.gather(*(journal.save(e) for e in many(5)), return_exceptions=True)
        assert [type(r) for r in together] == [StoreError] * 5, "a failed commit fails all in it"
        blocker.unlink()
        blocker.mkdir()
        await journal.save(entry())
    finally:
        await journal.close()
    assert [r[0] for r in await rows(Store(backend="sqlite", url=url))] == ["req-uid-1"]
    # Each save counted once, by its own outcome (open() is no save).
    assert outcomes == ["failed"] * 6 + ["saved"]


@pytest.mark.postgres
async def test_a_postgresql_database_not_there_yet_raises_then_recovers(
    postgres: PostgresServer, postgres_url: str
) -> None:
    """The server answers but the database is missing (not yet created): StoreError,
    and the first save after it exists works, with no restart of anything."""
    url = postgres.url("late_journal")
    journal = StoreJournal.from_url(StoreUrl.parse(url))
    try:
        with pytest.raises(
            StoreError, match=r'cannot open journal .*"late_journal" does not exist'
        ):
            await journal.save(entry())
        postgres.psql("CREATE DATABASE late_journal")
        await journal.save(entry())
    finally:
        await journal.close()
    assert [r[0] for r in await rows(Store(backend="postgresql", url=url))] == ["req-uid-1"]


async def test_failed_sqlite_open_closes_its_connection(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that is not a database opens, then fails on the first PRAGMA: that
    connection (and its thread) must go."""
    opened: list[sqlite.Connection] = []
    real_open = sqlite.Connection.open

    async def recording_open(path: pathlib.Path) -> sqlite.Connection:
        connection = await real_open(path)
        opened.append(connection)
        return connection

    monkeypatch.setattr(sqlite.Connection, "open", recording_open)
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"not a database " * 100)
    journal = StoreJournal.from_url(StoreUrl.parse(f"sqlite:///{path}"))
    try:
        with pytest.raises(StoreError, match="cannot open journal"):
            await journal.save(entry())
        assert len(opened) == 1
        assert [c.closed for c in opened] == [True]
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            _ = opened[0].db.total_changes
    finally:
        await journal.close()


@pytest.mark.postgres
async def test_failed_postgresql_open_leaves_no_session(
    postgres: PostgresServer, postgres_url: str
) -> None:
    """A store whose schema is newer than this code is refused at open, and the
    connection that found out is closed: the server has no session of ours left."""
    store = Store(backend="postgresql", url=postgres_url)
    await store.execute(
        schema.CREATE_VERSION_TABLE,
        "INSERT INTO mandrill_schema VALUES (99, 'from the future', 'then')",
    )
    journal = StoreJournal.from_url(StoreUrl.parse(postgres_url))
    try:
        with pytest.raises(StoreError, match="schema version 99, newer than this mandrill"):
            await journal.open()
        sessions = await store.query(
            "SELECT COUNT(*) FROM pg_stat_activity"
            " WHERE application_name = 'mandrill' AND datname = current_database()"
        )
        assert sessions == [(0,)]
    finally:
        await journal.close()
