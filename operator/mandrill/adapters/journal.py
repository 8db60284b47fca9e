"""The restart journal in SQLite (aiosqlite: the driver's calls run off the event loop).

Writes are keyed by the request's UID and use INSERT ... ON CONFLICT DO
NOTHING, so a replayed request never duplicates a row. The database is opened
lazily and re-opened after a failure: a store that is down at start-up or for
a while costs Saved=False on the requests of that time, never the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import sqlite3

import aiosqlite
import attrs

from mandrill.domain.errors import StoreError
from mandrill.domain.restart.models import timestamp
from mandrill.domain.restart.process import JournalEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS restart_journal (
    request_uid  TEXT PRIMARY KEY,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    spec_json    TEXT NOT NULL,
    targets_json TEXT NOT NULL,
    received_at  TEXT NOT NULL
);
"""


def sqlite_path(url: str) -> pathlib.Path:
    """sqlite:///relative/path or sqlite:////absolute/path -> a filesystem path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"store URL {url!r} is not sqlite:///PATH")
    return pathlib.Path(url[len(prefix) :])


@attrs.define
class SqliteJournal:
    """`Journal` over one SQLite file, shared by all requests of the process."""

    path: pathlib.Path
    _db: aiosqlite.Connection | None = None
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)

    async def _connection(self) -> aiosqlite.Connection:
        async with self._lock:
            if self._db is None:
                try:
                    db = await aiosqlite.connect(self.path)
                except (sqlite3.Error, OSError) as e:
                    raise StoreError(f"cannot open journal {self.path}: {e}") from e
                try:
                    await db.execute("PRAGMA journal_mode=WAL")
                    await db.execute("PRAGMA busy_timeout=5000")
                    await db.executescript(SCHEMA)
                    await db.commit()
                except (sqlite3.Error, OSError) as e:
                    # Close it, or its (non-daemon) worker thread outlives us.
                    with contextlib.suppress(sqlite3.Error):
                        await db.close()
                    raise StoreError(f"cannot open journal {self.path}: {e}") from e
                self._db = db
            return self._db

    async def open(self) -> None:
        """Create the schema now, so a misconfigured store shows at start-up in the log."""
        await self._connection()

    async def save(self, entry: JournalEntry) -> None:
        db = await self._connection()
        row = (
            entry.request.uid,
            entry.request.namespace,
            entry.request.name,
            entry.request.generation,
            json.dumps(dict(entry.spec), sort_keys=True),
            json.dumps([t.to_status() for t in entry.targets]),
            timestamp(entry.received),
        )
        try:
            await db.execute(
                "INSERT INTO restart_journal VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(request_uid) DO NOTHING",
                row,
            )
            await db.commit()
        except sqlite3.Error as e:
            await self._reset()
            raise StoreError(f"cannot write journal {self.path}: {e}") from e

    async def _reset(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                await db.close()

    async def close(self) -> None:
        await self._reset()
