"""The operator's pod terminated for real: the kubelet's SIGTERM, the drain, the replacement.

A request is held in flight by a PodDisruptionBudget that refuses the last
evictions, past the Deployment's drain timeout, while the operator's
pod is deleted -- by `kubectl delete pod`, and by `kubectl rollout restart`
(Recreate: the new pod starts after the old one is gone). The old pod drains
for its drain timeout, hands the request back and exits 0 within
terminationGracePeriodSeconds; the replacement resumes it once the budget
moves. A watch of the test's own counts the pods deleted.

Covers: exit status 0 and SIGTERM-to-exit under the kubelet's grace period
(printed): at once when idle, after the drain timeout when a request is
held; the drain and hand-back in the old pod's log; every target
restarted exactly once, no replacement pod restarted, the request finished by
a later attempt; its journal row, written by the old pod, read by the new one
(the store's PersistentVolume).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob.conftest import MakeNamespace
from tests.kube import eventually
from tests.operator_process import InClusterOperator
from tests.restart import rr
from tests.restart.test_reliability import _pdb


async def _held_request(api: ApiClient, ns: str, name: str) -> tuple[str, set[str]]:
    """3 pods restarted, 3 held by a PDB; returns the request's UID and the 6 targets' UIDs."""
    free = await rr.deploy(api, ns, "free", 3, labels={"group": "g"})
    held = await rr.deploy(api, ns, "held", 3, labels={"group": "g"})
    await _pdb(api, ns, "held", 3)
    uid = await rr.create_request(
        api,
        ns,
        name,
        {
            "target": {"selector": {"matchLabels": {"group": "g"}}},
            "strategy": "Evict",
            "maxConcurrent": 6,
            "evictionTimeoutSeconds": 600,
        },
    )

    async def half_done() -> bool:
        body = await rr.get_request(api, ns, name)
        return bool(body.get("status", {}).get("restarted") == 3)

    await eventually(half_done, what="the free pods restarted", within=60)
    return uid, {p.metadata.uid for p in free + held}


@contextlib.asynccontextmanager
async def _watching(
    api: ApiClient, namespace: str, selector: str | None, seen: Callable[[str, Any], None]
) -> AsyncIterator[None]:
    """Feed every pod event in `namespace` to `seen` while the block runs."""

    async def run() -> None:
        core = client.CoreV1Api(api)
        while True:
            w = watch.Watch()
            try:
                async for event in w.stream(
                    core.list_namespaced_pod, namespace, label_selector=selector, timeout_seconds=60
                ):
                    seen(event["type"], event["object"])
            finally:
                await w.close()

    task = asyncio.create_task(run())
    await asyncio.sleep(0.5)  # the watch is established before anything is deleted
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _log_until_exit(installed: InClusterOperator, pod: str) -> asyncio.Task[str]:
    """`kubectl logs -f` of the pod: the task ends with its log when the container exits."""
    process = await asyncio.create_subprocess_exec(
        str(installed.cluster.kubectl_path), "--kubeconfig", str(installed.cluster.kubeconfig),
        "-n", installed.namespace, "logs", "-f", pod,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip

    async def read() -> str:
        out, _ = await process.communicate()
        return out.decode()

    return asyncio.create_task(read())


def _time(value: Any) -> datetime.datetime:
    return value if isinstance(value, datetime.datetime) else rr.parse_time(value)


@attrs.frozen
class Ended:
    """How the operator's old pod ended, as the kubelet reported it."""

    exit_code: int
    took: float
    """Seconds from SIGTERM (deletionTimestamp minus the grace period) to the exit."""
    log: str


async def _terminate(api: ApiClient, installed: InClusterOperator, how: str, grace: int) -> Ended:
    """Delete the operator's pod (`how`), wait for it to be gone; how it ended."""
    (old,) = [p for p in installed.pods() if "deletionTimestamp" not in p["metadata"]]
    name, uid = old["metadata"]["name"], old["metadata"]["uid"]
    seen: dict[str, Any] = {}

    def event(kind: str, pod: client.V1Pod) -> None:
        if pod.metadata.uid != uid:
            return
        statuses = pod.status.container_statuses or []
        if statuses and statuses[0].state.terminated is not None:
            seen["terminated"] = statuses[0].state.terminated
        if pod.metadata.deletion_timestamp is not None:
            # The first one: the kubelet's final delete (grace 0) moves it to then.
            seen.setdefault("deletion", pod.metadata.deletion_timestamp)
        if kind == "DELETED":
            seen["gone"] = True

    async with _watching(api, installed.namespace, installed.selector, event):
        log = await _log_until_exit(installed, name)
        if how == "delete pod":
            installed.kubectl("delete", "pod", name, "--wait=false")
        else:
            installed.kubectl("rollout", "restart", f"deployment/{installed.deployment}")

        async def gone() -> bool:
            return "gone" in seen

        await eventually(gone, what=f"{name} gone", within=grace + 15)
        text = await asyncio.wait_for(log, 15)
    terminated = seen.get("terminated")
    assert terminated is not None, "the kubelet reported no final state of the old container"
    # The API server sets deletionTimestamp to the deletion's time plus the grace period.
    sigterm = _time(seen["deletion"]) - datetime.timedelta(seconds=grace)
    took = (_time(terminated.finished_at) - sigterm).total_seconds()
    installed.rolled_out()
    return Ended(exit_code=terminated.exit_code, took=took, log=text)


def _settings(template: dict[str, Any]) -> tuple[int, float]:
    """The pod's grace period and the operator's drain timeout, as deployed."""
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    return template["spec"]["terminationGracePeriodSeconds"], float(env["MANDRILL_DRAIN_TIMEOUT"])


async def test_an_idle_operator_exits_at_once_on_the_kubelets_sigterm(
    api: ApiClient, installed: InClusterOperator, pod_template: dict[str, Any]
) -> None:
    grace, _ = _settings(pod_template)
    ended = await _terminate(api, installed, "delete pod", grace)

    print(f"\nidle: SIGTERM to exit {ended.took:.0f}s (grace {grace}s)")
    assert ended.exit_code == 0, ended.log[-3000:]
    assert ended.took <= 2
    assert '"stopped"' in ended.log
    assert "in-flight request(s)" not in ended.log


@pytest.mark.parametrize("how", ["delete pod", "rollout restart"])
async def test_termination_drains_and_the_replacement_resumes_exactly_once(
    api: ApiClient,
    installed: InClusterOperator,
    pod_template: dict[str, Any],
    make_namespace: MakeNamespace,
    how: str,
) -> None:
    grace, drain = _settings(pod_template)
    ns = await make_namespace("rr-")
    async with kube.deletions(installed.cluster, ns) as deleted:
        uid, targets = await _held_request(api, ns, "inflight")
        ended = await _terminate(api, installed, how, grace)

        print(f"\n{how}: SIGTERM to exit {ended.took:.0f}s (drain {drain:.0f}s, grace {grace}s)")
        assert ended.exit_code == 0, ended.log[-3000:]
        assert drain - 1 <= ended.took < grace
        assert "draining 1 in-flight request(s)" in ended.log, ended.log[-3000:]
        assert "handing back 1 request(s) still in flight" in ended.log, ended.log[-3000:]

        await client.PolicyV1Api(api).patch_namespaced_pod_disruption_budget(
            "held", ns, {"spec": {"minAvailable": 0}}
        )
        done = await rr.finished(api, ns, "inflight", within=120)

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["restarted"] == 6
    assert status["attempts"] >= 2
    counted = collections.Counter(deleted)
    assert set(counted) == targets, "a pod other than the six targets was deleted"
    assert all(n == 1 for n in counted.values()), counted
    assert len(installed.journal_rows(uid)) == 1
