"""CrawlJobs across operator restarts, with an operator of each test's own on `cjr-*`.

Covers: a finished CrawlJob is never crawled again when the operator starts
anew; a crawl interrupted by SIGKILL is resumed by the next operator from its
stored frontier: no page stored before the kill is requested again (the
site's access log), the edges are exactly an uninterrupted crawl's with no
duplicate, the counters continue, status and an Event say it resumed; and a
crawl cut by maxPages stops at exactly maxPages pages, within maxDepth.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import time
from collections.abc import Iterator

import pytest
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob import site
from tests.crawljob.conftest import (
    MakeNamespace,
    crawljob,
    events_of,
    finished,
    get_job,
    kubectl,
)
from tests.kube import eventually
from tests.operator_process import OperatorProcess


@pytest.fixture
def solo(
    cluster: kube.Cluster, all_crds: None, tmp_path: pathlib.Path
) -> Iterator[list[OperatorProcess]]:
    """Start operators sharing one store with `start()`; all are stopped afterwards."""
    started: list[OperatorProcess] = []
    yield started
    for op in started:
        op.kill()


def start(
    kubeconfig: pathlib.Path, workdir: pathlib.Path, started: list[OperatorProcess]
) -> OperatorProcess:
    """An operator as the deployment's ServiceAccount (see `operator_kubeconfig`)."""
    op = OperatorProcess(
        kubeconfig=kubeconfig,
        workdir=workdir,
        namespaces="cjr-*",
        store_url=f"sqlite:///{workdir / 'store.sqlite'}",
        extra_args=("--crawl-allow-private", "true"),
    )
    started.append(op)
    return op.start()


def stored_edges(store: pathlib.Path, uid: str) -> list[tuple[str, str]]:
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT source, target FROM crawl_edges WHERE job_uid = ?", (uid,)
        ).fetchall()
    return [(source, target) for source, target in rows]


async def test_a_finished_job_is_not_crawled_again(
    operator_kubeconfig: pathlib.Path,
    cluster: kube.Cluster,
    api: ApiClient,
    make_namespace: MakeNamespace,
    graph_site: site.GraphSite,
    solo: list[OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    ns = await make_namespace("cjr-")
    first = start(operator_kubeconfig, tmp_path, solo)
    spec = {"urls": [graph_site.page_url(0)], "maxDepth": 1}
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("once", spec))
    before = (await finished(api, ns, "once"))["status"]
    assert before["phase"] == "Succeeded"
    served = len(graph_site.starts)
    assert first.stop() == 0

    start(operator_kubeconfig, tmp_path, solo)
    # A second job proves the new operator has listed the namespace and acted on it.
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("witness", spec))
    assert (await finished(api, ns, "witness"))["status"]["phase"] == "Succeeded"
    after = await get_job(api, ns, "once")
    assert after is not None
    assert after["status"]["attempts"] == 1
    assert after["status"]["finishedAt"] == before["finishedAt"]
    witness_requests = len(graph_site.starts) - served
    assert witness_requests == served, "the finished job was fetched again"


async def kill_mid_crawl(
    op: OperatorProcess, slow: site.GraphSite, store: pathlib.Path, *, pages: int
) -> tuple[float, set[str]]:
    """SIGKILL `op` once its crawl has stored some pages and `pages` were requested;
    returns when, and the pages stored by then."""

    async def under_way() -> bool:
        return slow.page_requests() >= pages and bool(stored_pages(store))

    await eventually(under_way, what="the crawl under way, its first batch stored", within=60)
    op.kill()
    return time.monotonic(), {url for url, _ in stored_pages(store)}


def stored_pages(store: pathlib.Path) -> list[tuple[str, int]]:
    if not store.exists():
        return []
    with contextlib.closing(sqlite3.connect(store)) as db:
        try:
            rows = db.execute("SELECT url, depth FROM crawl_pages").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
    return [(url, depth) for url, depth in rows]


async def test_an_interrupted_crawl_resumes_where_it_stopped(
    operator_kubeconfig: pathlib.Path,
    cluster: kube.Cluster,
    api: ApiClient,
    make_namespace: MakeNamespace,
    solo: list[OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    ns = await make_namespace("cjr-")
    store = tmp_path / "store.sqlite"
    async with site.serve(slow_delay=0.1) as slow:
        first = start(operator_kubeconfig, tmp_path, solo)
        # A binary tree of 2**6 - 1 = 63 pages, 0.1 s each, two at a time: a few seconds.
        spec = {"urls": [slow.url("/slow/0")], "maxDepth": 5, "concurrency": 2}
        await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("bumpy", spec))
        killed_at, stored = await kill_mid_crawl(first, slow, store, pages=16)
        body = await get_job(api, ns, "bumpy")
        assert body is not None
        assert body["status"]["phase"] == "Running"
        assert 0 < len(stored) < 63

        start(operator_kubeconfig, tmp_path, solo)
        status = (await finished(api, ns, "bumpy", within=90))["status"]
        assert status["phase"] == "Succeeded", status
        assert status["attempts"] == 2
        assert status["pagesFetched"] == 63
        assert status["linksFound"] == 126
        (resumed,) = [e for e in await events_of(api, ns, "bumpy") if e[1] == "Resumed"]
        assert f"at {len(stored)} of " in resumed[2], resumed

        # The site's access log: nothing stored before the kill was asked for again.
        again = {slow.url(path) for path in slow.requests_since(killed_at)}
        assert not again & stored, sorted(again & stored)
        assert {slow.url(path) for _, path in slow.starts} >= {
            slow.url(f"/slow/{i}") for i in range(63)
        }
        expected = {
            (slow.url(f"/slow/{i}"), slow.url(f"/slow/{child}"))
            for i in range(63)
            for child in (2 * i + 1, 2 * i + 2)
        }
        edges = stored_edges(store, body["metadata"]["uid"])
        assert len(edges) == len(set(edges))
        assert set(edges) == expected


async def test_a_resumed_crawl_stops_at_exactly_max_pages_within_max_depth(
    operator_kubeconfig: pathlib.Path,
    cluster: kube.Cluster,
    api: ApiClient,
    make_namespace: MakeNamespace,
    solo: list[OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    ns = await make_namespace("cjr-")
    store = tmp_path / "store.sqlite"
    async with site.serve(slow_delay=0.1) as slow:
        first = start(operator_kubeconfig, tmp_path, solo)
        # The tree to depth 6 has 127 pages; maxPages cuts it at 40.
        spec = {"urls": [slow.url("/slow/0")], "maxDepth": 6, "maxPages": 40, "concurrency": 2}
        await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("cut", spec))
        await kill_mid_crawl(first, slow, store, pages=12)

        start(operator_kubeconfig, tmp_path, solo)
        status = (await finished(api, ns, "cut", within=90))["status"]
        assert status["phase"] == "Succeeded", status
        assert status["attempts"] == 2
        pages = stored_pages(store)
        assert len(pages) == 40 == status["pagesFetched"]
        assert len({url for url, _ in pages}) == 40
        assert max(depth for _, depth in pages) <= 6
