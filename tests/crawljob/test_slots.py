"""--max-crawls against the test cluster, with an operator of this module's own on `cjq-*`.

Covers: with one slot, a second CrawlJob waits Pending/Queued (message and
one Queued Event, no attempt counted) while the first crawls a slow site, the
gauges read 1 running and 1 queued meanwhile, and both end Succeeded, the
second starting only after the first finished; a queued CrawlJob that is
deleted goes within seconds (its finalizer removed at once) and leaves the
queue empty, while the running one goes on.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob import site
from tests.crawljob.conftest import (
    MakeNamespace,
    crawling_operator,
    crawljob,
    events_of,
    finished,
    get_job,
    kubectl,
    wait_for_event,
)
from tests.kube import eventually
from tests.operator_process import IN_CLUSTER, IN_CLUSTER_SKIP, OperatorProcess

pytestmark = pytest.mark.skipif(IN_CLUSTER, reason=IN_CLUSTER_SKIP)

QUEUED_MESSAGE = "waiting for a crawl slot: 1 of 1 in use (MANDRILL_MAX_CRAWLS)"


@pytest.fixture(scope="module")
def one_slot(
    cluster: kube.Cluster,
    all_crds: None,
    tmp_path_factory: pytest.TempPathFactory,
    operator_kubeconfig: pathlib.Path,
) -> Iterator[OperatorProcess]:
    """An operator that runs one in-process crawl at a time."""
    yield from crawling_operator(
        operator_kubeconfig,
        tmp_path_factory.mktemp("one-slot-operator"),
        "cjq-*",
        "--max-crawls",
        "1",
    )


@pytest.fixture
async def slow_site() -> AsyncIterator[site.GraphSite]:
    """/slow/{i}: a binary tree of pages, each answered after 0.4 s."""
    async with site.serve(slow_delay=0.4) as served:
        yield served


def gauges(op: OperatorProcess) -> tuple[float, float]:
    """(mandrill_crawls_running, mandrill_crawls_queued) as /metrics has them."""
    values: dict[str, float] = {}
    for line in op.metrics().splitlines():
        name, _, value = line.partition(" ")
        if name in ("mandrill_crawls_running", "mandrill_crawls_queued"):
            values[name] = float(value)
    return values["mandrill_crawls_running"], values["mandrill_crawls_queued"]


def slow_spec(slow: site.GraphSite, pages: int) -> dict[str, Any]:
    """One page at a time: about 0.4 s a page."""
    return {
        "urls": [slow.url("/slow/0")],
        "maxDepth": 10,
        "maxPages": pages,
        "concurrency": 1,
        "perHostConcurrency": 1,
    }


async def phase_of(api: ApiClient, ns: str, name: str) -> tuple[str | None, str | None]:
    status = ((await get_job(api, ns, name)) or {}).get("status", {})
    return status.get("phase"), status.get("reason")


async def until_phase(api: ApiClient, ns: str, name: str, phase: str, reason: str) -> None:
    async def there() -> bool:
        return await phase_of(api, ns, name) == (phase, reason)

    await eventually(there, what=f"CrawlJob {name} {phase}/{reason}", within=30)


async def until_gone(api: ApiClient, ns: str, name: str, *, within: float) -> None:
    async def gone() -> bool:
        return await get_job(api, ns, name) is None

    await eventually(gone, what=f"CrawlJob {name} deleted", within=within)


async def test_a_second_job_waits_queued_and_both_succeed(
    cluster: kube.Cluster,
    api: ApiClient,
    make_namespace: MakeNamespace,
    slow_site: site.GraphSite,
    one_slot: OperatorProcess,
) -> None:
    ns = await make_namespace("cjq-")
    spec = slow_spec(slow_site, pages=20)  # about 8 s
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("first", spec))
    await until_phase(api, ns, "first", "Running", "Crawling")
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("second", spec))
    await until_phase(api, ns, "second", "Pending", "Queued")

    waiting = await get_job(api, ns, "second")
    assert waiting is not None
    assert waiting["status"]["message"] == QUEUED_MESSAGE
    assert "attempts" not in waiting["status"], "a queued job counted an attempt"
    event = await wait_for_event(api, ns, "second", "Queued")
    assert event == ("Normal", "Queued", QUEUED_MESSAGE)

    async def one_and_one() -> bool:
        return gauges(one_slot) == (1.0, 1.0)

    await eventually(one_and_one, what="1 crawl running and 1 queued on /metrics", within=10)
    assert await phase_of(api, ns, "first") == ("Running", "Crawling")
    assert await phase_of(api, ns, "second") == ("Pending", "Queued")

    first = (await finished(api, ns, "first", within=90))["status"]
    second = (await finished(api, ns, "second", within=90))["status"]
    assert (first["phase"], first["reason"]) == ("Succeeded", "Completed")
    assert (second["phase"], second["reason"]) == ("Succeeded", "Completed")
    assert first["pagesFetched"] == second["pagesFetched"] == 20
    assert second["attempts"] == 1
    assert second["startedAt"] >= first["finishedAt"], "the second crawled before a slot freed"
    reasons = [reason for _, reason, _ in await events_of(api, ns, "second")]
    assert reasons.count("Queued") == 1
    assert "Started" in reasons
    assert "Succeeded" in reasons
    assert gauges(one_slot) == (0.0, 0.0)


async def test_a_deleted_queued_job_goes_within_seconds(
    cluster: kube.Cluster,
    api: ApiClient,
    make_namespace: MakeNamespace,
    slow_site: site.GraphSite,
    one_slot: OperatorProcess,
) -> None:
    ns = await make_namespace("cjq-")
    spec = slow_spec(slow_site, pages=200)  # far longer than this test
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("long", spec))
    await until_phase(api, ns, "long", "Running", "Crawling")
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("queued", spec))
    await until_phase(api, ns, "queued", "Pending", "Queued")
    assert gauges(one_slot) == (1.0, 1.0)

    began = time.monotonic()
    await kubectl(cluster, "delete", "crawljob", "queued", "-n", ns, "--wait=false")

    await until_gone(api, ns, "queued", within=10)
    assert time.monotonic() - began < 5, "the queued job's finalizer lingered"
    assert await phase_of(api, ns, "long") == ("Running", "Crawling")
    assert gauges(one_slot) == (1.0, 0.0)

    await kubectl(cluster, "delete", "crawljob", "long", "-n", ns, "--wait=false")

    await until_gone(api, ns, "long", within=20)

    async def idle() -> bool:
        return gauges(one_slot) == (0.0, 0.0)

    await eventually(idle, what="no crawl running or queued", within=10)
