"""A PostgreSQL server that goes away while the store is in use, and comes back.

No cluster: the journal and the crawl store themselves, on the session's
server, stopped mid-run (`fast`: clients are cut off, as in a restart or a
failover; `immediate`: as if it crashed) and started again. While it is
down every write fails at once with a StoreError naming the store without
its password; the first write after it is back reconnects by itself; and
every row committed before, and every row written after, is there. A session
the server ends while it is idle (a shutdown, pg_terminate_backend) whose
close reaches the client after its error (a TCP proxy holds the close back)
costs one StoreError, not a connection asyncpg refuses to use again: a crawl
worker exited 1 on exactly that.
SQLite's outage (a store file whose folder is missing, then made) is in
test_journal.py; it has no server to lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncIterator

import asyncpg
import attrs
import pytest

from mandrill.adapters import crawl_store, schema
from mandrill.adapters.journal import StoreJournal
from mandrill.domain.crawl.job import JobRef, Outcome, Phase
from mandrill.domain.crawl.models import EdgeList, PageResult, Progress
from mandrill.domain.errors import StoreError
from mandrill.domain.restart.models import RequestRef
from mandrill.domain.restart.process import JournalEntry
from mandrill.store_url import StoreUrl
from tests.postgres import PostgresServer
from tests.store.conftest import POSTGRESQL, Store

pytestmark = pytest.mark.postgres

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
JOB = JobRef(namespace="team", name="links", uid="job-outage")
PROGRESS = Progress(done=1, scheduled=1, failed=0, elapsed=0.1)


def entry(uid: str) -> JournalEntry:
    return JournalEntry(
        request=RequestRef(namespace="shop", name=uid, uid=uid), spec={}, targets=(), received=NOW
    )


def page(n: int) -> tuple[PageResult, EdgeList]:
    url = f"https://example.com/{n}"
    return (
        PageResult(url=url, depth=1, final_url=url, status=200, links=1),
        EdgeList(url, (f"{url}/next",)),
    )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_the_journal_errs_while_the_server_is_down_then_reconnects(
    postgres: PostgresServer, postgres_url: str, mode: str
) -> None:
    journal = StoreJournal.from_url(StoreUrl.parse(postgres_url))
    try:
        await journal.save(entry("before"))
        postgres.stop(mode)
        try:
            for uid in ("during-1", "during-2"):  # the broken connection, then a refused one
                started = time.monotonic()
                with pytest.raises(StoreError, match=r"cannot (write|open) journal") as raised:
                    await journal.save(entry(uid))
                assert time.monotonic() - started < 5, "a refused connection must fail at once"
                assert "mandrill:***@127.0.0.1" in str(raised.value)
                assert postgres.password not in str(raised.value)
        finally:
            postgres.start()
        await journal.save(entry("after"))
    finally:
        await journal.close()
    store = Store(backend=POSTGRESQL, url=postgres_url)
    rows = await store.query("SELECT request_uid FROM restart_journal ORDER BY 1")
    assert rows == [("after",), ("before",)]


async def test_a_crawl_store_batch_fails_while_down_and_the_next_crawl_is_whole(
    postgres: PostgresServer, postgres_url: str
) -> None:
    crawls = crawl_store.CrawlStore.from_url(postgres_url)
    try:
        await crawls.begin(JOB, attempt=1, started=NOW)
        sink = crawls.sink(JOB)
        for n in range(3):
            await sink.record(*page(n), PROGRESS)
        await sink.flush()
        postgres.stop("fast")
        try:
            await sink.record(*page(3), PROGRESS)
            with pytest.raises(StoreError, match="cannot write crawl store"):
                await sink.flush()
        finally:
            postgres.start()
        # What the operator does next time: the attempt starts again from scratch.
        await crawls.begin(JOB, attempt=2, started=NOW)
        sink = crawls.sink(JOB)
        for n in range(5):
            await sink.record(*page(n), PROGRESS)
        await sink.flush()
        outcome = Outcome(
            phase=Phase.SUCCEEDED, reason="Completed", message="", started=NOW, finished=NOW
        )
        stored = await crawls.finish(JOB, outcome)
    finally:
        await crawls.close()
    assert (stored.pages, stored.edges) == (5, 5)
    store = Store(backend=POSTGRESQL, url=postgres_url)
    assert await store.query("SELECT attempt, phase FROM crawl_jobs") == [(2, "Succeeded")]


async def test_a_store_down_at_start_up_opens_on_first_use_once_it_is_up(
    postgres: PostgresServer, postgres_url: str
) -> None:
    journal = StoreJournal.from_url(StoreUrl.parse(postgres_url))
    postgres.stop("fast")
    try:
        with pytest.raises(StoreError, match="cannot open journal"):
            await journal.open()
    finally:
        postgres.start()
    try:
        await journal.save(entry("first"))
    finally:
        await journal.close()
    store = Store(backend=POSTGRESQL, url=postgres_url)
    assert await store.query("SELECT request_uid FROM restart_journal") == [("first",)]
    assert await store.query("SELECT MAX(version) FROM mandrill_schema") == [(schema.latest(),)]


@attrs.define
class _LateClose:
    """A TCP proxy to the server that forwards every byte but holds back the server's close,
    as a network that delivers a session's last error before its FIN."""

    target: tuple[str, int]
    upstream_closed: asyncio.Event = attrs.Factory(asyncio.Event)
    _held: list[asyncio.StreamWriter] = attrs.Factory(list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._held.append(writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

        upward = asyncio.create_task(pump(reader, up_writer))
        with contextlib.suppress(ConnectionError):
            await pump(up_reader, writer)
        self.upstream_closed.set()  # the client's side stays open
        upward.cancel()
        up_writer.close()

    def close(self) -> None:
        for writer in self._held:
            writer.close()


@contextlib.asynccontextmanager
async def _late_close(url: StoreUrl) -> AsyncIterator[tuple[_LateClose, StoreUrl]]:
    proxy = _LateClose(target=("127.0.0.1", int(url.url.rsplit(":", 1)[1].split("/", 1)[0])))
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield proxy, StoreUrl.parse(url.url.replace(f":{proxy.target[1]}/", f":{port}/"))
    finally:
        proxy.close()
        server.close()


async def test_a_session_ended_while_idle_costs_one_error_then_reconnects(
    postgres: PostgresServer, postgres_url: str
) -> None:
    async with _late_close(StoreUrl.parse(postgres_url)) as (proxy, via_proxy):
        journal = StoreJournal.from_url(via_proxy)
        try:
            await journal.save(entry("before"))
            admin = await asyncpg.connect(postgres_url)
            try:
                ended = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'mandrill' AND datname = current_database()"
                )
            finally:
                await admin.close()
            assert ended == 1
            await asyncio.wait_for(proxy.upstream_closed.wait(), 10)
            for _ in range(20):  # the loopback bytes, already sent, reach the client's protocol
                await asyncio.sleep(0)
            with pytest.raises(StoreError, match="cannot write journal") as raised:
                await journal.save(entry("lost"))
            assert postgres.password not in str(raised.value)
            await journal.save(entry("after"))
        finally:
            await journal.close()
    store = Store(backend=POSTGRESQL, url=postgres_url)
    rows = await store.query("SELECT request_uid FROM restart_journal ORDER BY 1")
    assert rows == [("after",), ("before",)]
