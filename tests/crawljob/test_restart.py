"""CrawlJobs across operator restarts, with an operator of each test's own on `cjr-*`.

Covers: a finished CrawlJob is never crawled again when the operator starts
anew; a crawl interrupted by SIGKILL is crawled again from scratch by the
next operator and its stored results are exactly one complete crawl's (no
duplicates, nothing missing).
"""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Iterator

import pytest
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob import site
from tests.crawljob.conftest import MakeNamespace, crawljob, finished, get_job, kubectl
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


async def test_an_interrupted_crawl_restarts_from_scratch(
    operator_kubeconfig: pathlib.Path,
    cluster: kube.Cluster,
    api: ApiClient,
    make_namespace: MakeNamespace,
    solo: list[OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    ns = await make_namespace("cjr-")
    async with site.serve(slow_delay=0.1) as slow:
        first = start(operator_kubeconfig, tmp_path, solo)
        # A binary tree of 2**6 - 1 = 63 pages, 0.1 s each, two at a time: a few seconds.
        spec = {"urls": [slow.url("/slow/0")], "maxDepth": 5, "concurrency": 2}
        await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("bumpy", spec))

        async def under_way() -> bool:
            return slow.page_requests() >= 10

        await eventually(under_way, what="the crawl under way", within=60)
        first.kill()
        body = await get_job(api, ns, "bumpy")
        assert body is not None
        assert body["status"]["phase"] == "Running"

        start(operator_kubeconfig, tmp_path, solo)
        status = (await finished(api, ns, "bumpy", within=90))["status"]
        assert status["phase"] == "Succeeded", status
        assert status["attempts"] == 2
        assert status["pagesFetched"] == 63
        assert status["linksFound"] == 126

        expected = {
            (slow.url(f"/slow/{i}"), slow.url(f"/slow/{child}"))
            for i in range(63)
            for child in (2 * i + 1, 2 * i + 2)
        }
        edges = stored_edges(tmp_path / "store.sqlite", body["metadata"]["uid"])
        assert len(edges) == len(set(edges))
        assert set(edges) == expected
