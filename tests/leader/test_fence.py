"""The write fence on the services' ApiClient (adapters.kube.fence), with no server at all.

Covers: a write (POST, PATCH, DELETE) is refused before a connection is even
tried, naming the call; a read passes the fence and goes to the network; an
allowed write is sent; the journal and the crawl store ask the same fence, and
nothing reaches them once it refuses.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import AsyncIterator, Sequence

import aiohttp
import attrs
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration

from mandrill.adapters import kube
from mandrill.application import fencing
from mandrill.domain.crawl.job import JobRef, Outcome, StoredResults
from mandrill.domain.crawl.models import Edge, PageResult, Progress
from mandrill.domain.leadership import NotLeader
from mandrill.domain.restart.models import RequestRef
from mandrill.domain.restart.process import JournalEntry


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
