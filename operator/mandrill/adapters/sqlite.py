"""The SQLite backend of the store: one aiosqlite connection per user of a store file.

aiosqlite runs SQLite in a thread of its own, so the event loop never waits
on the disk. The connection is opened on first use (pragmas set, schema
migrated), dropped after a failure and opened again on the next use. A
connection whose set-up fails is closed, since aiosqlite's worker thread
would otherwise outlive it (and keep the process from exiting); so is one
whose operation was cancelled, whose transaction state is then unknown.

Reading for export is plain sqlite3, read-only (mode=ro): it never creates a
store that is not there. Its calls block, which is what a one-shot command
wants: nothing else runs on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import attrs

from mandrill.adapters import schema
from mandrill.domain import timestamps
from mandrill.domain.errors import StoreError
from mandrill.store_url import Backend

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=5000")
T = TypeVar("T")


@attrs.define
class SqliteDatabase:
    """`Database` over one SQLite file."""

    path: pathlib.Path
    what: str
    """How errors name the store's user: "journal", "crawl store"."""
    pragmas: tuple[str, ...] = PRAGMAS
    migrations: Sequence[schema.Migration] = schema.MIGRATIONS
    _db: aiosqlite.Connection | None = None
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    _closing: set[asyncio.Task[None]] = attrs.Factory(set)

    @property
    def where(self) -> str:
        return str(self.path)

    async def open(self) -> None:
        async with self._lock:
            await self._get()

    async def write(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        async def run(db: aiosqlite.Connection) -> None:
            try:
                for sql, rows in statements:
                    if len(rows) == 1:
                        await db.execute(sql, rows[0])
                    elif rows:
                        await db.executemany(sql, rows)
                await db.commit()
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                raise

        await self._use("cannot write", run)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async def run(db: aiosqlite.Connection) -> list[tuple[Any, ...]]:
            async with db.execute(sql, args) as cursor:
                return [tuple(row) for row in await cursor.fetchall()]

        return await self._use("cannot read", run)

    async def _use(self, doing: str, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `work` on the connection (opened if need be), alone; after a failure, drop it."""
        async with self._lock:
            db = await self._get()
            try:
                return await work(db)
            except sqlite3.Error as e:
                await self._drop()
                raise StoreError(f"{doing} {self.what} {self.path}: {e}") from e
            except asyncio.CancelledError:
                self._drop_soon()
                raise

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
        if self._closing:
            await asyncio.gather(*self._closing)

    async def _get(self) -> aiosqlite.Connection:
        """The open connection (the lock held), opening it first if needed."""
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
            await self._migrate(db)
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                await db.close()
            if isinstance(e, sqlite3.Error | OSError):
                raise StoreError(f"cannot open {self.what} {self.path}: {e}") from e
            raise
        return db

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        """Apply pending migrations in one write transaction (BEGIN IMMEDIATE: one migrator)."""
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute(schema.CREATE_VERSION_TABLE)
            async with db.execute(schema.CURRENT_VERSION) as cursor:
                row = await cursor.fetchone()
            current = int(row[0]) if row is not None else 0
            applied_at = timestamps.format(timestamps.now())
            for migration in schema.pending(current, self.migrations, where=str(self.path)):
                for statement in migration.sqlite:
                    await db.execute(statement)
                await db.execute(
                    schema.RECORD_VERSION,
                    (migration.version, migration.description, applied_at),
                )
            await db.commit()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await db.rollback()
            raise

    async def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                await db.close()

    def _drop_soon(self) -> None:
        """Drop the connection without waiting (we are being cancelled); close() awaits it."""
        db, self._db = self._db, None
        if db is not None:
            task = asyncio.get_running_loop().create_task(_close_quietly(db))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


async def _close_quietly(db: aiosqlite.Connection) -> None:
    """Roll back, then close: a write cancelled between its statements leaves a
    transaction open and a statement unfinalized, and sqlite3's close then only
    defers the close (the write lock held until the garbage collector runs), so
    the next connection, a resumed crawl's say, would find the store locked."""
    with contextlib.suppress(sqlite3.Error):
        await db.rollback()
    with contextlib.suppress(sqlite3.Error):
        await db.close()


@attrs.frozen
class SqliteReader:
    """`ReadRows` over a read-only sqlite3 connection."""

    db: sqlite3.Connection
    path: pathlib.Path
    order: str = "rowid"
    backend: Backend = "sqlite"

    @property
    def where(self) -> str:
        return str(self.path)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return [tuple(row) for row in self.db.execute(sql, tuple(args)).fetchall()]
        except sqlite3.Error as e:
            raise StoreError(f"cannot read store {self.path}: {e}") from e

    async def iterate(self, sql: str, args: Sequence[Any] = ()) -> AsyncIterator[tuple[Any, ...]]:
        try:
            cursor = self.db.execute(sql, tuple(args))
            for row in cursor:
                yield tuple(row)
        except sqlite3.Error as e:
            raise StoreError(f"cannot read store {self.path}: {e}") from e


@contextlib.asynccontextmanager
async def read_only(path: pathlib.Path, *, missing: type[Exception]) -> AsyncIterator[SqliteReader]:
    """Open `path` read-only; `missing` if there is no file or it is no database."""
    db = _connect_read_only(path, missing=missing)
    try:
        yield SqliteReader(db=db, path=path)
    finally:
        db.close()


def _connect_read_only(path: pathlib.Path, *, missing: type[Exception]) -> sqlite3.Connection:
    if not path.is_file():
        raise missing(f"no store at {path}")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise missing(f"cannot open store {path}: {e}") from e
