"""CrawlJobs on workers against the real API server, Job controller and kwok nodes.

Covers: `workers: 3` makes one Indexed Job in the operator's namespace with
3 completions, a deadline past its total timeout, the contract's
environment, the workers' ServiceAccount, the labels, the pod security and
the image, and the Job controller's pods pass the namespace's restricted Pod
Security; status.workers follows the Job; a Job that completes (kwok
completes pods without running them) with the frontier unfinished ends the
CrawlJob Failed with the count of URLs left; with the store rows written as
the workers would, it ends Succeeded with their counters and the distinct
URLs met (an off-site link target too); workers that exit 1 fail their
indexes without a retry (podFailurePolicy) and the CrawlJob WorkersFailed;
deleting the CrawlJob removes the Job and its pods within seconds; the sweep
deletes a Job whose CrawlJob is gone and spares another installation's;
SQLite with workers ends Failed WorkersNeedPostgreSQL with an Event; the CRD
rejects workers 0 and 1000 on the server; the operator reads its own image
from its Pod.

To write rows "before the Job completes" without racing kwok, a test holds
an exclusive lock on crawl_frontier while it creates the CrawlJob and writes
the rows: the operator's `begin` (which comes before the Job) reads the
frontier, so it waits for the commit, and the Job is made only after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from mandrill.adapters import worker_jobs as worker_jobs_adapter
from tests import kube
from tests.crawljob.conftest import (
    GROUP,
    PLURAL,
    VERSION,
    MakeNamespace,
    crawljob,
    events_of,
    finished,
    get_job,
    kubectl,
    wait_for_event,
)
from tests.crawlworkers_operator.conftest import (
    IMAGE,
    UID_LABEL,
    WORKER_NAMESPACE,
    delete_worker_jobs,
    worker_jobs,
    worker_pods,
)
from tests.kube import eventually
from tests.operator_process import OperatorProcess

SEED = "http://site.test/"


async def create(api: ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> str:
    """Create a CrawlJob; its UID."""
    body = await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, json.loads(json.dumps(_manifest(name, spec)))
    )
    return str(body["metadata"]["uid"])


def _manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CrawlJob",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
async def cleanup(api: ApiClient) -> AsyncIterator[list[str]]:
    """UIDs whose worker Jobs and pods go after the test, whatever happened."""
    uids: list[str] = []
    yield uids
    for uid in uids:
        await delete_worker_jobs(api, uid)


async def the_job(api: ApiClient, uid: str) -> dict[str, Any]:
    async def one() -> dict[str, Any] | None:
        jobs = await worker_jobs(api, uid)
        return jobs[0] if len(jobs) == 1 else None

    return await eventually(one, what=f"the worker Job of {uid}", within=30)


async def created_with_rows(
    api: ApiClient, store: str, namespace: str, name: str, spec: dict[str, Any], rows: list[str]
) -> str:
    """Create the CrawlJob and write `rows` (SQL, `$1` = its UID) in one transaction that
    holds crawl_frontier exclusively: the operator begins, and makes the Job, after it."""
    conn = await asyncpg.connect(store)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE crawl_frontier IN ACCESS EXCLUSIVE MODE")
            uid = await create(api, namespace, name, spec)
            for sql in rows:
                await conn.execute(sql, uid)
    finally:
        await conn.close()
    return uid


def frontier_row(url: str, state: str, ordinal: int) -> str:
    return (
        "INSERT INTO crawl_frontier (job_uid, url, state, depth, parent, host, ordinal)"
        f" VALUES ($1, '{url}', '{state}', 0, NULL, 'site.test', {ordinal})"
    )


def page_row(url: str, *, status: int, error: str | None, size: int, links: int) -> str:
    err = "NULL" if error is None else f"'{error}'"
    return (
        "INSERT INTO crawl_pages (job_uid, url, final_url, depth, status, error, message,"
        " content_type, bytes, links, attempts, elapsed)"
        f" VALUES ($1, '{url}', '{url}', 0, {status}, {err}, '', 'text/html', {size}, {links},"
        " 1, 0.01)"
    )


def edge_row(source: str, target: str) -> str:
    return f"INSERT INTO crawl_edges (job_uid, source, target) VALUES ($1, '{source}', '{target}')"


async def test_three_workers_make_one_indexed_job_as_the_contract_says(
    api: ApiClient,
    workers_operator: OperatorProcess,
    make_namespace: MakeNamespace,
    cleanup: list[str],
) -> None:
    ns = await make_namespace("cjw-")
    spec = {"urls": [SEED], "workers": 3, "maxDepth": 1, "totalTimeoutSeconds": 3600}
    uid = await create(api, ns, "three", spec)
    cleanup.append(uid)

    job = await the_job(api, uid)
    meta, jspec = job["metadata"], job["spec"]
    assert meta["namespace"] == WORKER_NAMESPACE
    assert meta["name"] == f"crawl-{uid[:8]}-three"
    assert meta["labels"] == {
        "app.kubernetes.io/name": "mandrill",
        "app.kubernetes.io/component": "crawl-worker",
        "app.kubernetes.io/managed-by": "mandrill",
        UID_LABEL: uid,
    }
    assert meta["annotations"]["mandrill.dev/crawljob"] == f"{ns}/three"
    assert "ownerReferences" not in meta
    assert (jspec["completionMode"], jspec["completions"], jspec["parallelism"]) == (
        "Indexed", 3, 3,
    )  # fmt: skip
    assert 3600 < jspec["activeDeadlineSeconds"] <= 3660  # the timeout, and time to stop
    pod = jspec["template"]["spec"]
    assert pod["serviceAccountName"] == "mandrill-crawl-worker"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["mandrill", "crawl-worker"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["MANDRILL_STORE_URL"] == {"secretKeyRef": {"name": "mandrill-store", "key": "url"}}
    assert env["MANDRILL_CRAWL_JOB_UID"] == uid
    # The spec as the API server returns it: what was given, the schema's defaults filled in.
    given = json.loads(env["MANDRILL_CRAWL_SPEC"])
    assert given.items() >= spec.items()
    assert given["maxPages"] == 10000
    # The Job controller made 3 pods, one per index, admitted under restricted Pod Security.
    pods = await eventually(
        lambda: _at_least(worker_pods(api, uid), 3), what="3 worker pods", within=30
    )
    indexes = {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods
    }
    assert indexes == {"0", "1", "2"}

    # kwok completes the pods without running a worker: the frontier was never seeded.
    body = await finished(api, ns, "three", within=60)
    status = body["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "FrontierUnfinished")
    assert "no worker seeded the frontier" in status["message"]
    assert status["workers"]["desired"] == 3
    assert status["workers"]["succeeded"] == 3
    assert status["workers"]["job"] == f"{WORKER_NAMESPACE}/crawl-{uid[:8]}-three"
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    assert kinds == {"Complete": "False", "Failed": "True"}
    await wait_for_event(api, ns, "three", "Failed")
    reasons = {(t, r) for t, r, _ in await events_of(api, ns, "three")}
    assert {("Normal", "WorkersStarted"), ("Warning", "Failed")} <= reasons


def metric(op: OperatorProcess, sample: str) -> float:
    """One sample's value from the operator's /metrics (0 if absent)."""
    for line in op.metrics().splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


async def _at_least(listing: Any, n: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await listing
    return found if len(found) >= n else None


async def test_a_job_completed_with_urls_left_fails_with_the_count(
    api: ApiClient,
    workers_operator: OperatorProcess,
    workers_store: str,
    make_namespace: MakeNamespace,
    cleanup: list[str],
) -> None:
    ns = await make_namespace("cjw-")
    rows = [
        frontier_row(SEED, "done", 0),
        frontier_row(SEED + "a", "pending", 1),
        frontier_row(SEED + "b", "pending", 2),
        page_row(SEED, status=200, error=None, size=100, links=2),
    ]
    uid = await created_with_rows(
        api, workers_store, ns, "left", {"urls": [SEED], "workers": 2}, rows
    )
    cleanup.append(uid)
    status = (await finished(api, ns, "left", within=60))["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "FrontierUnfinished")
    assert status["message"] == (
        "all 2 workers exited but the crawl is not finished: 2 of 3 URLs left"
    )
    assert status["pagesFetched"] == 1
    assert status["progress"]["scheduled"] == 3


async def test_finished_rows_and_a_completed_job_end_succeeded_with_their_counters(
    api: ApiClient,
    workers_operator: OperatorProcess,
    workers_store: str,
    make_namespace: MakeNamespace,
    cleanup: list[str],
) -> None:
    ns = await make_namespace("cjw-")
    a, b = SEED + "a", SEED + "b"
    rows = [
        frontier_row(SEED, "done", 0),
        frontier_row(a, "done", 1),
        frontier_row(b, "done", 2),
        page_row(SEED, status=200, error=None, size=1000, links=2),
        page_row(a, status=200, error=None, size=500, links=1),
        page_row(b, status=404, error="http_status", size=10, links=0),
        edge_row(SEED, a),
        edge_row(SEED, b),
        edge_row(a, b),
        edge_row(a, "https://elsewhere.test/"),  # met, never admitted (off-site)
    ]
    uid = await created_with_rows(
        api, workers_store, ns, "done", {"urls": [SEED], "workers": 3, "maxDepth": 1}, rows
    )
    cleanup.append(uid)
    status = (await finished(api, ns, "done", within=60))["status"]
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status["message"]
    assert (status["pagesFetched"], status["pagesFailed"], status["linksFound"]) == (2, 1, 3)
    assert status["bytes"] == 1510
    assert status["errorsByKind"] == {"http_status": 1}
    assert (status["progress"]["done"], status["progress"]["scheduled"]) == (3, 3)
    assert status["results"]["jobUID"] == uid
    assert (status["results"]["pages"], status["results"]["edges"]) == (3, 4)
    assert status["uniqueLinks"] == 4  # three crawled, one only linked to
    assert "***" in status["results"]["store"]
    assert status["workers"]["succeeded"] == 3
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    assert kinds == {"Complete": "True", "Failed": "False"}
    _, _, message = await wait_for_event(api, ns, "done", "Succeeded")
    assert message == "Completed: 2 pages fetched, 1 failed, 3 links, by 3 workers"
    # The store noted the end as a single-process crawl's.
    conn = await asyncpg.connect(workers_store)
    try:
        phase = await conn.fetchval("SELECT phase FROM crawl_jobs WHERE job_uid = $1", uid)
    finally:
        await conn.close()
    assert phase == "Succeeded"
    assert metric(workers_operator, 'mandrill_crawl_worker_jobs_total{event="succeeded"}') >= 1


async def test_deleting_the_crawljob_removes_its_job_and_pods_at_once(
    api: ApiClient,
    pending_operator: OperatorProcess,
    make_namespace: MakeNamespace,
    cleanup: list[str],
) -> None:
    ns = await make_namespace("cjp-")
    uid = await create(api, ns, "running", {"urls": [SEED], "workers": 3})
    cleanup.append(uid)
    await the_job(api, uid)
    await eventually(lambda: _at_least(worker_pods(api, uid), 3), what="3 pods", within=30)

    def showing_active(body: dict[str, Any] | None) -> bool:
        workers = (body or {}).get("status", {}).get("workers", {})
        return workers.get("active") == 3 and body["status"]["phase"] == "Running"  # type: ignore[index]

    body = await kube.object_until(
        lambda: get_job(api, ns, "running"), showing_active, what="status.workers.active 3"
    )
    assert body["status"]["reason"] == "WorkersRunning"
    assert body["status"]["workers"]["desired"] == 3

    offset = pending_operator.log_size()
    started = time.monotonic()
    await client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "running"
    )

    async def all_gone() -> bool:
        return (
            not await worker_jobs(api, uid)
            and not await worker_pods(api, uid)
            and await get_job(api, ns, "running") is None
        )

    await eventually(all_gone, what="the CrawlJob, its Job and its pods gone", within=20)
    took = time.monotonic() - started
    assert took < 10, f"took {took:.1f}s"
    # The CrawlJob's own daemon deleted them (not the sweep, seconds later).
    assert "workers stopped: their Job and pods deleted" in pending_operator.log_since(offset)
    assert metric(pending_operator, 'mandrill_crawl_worker_jobs_total{event="deleted"}') >= 1
    print(f"CrawlJob, Job and 3 pods gone {took:.2f}s after the delete")


async def test_the_sweep_deletes_a_job_whose_crawljob_is_gone_and_spares_others(
    api: ApiClient, workers_operator: OperatorProcess, cleanup: list[str]
) -> None:
    batch = client.BatchV1Api(api)

    def orphan(uid: str, owner: str) -> dict[str, Any]:
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"crawl-{uid[:8]}-ghost",
                "labels": {
                    "app.kubernetes.io/name": "mandrill",
                    "app.kubernetes.io/component": "crawl-worker",
                    UID_LABEL: uid,
                },
                "annotations": {"mandrill.dev/crawljob": owner},
            },
            "spec": {
                "suspend": True,  # no pods: only the Job is judged
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "worker", "image": IMAGE}],
                    }
                },
            },
        }

    ghost, foreign = "0badc0de-0000-4000-8000-000000000001", "0deadbee-0000-4000-8000-000000000002"
    cleanup.extend([ghost, foreign])
    # One of a CrawlJob that never existed in a namespace this operator serves, one of
    # a namespace it does not serve (another installation's to judge).
    await batch.create_namespaced_job(WORKER_NAMESPACE, orphan(ghost, "cjw-gone-ns/ghost"))
    await batch.create_namespaced_job(WORKER_NAMESPACE, orphan(foreign, "not-ours/ghost"))

    async def ghost_gone() -> bool:
        return not await worker_jobs(api, ghost)

    await eventually(ghost_gone, what="the orphaned Job swept", within=20)
    assert len(await worker_jobs(api, foreign)) == 1


async def test_sqlite_with_workers_fails_workers_need_postgresql(
    api: ApiClient,
    crawl_operator: OperatorProcess,
    make_namespace: MakeNamespace,
    cleanup: list[str],
) -> None:
    ns = await make_namespace("cj-")
    uid = await create(api, ns, "needs-pg", {"urls": [SEED], "workers": 3})
    cleanup.append(uid)
    status = (await finished(api, ns, "needs-pg", within=30))["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "WorkersNeedPostgreSQL")
    assert "SQLite" in status["message"]
    kind, _, message = await wait_for_event(api, ns, "needs-pg", "Failed")
    assert kind == "Warning"
    assert message.startswith("WorkersNeedPostgreSQL: spec.workers is 3")
    assert await worker_jobs(api, uid) == []


@pytest.mark.parametrize("workers", [0, 1000, 33])
async def test_the_crd_rejects_workers_out_of_bounds(
    cluster: kube.Cluster, all_crds: None, make_namespace: MakeNamespace, workers: int
) -> None:
    ns = await make_namespace("cjw-schema-")
    manifest = crawljob("bounds", {"urls": [SEED], "workers": workers})
    done = await kubectl(
        cluster, "apply", "--dry-run=server", "-n", ns, "-f", "-", stdin=manifest, check=False
    )
    assert done.returncode != 0
    assert "spec.workers" in done.stderr, done.stderr


async def test_the_crd_defaults_workers_to_one_and_takes_thirty_two(
    cluster: kube.Cluster, all_crds: None, make_namespace: MakeNamespace
) -> None:
    ns = await make_namespace("cjw-schema-")
    for spec, expected in (({"urls": [SEED]}, 1), ({"urls": [SEED], "workers": 32}, 32)):
        done = await kubectl(
            cluster, "apply", "--dry-run=server", "-n", ns, "-f", "-", "-o", "json",
            stdin=crawljob("bounds", spec),
        )  # fmt: skip
        assert json.loads(done.stdout)["spec"]["workers"] == expected


async def test_the_operator_reads_its_own_image_from_its_pod(
    api: ApiClient, make_namespace: MakeNamespace
) -> None:
    ns = await make_namespace("cjw-image-")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mandrill-abc"},
        "spec": {
            "nodeSelector": {"example.com/pool": "crawl"},
            "tolerations": [{"key": "example.com/pool", "operator": "Exists"}],
            "containers": [
                {"name": "sidecar", "image": "registry.example/sidecar:1"},
                {"name": "operator", "image": "registry.example/mandrill:9.9",
                 "imagePullPolicy": "Always"},
            ]
        },
    }  # fmt: skip
    await client.CoreV1Api(api).create_namespaced_pod(ns, pod)
    here = {"POD_NAME": "mandrill-abc", "POD_NAMESPACE": ns}
    assert await worker_jobs_adapter.own_image(api, here) == (
        "registry.example/mandrill:9.9",
        "Always",
    )
    assert await worker_jobs_adapter.own_image(api, {**here, "POD_NAME": "not-a-pod"}) is None
    assert await worker_jobs_adapter.own_image(api, {}) is None
    placement = await worker_jobs_adapter.own_placement(api, here)
    assert placement["nodeSelector"] == {"example.com/pool": "crawl"}
    assert {"key": "example.com/pool", "operator": "Exists"} in placement["tolerations"]
    assert await worker_jobs_adapter.own_placement(api, {}) == {}


async def test_workers_that_exit_1_fail_their_index_and_the_crawljob(
    api: ApiClient,
    pending_operator: OperatorProcess,
    make_namespace: MakeNamespace,
    cleanup: list[str],
) -> None:
    ns = await make_namespace("cjp-")
    uid = await create(api, ns, "broken", {"urls": [SEED], "workers": 2})
    cleanup.append(uid)
    pods = await eventually(lambda: _at_least(worker_pods(api, uid), 2), what="2 pods", within=30)
    # What a kubelet reports for a worker that met an error it cannot get past.
    now = "2026-01-01T00:00:00Z"
    core = client.CoreV1Api(api)
    for pod in pods:
        await core.patch_namespaced_pod_status(
            pod["metadata"]["name"],
            WORKER_NAMESPACE,
            {
                "status": {
                    "phase": "Failed",
                    "containerStatuses": [
                        {
                            "name": "worker",
                            "image": IMAGE,
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {
                                "terminated": {
                                    "exitCode": 1,
                                    "reason": "Error",
                                    "startedAt": now,
                                    "finishedAt": now,
                                }
                            },
                        }
                    ],
                }
            },
        )
    status = (await finished(api, ns, "broken", within=60))["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "WorkersFailed"), status["message"]
    assert status["message"].startswith("the worker Job failed (")
    assert status["message"].endswith("every seed URL is left")
    # podFailurePolicy FailIndex: exit 1 is final, no index was retried.
    [job] = await worker_jobs(api, uid)
    assert job["status"].get("failedIndexes") == "0,1"
    assert len(await worker_pods(api, uid)) == 2
