"""One lazily opened aiosqlite connection to a store file, shared by its users.

The journal and the crawl store both keep one connection each, opened on
first use (schema created then), dropped after a failure and opened again on
the next use: a store that is missing at start-up or goes away for a while
costs errors for that time, never the process. A connection whose set-up
fails is closed, since aiosqlite's worker thread would otherwise outlive it
(and keep the process from exiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import sqlite3

import aiosqlite
import attrs

from mandrill.domain.errors import StoreError

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=5000")


def sqlite_path(url: str) -> pathlib.Path:
    """sqlite:///relative/path or sqlite:////absolute/path -> a filesystem path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"store URL {url!r} is not sqlite:///PATH")
    return pathlib.Path(url[len(prefix) :])


@attrs.define
class LazyConnection:
    path: pathlib.Path
    schema: str
    """SQL run on every open (CREATE ... IF NOT EXISTS)."""
    what: str
    """How errors name the store: "journal", "crawl store"."""
    pragmas: tuple[str, ...] = PRAGMAS
    _db: aiosqlite.Connection | None = None
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)

    async def get(self) -> aiosqlite.Connection:
        """The open connection, opening it first if needed; StoreError if it cannot be."""
        async with self._lock:
            if self._db is None:
                self._db = await self._open()
            return self._db

    async def _open(self) -> aiosqlite.Connection:
        try:
            db = await aiosqlite.connect(self.path)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open {self.what} {self.path}: {e}") from e
        try:
            for pragma in self.pragmas:
                await db.execute(pragma)
            await db.executescript(self.schema)
            await db.commit()
        except (sqlite3.Error, OSError) as e:
            with contextlib.suppress(sqlite3.Error):
                await db.close()
            raise StoreError(f"cannot open {self.what} {self.path}: {e}") from e
        return db

    async def reset(self) -> None:
        """Drop the connection (after a failure); the next `get` opens a new one."""
        async with self._lock:
            db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                await db.close()
