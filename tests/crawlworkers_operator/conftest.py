"""Fixtures for CrawlJobs on workers: operators on PostgreSQL, and the Jobs they make.

Two operators of our own, both on one database of the session's PostgreSQL
server (tests/postgres.py), both running as deploy/rbac's ServiceAccount,
with POD_NAMESPACE=mandrill-system (so their worker Jobs go where an
installed operator's go) and MANDRILL_WORKER_IMAGE (they are no pods, so
they cannot read their own image):

- `workers_operator` on `cjw-*`: on kwok's fake nodes its worker pods start
  and complete at once, without running anything (kwok's pod-complete stage
  completes every pod a Job owns), so its Jobs complete within seconds;
- `pending_operator` on `cjp-*`: its workers ask for more CPU than a fake
  node has, so they stay Pending and the Job stays active: a crawl that is
  running, for deletion and status tests.

The unit tests in this folder need none of this.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests import kube
from tests.crawljob.conftest import all_crds, crawl_operator  # noqa: F401 (fixtures)
from tests.operator_process import IN_CLUSTER, IN_CLUSTER_SKIP, OperatorProcess
from tests.postgres import PostgresServer

WORKER_NAMESPACE = "mandrill-system"
IMAGE = "registry.example/mandrill:workers-test"
UID_LABEL = "mandrill.dev/crawljob-uid"


@pytest.fixture(scope="session")
def workers_store(postgres: PostgresServer) -> str:
    """A database of its own on the session's server, shared by the two operators."""
    return postgres.url(postgres.create_database("workers"))


def _operator(
    *,
    kubeconfig: pathlib.Path,
    workdir: pathlib.Path,
    namespaces: str,
    store: str,
    extra: tuple[str, ...] = (),
) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig=kubeconfig,
        workdir=workdir,
        namespaces=namespaces,
        store_url=store,
        extra_args=(
            "--crawl-allow-private",
            "true",
            "--worker-progress-interval",
            "0.5",
            "--resync-interval",
            "2",
            *extra,
        ),
        env={"POD_NAMESPACE": WORKER_NAMESPACE, "MANDRILL_WORKER_IMAGE": IMAGE},
    ).start()


@pytest.fixture(scope="session")
def workers_operator(
    cluster: kube.Cluster,
    all_crds: None,  # noqa: F811
    operator_kubeconfig: pathlib.Path,
    workers_store: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    if IN_CLUSTER:
        pytest.skip(IN_CLUSTER_SKIP)
    op = _operator(
        kubeconfig=operator_kubeconfig,
        workdir=tmp_path_factory.mktemp("workers-operator"),
        namespaces="cjw-*",
        store=workers_store,
    )
    yield op
    assert op.stop() == 0, op.log_tail()


@pytest.fixture(scope="session")
def pending_operator(
    cluster: kube.Cluster,
    all_crds: None,  # noqa: F811
    operator_kubeconfig: pathlib.Path,
    workers_store: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    if IN_CLUSTER:
        pytest.skip(IN_CLUSTER_SKIP)
    op = _operator(
        kubeconfig=operator_kubeconfig,
        workdir=tmp_path_factory.mktemp("pending-operator"),
        namespaces="cjp-*",
        store=workers_store,
        # More than a fake node's 64 CPUs: scheduled nowhere, so never completed by kwok.
        extra=("--worker-cpu-request", "100", "--worker-cpu-limit", "100"),
    )
    yield op
    assert op.stop() == 0, op.log_tail()


async def worker_jobs(api: ApiClient, uid: str) -> list[dict[str, Any]]:
    """The worker Jobs of one CrawlJob, as the API server has them."""
    listed = await client.BatchV1Api(api).list_namespaced_job(
        WORKER_NAMESPACE, label_selector=f"{UID_LABEL}={uid}", _preload_content=False
    )
    async with listed:
        body = await listed.json()
    items: list[dict[str, Any]] = body["items"]
    return items


async def worker_pods(api: ApiClient, uid: str) -> list[dict[str, Any]]:
    listed = await client.CoreV1Api(api).list_namespaced_pod(
        WORKER_NAMESPACE, label_selector=f"{UID_LABEL}={uid}", _preload_content=False
    )
    async with listed:
        body = await listed.json()
    items: list[dict[str, Any]] = body["items"]
    return items


async def delete_worker_jobs(api: ApiClient, uid: str) -> None:
    """Clean up after a test: its Jobs and pods, whatever the operator did."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    for job in await worker_jobs(api, uid):
        try:
            await batch.delete_namespaced_job(
                job["metadata"]["name"], WORKER_NAMESPACE, propagation_policy="Background"
            )
        except ApiException as e:
            if e.status != 404:
                raise
    await core.delete_collection_namespaced_pod(
        WORKER_NAMESPACE, label_selector=f"{UID_LABEL}={uid}", grace_period_seconds=0
    )


class Rows:
    """The store's side door: rows written as the workers would write them (asyncpg)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        count = iter(range(1, 1000))
        numbered = re.sub(r"\?", lambda _: f"${next(count)}", sql)
        conn = await asyncpg.connect(self.url)
        try:
            return [tuple(r) for r in await conn.fetch(numbered, *args)]
        finally:
            await conn.close()
