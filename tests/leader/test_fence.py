"""The write fence on the services' ApiClient (adapters.kube.fence), with no server at all.

Covers: a write (POST, PATCH, DELETE) is refused before a connection is even
tried, naming the call; a read passes the fence and goes to the network; an
allowed write is sent; a write that passed the fence and then waited for a
connection while the fence closed (a process frozen past its lease, with its
writes queued on the pool) is refused when it gets one and never reaches the
server, against a real local HTTP server; the journal and the crawl store ask
the same fence, and nothing reaches them once it refuses.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
from collections.abc import AsyncIterator, Sequence

import aiohttp
import attrs
import pytest
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration

from mandrill.adapters import kube
from mandrill.application import fencing
from mandrill.domain.crawl.job import JobRef, Outcome, StoredResults
from mandrill.domain.crawl.models import Edge, PageResult, Progress
from mandrill.domain.leadership import NotLeader
from mandrill.domain.restart.models import RequestRef
from mandrill.domain.restart.process import JournalEntry
from tests import local_http


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def api() -> AsyncIterator[ApiClient]:
    """A client for an address where nothing listens: any request that is sent fails."""
    config = Configuration(host=f"http://127.0.0.1:{_closed_port()}")
    async with ApiClient(configuration=config) as api_client:
        yield api_client


async def test_writes_are_refused_before_anything_is_sent(api: ApiClient) -> None:
    asked: list[str] = []

    def deny(what: str) -> None:
        asked.append(what)
        raise NotLeader(what)

    kube.fence(api, deny)
    core = client.CoreV1Api(api)

    with pytest.raises(NotLeader):
        await core.delete_namespaced_pod("web-1", "shop")
    with pytest.raises(NotLeader):
        await core.create_namespaced_event("shop", {"metadata": {"name": "e"}})
    with pytest.raises(NotLeader):
        await client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            "mandrill.dev", "v1alpha1", "shop", "restartrequests", "r", {"status": {}}
        )

    assert asked[0].startswith("DELETE http://127.0.0.1:")
    assert asked[0].endswith("/api/v1/namespaces/shop/pods/web-1")
    assert [a.split()[0] for a in asked] == ["DELETE", "POST", "PATCH"]


async def test_reads_pass_the_fence(api: ApiClient) -> None:
    asked: list[str] = []
    kube.fence(api, asked.append)

    with pytest.raises(aiohttp.ClientConnectionError):  # it went to the (absent) server
        await client.CoreV1Api(api).read_namespaced_pod("web-1", "shop")

    assert asked == []


async def test_an_allowed_write_is_sent(api: ApiClient) -> None:
    asked: list[str] = []
    kube.fence(api, asked.append)  # returns: allowed

    with pytest.raises(aiohttp.ClientConnectionError):
        await client.CoreV1Api(api).delete_namespaced_pod("web-1", "shop")

    assert len(asked) == 1


async def test_a_write_that_waited_for_a_connection_through_a_closing_fence_is_not_sent() -> None:
    """One connection in the pool, held by a slow read: the PATCH behind it passes
    the first check, then waits; the fence closes meanwhile (the process was
    deposed, or frozen past its lease); when the read ends and the PATCH gets the
    connection it is refused, and the server never sees it."""
    seen: list[str] = []
    reading, release, queued = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_read(request: web.Request) -> web.Response:
        seen.append(request.method)
        reading.set()
        await release.wait()
        return web.json_response({"kind": "Pod", "metadata": {"name": "web-1"}})

    async def patch(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.json_response({})

    async def on_queued(*_: object) -> None:
        queued.set()

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/shop/pods/web-1", slow_read)
    app.router.add_patch("/api/v1/namespaces/shop/pods/web-1", patch)
    gate, asked = _Gate(), []

    def check(what: str) -> None:
        asked.append(what)
        gate.check(what)

    async with local_http.serve(app) as url:
        config = Configuration(host=url)
        config.connection_pool_maxsize = 1
        async with ApiClient(configuration=config) as api:
            kube.fence(api, check)
            watching = aiohttp.TraceConfig()  # only to know when the PATCH waits for the pool
            watching.on_connection_queued_start.append(on_queued)
            watching.freeze()
            api.rest_client.pool_manager.trace_configs.append(watching)
            core = client.CoreV1Api(api)
            read = asyncio.create_task(core.read_namespaced_pod("web-1", "shop"))
            await asyncio.wait_for(reading.wait(), 5)
            write = asyncio.create_task(
                core.patch_namespaced_pod("web-1", "shop", {"metadata": {"labels": {"a": "b"}}})
            )
            await asyncio.wait_for(queued.wait(), 5)  # past the first check, behind the read
            assert len(asked) == 1
            gate.open = False
            release.set()
            await read
            with pytest.raises(NotLeader):
                await write

    assert len(asked) == 2, asked
    assert asked[1].startswith(f"PATCH {url}/api/v1/namespaces/shop/pods/web-1"), asked
    assert seen == ["GET"], "the PATCH reached the server after the fence closed"


@attrs.define
class _Journal:
    saved: list[JournalEntry] = attrs.Factory(list)

    async def save(self, entry: JournalEntry) -> None:
        self.saved.append(entry)


@attrs.define
class _Sink:
    calls: list[str]

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        self.calls.append("record")

    async def flush(self) -> None:
        self.calls.append("flush")


@attrs.define
class _Store:
    calls: list[str] = attrs.Factory(list)

    async def begin(self, job: JobRef, *, attempt: int, started: datetime.datetime) -> None:
        self.calls.append("begin")

    def sink(self, job: JobRef) -> _Sink:
        return _Sink(self.calls)

    async def finish(self, job: JobRef, outcome: Outcome) -> StoredResults:
        self.calls.append("finish")
        return StoredResults(store="sqlite:///x", pages=0, edges=0)


@attrs.define
class _Gate:
    open: bool = True

    def check(self, what: str) -> None:
        if not self.open:
            raise NotLeader(what)


async def test_the_store_asks_the_same_fence() -> None:
    gate, journal, store = _Gate(), _Journal(), _Store()
    fenced_journal = fencing.FencedJournal(journal, gate.check)
    fenced_store = fencing.FencedJobStore(store, gate.check)
    job = JobRef(namespace="shop", name="site", uid="u1")
    entry = JournalEntry(
        request=RequestRef(namespace="shop", name="r", uid="u2"),
        spec={},
        targets=(),
        received=datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC),
    )
    page = PageResult(url="http://a/", depth=0, final_url="http://a/")
    progress = Progress(done=1, scheduled=1, failed=0, elapsed=0.1)

    await fenced_journal.save(entry)
    await fenced_store.begin(job, attempt=1, started=entry.received)
    sink = fenced_store.sink(job)
    await sink.record(page, (), progress)
    gate.open = False  # deposed
    for write in (
        fenced_journal.save(entry),
        sink.record(page, (), progress),
        sink.flush(),
        fenced_store.begin(job, attempt=2, started=entry.received),
    ):
        with pytest.raises(NotLeader):
            await write

    assert journal.saved == [entry]
    assert store.calls == ["begin", "record"], "nothing reached the store once deposed"
