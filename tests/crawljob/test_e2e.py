"""CrawlJob end to end: kubectl apply -> the operator crawls the test site -> status and results.

Covers: a crawl reaching Succeeded with exact counters, errors by kind and
Events; `mandrill results NAMESPACE/NAME` exporting exactly the expected edge
set; urlsFrom from a ConfigMap (comments, blanks, invalid lines); urlsFrom
problems ending Failed with a reason and a Warning Event; deleting a running
CrawlJob stopping its requests at once.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import time

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
    wait_for_event,
)
from tests.kube import eventually
from tests.operator_process import OperatorProcess


async def results(
    op: OperatorProcess, cluster: kube.Cluster, *args: str
) -> subprocess.CompletedProcess[str]:
    """`mandrill results ...` as a user runs it: a process with KUBECONFIG set."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mandrill", "results", *args, "--store-url", op.store_url],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tsv_edges(text: str) -> list[tuple[str, str]]:
    lines = text.splitlines()
    assert lines[0] == "source_url\tparsed_url"
    return [tuple(line.split("\t")) for line in lines[1:]]  # type: ignore[misc]


async def test_crawl_succeeds_with_exact_counters_and_results(
    cluster: kube.Cluster,
    api: ApiClient,
    crawl_operator: OperatorProcess,
    make_namespace: MakeNamespace,
    graph_site: site.GraphSite,
    tmp_path: pathlib.Path,
) -> None:
    ns = await make_namespace("cj-")
    # maxDepth 20 exceeds any path through 16 pages: the whole reachable graph is crawled
    # whatever order the concurrent workers take.
    spec = {"urls": [graph_site.page_url(0)], "maxDepth": 20, "concurrency": 4}
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("graph", spec))
    body = await finished(api, ns, "graph")
    expected = graph_site.expected([0], max_depth=20)

    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert status["reason"] == "Completed"
    assert status["pagesFetched"] == len(expected.ok) == 16
    assert status["pagesFailed"] == len(expected.failed) == 4
    assert status["errorsByKind"] == {"http_status": 4}
    assert status["linksFound"] == len(expected.edges)
    assert status["uniqueLinks"] == expected.unique_urls
    assert status["attempts"] == 1
    assert status["progress"]["done"] == 20
    assert status["results"]["jobUID"] == body["metadata"]["uid"]
    assert status["results"]["edges"] == len(expected.edges)
    complete = {c["type"]: c["status"] for c in status["conditions"]}
    assert complete == {"Complete": "True", "Failed": "False"}
    # Each page was fetched once: no duplicate requests, robots.txt once.
    paths = [path for _, path in graph_site.starts]
    assert sorted(paths) == sorted(
        ["/robots.txt", *(u.removeprefix(graph_site.base) for u in expected.ok | expected.failed)]
    )

    await wait_for_event(api, ns, "graph", "Succeeded")
    reasons = {reason for _, reason, _ in await events_of(api, ns, "graph")}
    assert {"Started", "Succeeded"} <= reasons

    out = tmp_path / "graph.tsv"
    done = await results(crawl_operator, cluster, f"{ns}/graph", "-o", str(out))
    assert done.returncode == 0, done.stderr
    edges = tsv_edges(out.read_text())
    assert len(edges) == len(set(edges)), "an edge was exported twice"
    assert set(edges) == expected.edges

    jsonl = await results(crawl_operator, cluster, f"{ns}/graph", "--format", "jsonl")
    assert jsonl.returncode == 0, jsonl.stderr
    assert jsonl.stdout.count('"type": "page"') == 20


async def test_results_of_an_unknown_job_is_one_clear_line(
    cluster: kube.Cluster, crawl_operator: OperatorProcess, make_namespace: MakeNamespace
) -> None:
    ns = await make_namespace("cj-")
    done = await results(crawl_operator, cluster, f"{ns}/nothing-here")
    assert done.returncode == 1
    assert done.stderr.strip() == f"mandrill results: no CrawlJob {ns}/nothing-here in the cluster"


async def test_urls_from_a_configmap(
    cluster: kube.Cluster,
    api: ApiClient,
    crawl_operator: OperatorProcess,
    make_namespace: MakeNamespace,
    graph_site: site.GraphSite,
    tmp_path: pathlib.Path,
) -> None:
    ns = await make_namespace("cj-")
    urls_txt = tmp_path / "urls.txt"
    urls_txt.write_text(
        "# two pages of the test site\n"
        f"{graph_site.page_url(1)}\n"
        "\n"
        "ftp://not.crawled.example/\n"
        f"  {graph_site.page_url(2)}  \n"
    )
    await kubectl(
        cluster, "create", "configmap", "seeds", "-n", ns, f"--from-file=urls.txt={urls_txt}"
    )
    spec = {"urlsFrom": {"configMapName": "seeds", "key": "urls.txt"}}
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("from-cm", spec))
    body = await finished(api, ns, "from-cm")
    status = body["status"]
    expected = graph_site.expected([1, 2], max_depth=0)
    assert status["phase"] == "Succeeded", status
    assert status["seeds"] == 2
    assert status["pagesFetched"] == 2
    assert status["linksFound"] == len(expected.edges)
    assert graph_site.page_requests() == 2

    out = tmp_path / "from-cm.tsv"
    done = await results(crawl_operator, cluster, f"{ns}/from-cm", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert set(tsv_edges(out.read_text())) == expected.edges


@pytest.mark.parametrize(
    ("configmap", "reason"),
    [
        (None, "ConfigMapNotFound"),
        ({"other.txt": "http://127.0.0.1:9/"}, "KeyNotFound"),
        ({"urls.txt": "# nothing but comments\n\nmailto:someone@example.com\n"}, "NoValidURLs"),
    ],
)
async def test_unusable_urls_from_fails_with_reason_and_event(
    cluster: kube.Cluster,
    api: ApiClient,
    crawl_operator: OperatorProcess,
    make_namespace: MakeNamespace,
    configmap: dict[str, str] | None,
    reason: str,
) -> None:
    ns = await make_namespace("cj-")
    if configmap is not None:
        args = [f"--from-literal={k}={v}" for k, v in configmap.items()]
        await kubectl(cluster, "create", "configmap", "seeds", "-n", ns, *args)
    spec = {"urlsFrom": {"configMapName": "seeds", "key": "urls.txt"}}
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("bad-seeds", spec))
    status = (await finished(api, ns, "bad-seeds"))["status"]
    assert status["phase"] == "Failed"
    assert status["reason"] == reason
    assert "\n" not in status["message"]
    assert "seeds" in status["message"]
    kind, _, message = await wait_for_event(api, ns, "bad-seeds", "Failed")
    assert kind == "Warning"
    assert message.startswith(f"{reason}: ")
    # Failed is final: no crash loop, no retries piling up Events.
    await asyncio.sleep(2)
    failures = [e for e in await events_of(api, ns, "bad-seeds") if e[1] == "Failed"]
    assert len(failures) == 1
    assert "Traceback" not in crawl_operator.log_tail(200)


async def test_deleting_a_running_crawljob_stops_its_requests(
    cluster: kube.Cluster,
    api: ApiClient,
    crawl_operator: OperatorProcess,
    make_namespace: MakeNamespace,
) -> None:
    ns = await make_namespace("cj-")
    async with site.serve(slow_delay=0.3) as slow:
        spec = {
            "urls": [slow.url("/slow/0")],
            "maxDepth": 20,
            "concurrency": 4,
            "perHostConcurrency": 4,
        }
        await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("endless", spec))

        async def crawling() -> bool:
            return slow.page_requests() >= 8

        await eventually(crawling, what="the slow crawl under way", within=60)
        body = await get_job(api, ns, "endless")
        assert body is not None
        assert body["status"]["phase"] == "Running"

        deleted_at = time.monotonic()
        await kubectl(cluster, "delete", "crawljob", "endless", "-n", ns, "--wait=false")

        async def gone() -> bool:
            return await get_job(api, ns, "endless") is None

        await eventually(gone, what="the CrawlJob gone", within=10, interval=0.05)
        gone_at = time.monotonic()
        assert gone_at - deleted_at < 2.5, f"deletion took {gone_at - deleted_at:.1f}s"
        await asyncio.sleep(1.5)
        assert slow.requests_since(gone_at) == [], "requests went on after the job was gone"
        assert slow.in_flight == 0
