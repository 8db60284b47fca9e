"""The SQLite backend of the store: one sqlite3 connection per user of a store file,
used from a thread of its own.

The event loop never waits on the disk: every operation on the connection
is one call run in the connection's thread (a single-thread executor), and
the loop awaits its end. One call, not one per statement: a write's
statements, its commit (or its rollback after a failure) all run in that
thread together. aiosqlite, used here before, hands each execute, each
commit and each fetch over on its own; under a busy loop every hand-off
waited for the loop's next turn and for the GIL, and a crawl's batch of six
statements took over 100 ms of such waits (docs/crawl-jobs.md, `--resume`).

The connection is opened on first use (pragmas set, schema migrated),
dropped after a failure and opened again on the next use. A connection
whose set-up fails is closed and its thread let go; so is one whose caller
was cancelled: the call itself runs on to its commit or rollback in the
thread, and the close is queued behind it.

Reading for export is plain sqlite3, read-only (mode=ro): it never creates a
store that is not there. Its calls block, which is what a one-shot command
wants: nothing else runs on its event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import pathlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import attrs

from mandrill.adapters import schema
from mandrill.domain import timestamps
from mandrill.domain.errors import StoreError
from mandrill.store_url import Backend

BUSY_SECONDS = 5.0
"""How long a statement waits for another connection's lock (busy_timeout)."""
PRAGMAS = ("PRAGMA journal_mode=WAL", f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
THREAD_NAME = "mandrill-sqlite"
T = TypeVar("T")
Statements = Sequence[tuple[str, Sequence[Sequence[Any]]]]


@attrs.define
class Connection:
    """A sqlite3 connection and the one thread it is used from."""

    db: sqlite3.Connection
    thread: concurrent.futures.ThreadPoolExecutor
    closed: bool = False
    """The connection is closed and its thread let go (for tests)."""

    @classmethod
    async def open(cls, path: pathlib.Path) -> Connection:
        """Connect in a new thread of its own (sqlite3 then checks it is only used there)."""
        thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=THREAD_NAME
        )
        try:
            db = await asyncio.get_running_loop().run_in_executor(thread, sqlite3.connect, path)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(db=db, thread=thread)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, work, self.db)

    async def close(self) -> None:
        """Close after whatever is queued; the thread ends once it has run."""
        try:
            await self.run(_close_quietly)
        finally:
            self.thread.shutdown(wait=False)
            self.closed = True


@attrs.define
class SqliteDatabase:
    """`Database` over one SQLite file."""

    path: pathlib.Path
    what: str
    """How errors name the store's user: "journal", "crawl store"."""
    pragmas: tuple[str, ...] = PRAGMAS
    migrations: Sequence[schema.Migration] = schema.MIGRATIONS
    _db: Connection | None = None
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    _closing: set[asyncio.Task[None]] = attrs.Factory(set)

    @property
    def where(self) -> str:
        return str(self.path)

    async def open(self) -> None:
        async with self._lock:
            await self._get()

    async def write(self, statements: Statements) -> None:
        await self._use("cannot write", functools.partial(_write, statements=statements))

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._use("cannot read", functools.partial(_fetch, sql=sql, args=args))

    async def _use(self, doing: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the connection (opened if need be), alone; after a failure, drop it."""
        async with self._lock:
            db = await self._get()
            try:
                return await db.run(work)
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

    async def _get(self) -> Connection:
        """The open connection (the lock held), opening it first if needed."""
        if self._db is None:
            self._db = await self._open()
        return self._db

    async def _open(self) -> Connection:
        try:
            db = await Connection.open(self.path)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open {self.what} {self.path}: {e}") from e
        set_up = functools.partial(
            _set_up, pragmas=self.pragmas, migrations=self.migrations, where=str(self.path)
        )
        try:
            await db.run(set_up)
        except BaseException as e:
            await db.close()
            if isinstance(e, sqlite3.Error | OSError):
                raise StoreError(f"cannot open {self.what} {self.path}: {e}") from e
            raise
        return db

    async def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    def _drop_soon(self) -> None:
        """Drop the connection without waiting (we are being cancelled); close() awaits it."""
        db, self._db = self._db, None
        if db is not None:
            task = asyncio.get_running_loop().create_task(db.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


# What runs in a connection's thread: each a whole operation, ended by a commit or a rollback.


def _write(db: sqlite3.Connection, *, statements: Statements) -> None:
    """Every statement for each of its rows, then commit; roll back on any failure."""
    try:
        for sql, rows in statements:
            if len(rows) == 1:
                db.execute(sql, rows[0])
            elif rows:
                db.executemany(sql, rows)
        db.commit()
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.rollback()
        raise


def _fetch(db: sqlite3.Connection, *, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in db.execute(sql, tuple(args)).fetchall()]


def _set_up(
    db: sqlite3.Connection,
    *,
    pragmas: Sequence[str],
    migrations: Sequence[schema.Migration],
    where: str,
) -> None:
    for pragma in pragmas:
        patiently(db, pragma)
    _migrate(db, migrations=migrations, where=where)


def patiently(
    db: sqlite3.Connection,
    sql: str,
    *,
    within: float = BUSY_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """`sql`, again while the file is locked, for up to `within` seconds.

    For the pragmas: switching a file to WAL needs an exclusive lock, and SQLite
    refuses it at once when another connection holds any, without the busy
    wait that statements get. Two users of one new file opening together (the
    journal and the crawl store at start-up) then failed one of them: "database
    is locked" in no time at all."""
    deadline = clock() + within
    pause = 0.005
    while True:
        try:
            db.execute(sql)
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or clock() >= deadline:
                raise
        else:
            return
        sleep(pause)
        pause = min(pause * 2, 0.1)


def _migrate(db: sqlite3.Connection, *, migrations: Sequence[schema.Migration], where: str) -> None:
    """Apply pending migrations in one write transaction (BEGIN IMMEDIATE: one migrator)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(schema.CREATE_VERSION_TABLE)
        row = db.execute(schema.CURRENT_VERSION).fetchone()
        current = int(row[0]) if row is not None else 0
        applied_at = timestamps.format(timestamps.now())
        for migration in schema.pending(current, migrations, where=where):
            for statement in migration.sqlite:
                db.execute(statement)
            db.execute(
                schema.RECORD_VERSION, (migration.version, migration.description, applied_at)
            )
        db.commit()
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.rollback()
        raise


def _close_quietly(db: sqlite3.Connection) -> None:
    """Roll back, then close: a write cut off between its statements would leave a
    transaction open and a statement unfinalized, and sqlite3's close then only
    defers the close (the write lock held until the garbage collector runs), so
    the next connection, a resumed crawl's say, would find the store locked."""
    with contextlib.suppress(sqlite3.Error):
        db.rollback()
    with contextlib.suppress(sqlite3.Error):
        db.close()


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
