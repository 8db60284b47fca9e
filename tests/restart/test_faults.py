"""Faults survived with many requests outstanding: SIGKILL of the operator, loss of the API server.

Both tests count pod deletions with a watch of their own: every original
target must be deleted exactly once, and no replacement pod at all.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.kube import deletions, eventually
from tests.operator_process import OperatorProcess
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]
REPO = pathlib.Path(__file__).resolve().parents[2]


async def _requests_per_pod(api: ApiClient, ns: str, pods: list[client.V1Pod]) -> None:
    gate = asyncio.Semaphore(50)

    async def one(i: int, pod: client.V1Pod) -> None:
        async with gate:
            await rr.create_request(api, ns, f"r{i:03d}", {"target": {"name": pod.metadata.name}})

    await asyncio.gather(*(one(i, p) for i, p in enumerate(pods)))


async def _listed(api: ApiClient, ns: str) -> list[dict[str, Any]]:
    got = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        rr.GROUP, rr.VERSION, ns, rr.PLURAL
    )
    items: list[dict[str, Any]] = got["items"]
    return items


async def _all_acknowledged(api: ApiClient, ns: str, n: int, within: float) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        done = [b for b in await _listed(api, ns) if rr.acknowledged(b)]
        return done if len(done) == n else None

    return await eventually(probe, what=f"{n} requests acknowledged", within=within, interval=1)


async def test_sigkill_with_200_outstanding_loses_nothing_and_repeats_nothing(
    api: ApiClient,
    cluster: kube.Cluster,
    make_namespace: MakeNamespace,
    solo_operators: Callable[..., OperatorProcess],
) -> None:
    ns = await make_namespace("solo-")
    pods = await rr.deploy(api, ns, "web", 200)
    original = {p.metadata.uid for p in pods}
    async with deletions(cluster, ns) as deleted:
        # A small global bound keeps many requests in flight when the kill comes.
        first = solo_operators(ns, extra_args=("--max-concurrent-restarts", "2"))
        await _requests_per_pod(api, ns, pods)

        async def some_acknowledged() -> list[dict[str, Any]] | None:
            done = [b for b in await _listed(api, ns) if rr.acknowledged(b)]
            return done if len(done) >= 20 else None

        await eventually(some_acknowledged, what="20 acknowledged", within=120)
        first.kill()
        before = {
            b["metadata"]["name"]: b["status"]["acknowledgedAt"]
            for b in await _listed(api, ns)
            if rr.acknowledged(b)
        }
        assert 20 <= len(before) < 200, f"{len(before)} acknowledged at the kill: not mid-flight"

        second = solo_operators(ns)
        bodies = await _all_acknowledged(api, ns, 200, within=240)
        await rr.ready_pods(api, ns, "app=web", 200, within=120)

    assert {b["status"]["phase"] for b in bodies} == {"Succeeded"}
    for b in bodies:  # acknowledged once: what was acknowledged before the kill stayed as it was
        name = b["metadata"]["name"]
        if name in before:
            assert b["status"]["acknowledgedAt"] == before[name], name
    deleted_targets = [uid for uid in deleted if uid in original]
    assert sorted(deleted_targets) == sorted(original), "each target deleted exactly once"
    assert not set(deleted) - original, "a replacement pod was deleted"
    store = pathlib.Path(second.store_url.removeprefix("sqlite:///"))
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT count(*), count(DISTINCT request_uid) FROM restart_journal WHERE namespace = ?",
            (ns,),
        ).fetchone()
    assert rows == (200, 200)
    print(f"\nSIGKILL with {200 - len(before)} of 200 outstanding: all acknowledged, none twice")


@pytest.fixture
def local_cluster_dir() -> pathlib.Path:
    if os.environ.get("MANDRILL_TEST_KUBECONFIG"):
        pytest.skip("kills the API server: needs the local control plane the suite starts")
    return pathlib.Path(
        os.environ.get("MANDRILL_TEST_CLUSTER_DIR", REPO / ".cache/cluster/test")
    ).resolve()


async def test_api_server_killed_and_restarted_mid_run(
    api: ApiClient,
    cluster: kube.Cluster,
    make_namespace: MakeNamespace,
    solo_operators: Callable[..., OperatorProcess],
    local_cluster_dir: pathlib.Path,
) -> None:
    ns = await make_namespace("solo-")
    pods = await rr.deploy(api, ns, "web", 60)
    original = {p.metadata.uid for p in pods}
    async with deletions(cluster, ns) as deleted:
        solo_operators(ns, extra_args=("--max-concurrent-restarts", "2"))
        await _requests_per_pod(api, ns, pods)
        pid = int((local_cluster_dir / "pids" / "kube-apiserver.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(3)
        env = {**os.environ, "MANDRILL_CLUSTER_DIR": str(local_cluster_dir)}
        restarted = await asyncio.create_subprocess_exec(
            REPO / "deploy/local/cluster.sh",
            "up",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await restarted.wait() == 0
        fresh = await cluster.api_client()
        async with fresh:
            bodies = await _all_acknowledged(fresh, ns, 60, within=240)
            await rr.ready_pods(fresh, ns, "app=web", 60, within=120)

    assert {b["status"]["phase"] for b in bodies} == {"Succeeded"}
    deleted_targets = [uid for uid in deleted if uid in original]
    assert sorted(deleted_targets) == sorted(original), "each target deleted exactly once"
    assert not set(deleted) - original, "a replacement pod was deleted"
