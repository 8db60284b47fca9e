"""The restart journal in SQLite (aiosqlite: the driver's calls run off the event loop).

Writes are keyed by the request's UID and use INSERT ... ON CONFLICT DO
NOTHING, so a replayed request never duplicates a row. The database is opened
lazily and re-opened after a failure: a store that is down at start-up or for
a while costs Saved=False on the requests of that time, never the operator.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3

import attrs

from mandrill.adapters.sqlite import LazyConnection
from mandrill.domain import timestamps
from mandrill.domain.errors import StoreError
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


@attrs.define
class SqliteJournal:
    """`Journal` over one SQLite file, shared by all requests of the process."""

    path: pathlib.Path
    _connection: LazyConnection = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._connection = LazyConnection(path=self.path, schema=SCHEMA, what="journal")

    async def open(self) -> None:
        """Create the schema now, so a misconfigured store shows at start-up in the log."""
        await self._connection.get()

    async def save(self, entry: JournalEntry) -> None:
        db = await self._connection.get()
        row = (
            entry.request.uid,
            entry.request.namespace,
            entry.request.name,
            entry.request.generation,
            json.dumps(dict(entry.spec), sort_keys=True),
            json.dumps([t.to_status() for t in entry.targets]),
            timestamps.format(entry.received),
        )
        try:
            await db.execute(
                "INSERT INTO restart_journal VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(request_uid) DO NOTHING",
                row,
            )
            await db.commit()
        except sqlite3.Error as e:
            await self._connection.reset()
            raise StoreError(f"cannot write journal {self.path}: {e}") from e

    async def close(self) -> None:
        await self._connection.reset()
