"""The PostgreSQL backend of the store: one asyncpg connection per user of the store.

Same contract as the SQLite backend: opened on first use (schema migrated
under an advisory lock, so replicas starting together migrate once), dropped
after any failure and opened again on the next use. A server that is down at
start-up, restarted, or failed over costs StoreErrors while it is away; the
first use after it is back reconnects. One connection each, not a pool: the
journal writes one row per request and the crawl store's batches are
serialised anyway, so a pool would only add connections that can break.

Connecting and each command have timeouts, so a server that stops answering
(rather than refusing) costs a bounded wait, not a hung request or crawl.
A cancelled operation drops its connection: asyncpg cannot say what state a
query cut short left it in.

Errors name the store by its redacted URL, and everything a driver says goes
through `StoreUrl.scrub`: the password never reaches a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import attrs

from mandrill.adapters import schema
from mandrill.domain import timestamps
from mandrill.domain.errors import StoreError
from mandrill.store_url import Backend, StoreUrl

CONNECT_TIMEOUT = 5.0
"""Seconds to connect (and authenticate) before the use fails."""
COMMAND_TIMEOUT = 15.0
"""Seconds one statement may take (a batch of thousands of rows is one): under the default
drain timeout (20 s), so a server that hangs cannot by itself hold a drain past its end."""
MIGRATION_LOCK = int.from_bytes(b"mandrill", "big")
"""The advisory lock key that serialises migrations, across every replica."""
SERVER_SETTINGS = {"application_name": "mandrill"}
T = TypeVar("T")
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
"""What a lost, refused, timed out or failing connection raises. InternalClientError too:
a server that ends an idle session (a shutdown, pg_terminate_backend, a session timeout)
sends an error before it closes, and asyncpg, reading the error before the close, is left
refusing every command with "another operation is in progress" until the close arrives."""


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2, ... (our SQL has no literal `?`)."""
    count = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


async def _connect(url: StoreUrl, **settings: str) -> asyncpg.Connection:
    connection: asyncpg.Connection = await asyncpg.connect(
        url.url,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        server_settings={**SERVER_SETTINGS, **settings},
    )
    return connection


@attrs.define
class PostgresDatabase:
    """`Database` over one PostgreSQL database."""

    url: StoreUrl
    what: str
    """How errors name the store's user: "journal", "crawl store"."""
    migrations: Sequence[schema.Migration] = schema.MIGRATIONS
    settings: Mapping[str, str] = attrs.Factory(dict)
    """Server settings for the session (e.g. idle_in_transaction_session_timeout)."""
    _conn: asyncpg.Connection | None = None
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)

    @property
    def where(self) -> str:
        return self.url.redacted

    async def open(self) -> None:
        async with self._lock:
            await self._get()

    async def write(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for sql, rows in statements:
                    if len(rows) == 1:
                        await conn.execute(numbered(sql), *rows[0])
                    elif rows:
                        await conn.executemany(numbered(sql), rows)

        await self._use("cannot write", run)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async def run(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in await conn.fetch(numbered(sql), *args)]

        return await self._use("cannot read", run)

    async def transact(self, doing: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work` in one transaction on the connection, alone: for SQL that must read
        what it writes (the shared frontier's leases). StoreError as `write`'s."""

        async def run(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await work(conn)

        return await self._use(doing, run)

    async def _use(self, doing: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work` on the connection (opened if need be), alone; after a failure, drop it."""
        async with self._lock:
            conn = await self._get()
            try:
                return await work(conn)
            except DRIVER_ERRORS as e:
                self._drop()
                raise StoreError(self._message(doing, e)) from e
            except asyncio.CancelledError:
                self._drop()
                raise

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await conn.close(timeout=CONNECT_TIMEOUT)
            if not conn.is_closed():
                conn.terminate()

    def _message(self, doing: str, error: BaseException) -> str:
        return self.url.scrub(f"{doing} {self.what} {self.where}: {_describe(error)}")

    async def _get(self) -> asyncpg.Connection:
        """The open connection (the lock held), opening it first if needed."""
        if self._conn is not None and self._conn.is_closed():
            self._conn = None
        if self._conn is None:
            self._conn = await self._open()
        return self._conn

    async def _open(self) -> asyncpg.Connection:
        try:
            conn = await _connect(self.url, **self.settings)
        except DRIVER_ERRORS as e:
            raise StoreError(self._message("cannot open", e)) from e
        try:
            await self._migrate(conn)
        except DRIVER_ERRORS as e:
            conn.terminate()
            raise StoreError(self._message("cannot open", e)) from e
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        """Apply pending migrations in one transaction, under the migration lock."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(schema.CREATE_VERSION_TABLE)
            current = int(await conn.fetchval(schema.CURRENT_VERSION))
            applied_at = timestamps.format(timestamps.now())
            for migration in schema.pending(current, self.migrations, where=self.where):
                for statement in migration.postgresql:
                    await conn.execute(statement)
                await conn.execute(
                    numbered(schema.RECORD_VERSION),
                    migration.version,
                    migration.description,
                    applied_at,
                )

    def _drop(self) -> None:
        """Forget the connection after a failure, closing its socket at once."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()


def _describe(error: BaseException) -> str:
    """A driver error in one line: its text, or its class when it has none (a bare timeout)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@attrs.define
class PostgresReader:
    """`ReadRows` in one read-only, repeatable-read transaction: a consistent export."""

    conn: asyncpg.Connection
    url: StoreUrl
    order: str = "seq"
    backend: Backend = "postgresql"

    @property
    def where(self) -> str:
        return self.url.redacted

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return [tuple(row) for row in await self.conn.fetch(numbered(sql), *args)]
        except DRIVER_ERRORS as e:
            raise StoreError(self._message(e)) from e

    async def iterate(self, sql: str, args: Sequence[Any] = ()) -> AsyncIterator[tuple[Any, ...]]:
        try:
            async for row in self.conn.cursor(numbered(sql), *args, prefetch=1000):
                yield tuple(row)
        except DRIVER_ERRORS as e:
            raise StoreError(self._message(e)) from e

    def _message(self, error: BaseException) -> str:
        return self.url.scrub(f"cannot read store {self.where}: {_describe(error)}")


@contextlib.asynccontextmanager
async def read_only(url: StoreUrl, *, missing: type[Exception]) -> AsyncIterator[PostgresReader]:
    """Connect read-only (the server refuses any write); `missing` if it cannot be reached."""
    try:
        conn = await _connect(url, default_transaction_read_only="on")
    except DRIVER_ERRORS as e:
        raise missing(url.scrub(f"cannot open store {url.redacted}: {_describe(e)}")) from e
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            yield PostgresReader(conn=conn, url=url)
    except DRIVER_ERRORS as e:  # the connection broke: the transaction's end failed too
        raise StoreError(url.scrub(f"cannot read store {url.redacted}: {_describe(e)}")) from e
    finally:
        with contextlib.suppress(*DRIVER_ERRORS):
            await conn.close(timeout=CONNECT_TIMEOUT)
        if not conn.is_closed():
            conn.terminate()
