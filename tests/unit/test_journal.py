"""The SQLite journal on a real file: the schema is created on open, a replayed request
leaves one row, an unusable path raises StoreError and the journal recovers once the
path works (it re-opens lazily), and a failed open leaks no connection."""

from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import pytest

from mandrill.adapters.journal import SqliteJournal
from mandrill.domain.errors import StoreError
from mandrill.domain.restart.models import Kind, Outcome, RequestRef, TargetResult
from mandrill.domain.restart.process import JournalEntry
from tests.unit.fakes import NOW, REQUEST

TARGET = TargetResult(
    kind=Kind.POD, name="web-a", uid="u1", action="Delete", outcome=Outcome.PENDING
)


def entry(request: RequestRef = REQUEST) -> JournalEntry:
    return JournalEntry(
        request=request, spec={"target": {"name": "web-a"}}, targets=(TARGET,), received=NOW
    )


def rows(path: pathlib.Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT * FROM restart_journal ORDER BY request_uid").fetchall()


@pytest.fixture
async def journal(tmp_path: pathlib.Path) -> AsyncIterator[SqliteJournal]:
    j = SqliteJournal(path=tmp_path / "journal.sqlite")
    yield j
    await j.close()


async def test_open_creates_the_schema(journal: SqliteJournal) -> None:
    await journal.open()
    with contextlib.closing(sqlite3.connect(journal.path)) as db:
        columns = [c[1] for c in db.execute("PRAGMA table_info(restart_journal)")]
    assert columns == [
        "request_uid",
        "namespace",
        "name",
        "generation",
        "spec_json",
        "targets_json",
        "received_at",
    ]


async def test_saving_a_request_twice_leaves_one_row(journal: SqliteJournal) -> None:
    await journal.save(entry())
    await journal.save(entry())
    (row,) = rows(journal.path)
    uid, namespace, name, generation, spec_json, targets_json, received = row
    assert (uid, namespace, name, generation) == ("req-uid-1", "shop", "restart-web", 3)
    assert json.loads(spec_json) == {"target": {"name": "web-a"}}
    assert json.loads(targets_json) == [TARGET.to_status()]
    assert received == "2025-03-01T12:00:00.000000Z"
    other = RequestRef(namespace="shop", name="again", uid="req-uid-2")
    await journal.save(entry(other))
    assert [r[0] for r in rows(journal.path)] == ["req-uid-1", "req-uid-2"]


async def test_unusable_path_raises_store_error_then_recovers(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a regular file where a directory should be")
    journal = SqliteJournal(path=blocker / "journal.sqlite")
    try:
        with pytest.raises(StoreError, match="cannot open journal"):
            await journal.save(entry())
        with pytest.raises(StoreError):
            await journal.open()
        blocker.unlink()
        blocker.mkdir()
        await journal.save(entry())
    finally:
        await journal.close()
    assert [r[0] for r in rows(blocker / "journal.sqlite")] == ["req-uid-1"]


async def test_failed_open_closes_its_connection(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that is not a database opens, then fails on the first PRAGMA: that
    connection (and its worker thread, which keeps the process from exiting) must go."""
    opened: list[aiosqlite.Connection] = []
    real_connect = aiosqlite.connect

    def recording_connect(*args: Any, **kwargs: Any) -> aiosqlite.Connection:
        connection = real_connect(*args, **kwargs)
        opened.append(connection)
        return connection

    monkeypatch.setattr(aiosqlite, "connect", recording_connect)
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"not a database " * 100)
    journal = SqliteJournal(path=path)
    try:
        with pytest.raises(StoreError, match="cannot open journal"):
            await journal.save(entry())
        left_open = [c for c in opened if c._connection is not None]
        assert left_open == []
    finally:
        for c in opened:
            await c.close()
        await journal.close()
