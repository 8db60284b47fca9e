"""Two operator instances at once (a rolling update): no target is restarted twice.

Both instances see every request. Only one plan is ever recorded (a status
patch conditional on the resourceVersion), the other instance adopts it, pod
deletions carry the pod's UID as a precondition, and the rollout stamp is a
conditional patch too. The test counts pod deletions with a watch of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient

from tests.operator_process import OperatorProcess
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]


async def _record_deletions(api: ApiClient, ns: str, deleted: list[str]) -> None:
    w = watch.Watch()
    core = client.CoreV1Api(api)
    try:
        while True:
            async for event in w.stream(core.list_namespaced_pod, ns, timeout_seconds=30):
                if event["type"] == "DELETED":
                    deleted.append(event["object"].metadata.uid)
    finally:
        await w.close()


async def test_two_instances_restart_each_target_once(
    api: ApiClient, make_namespace: MakeNamespace, solo_operators: Callable[..., OperatorProcess]
) -> None:
    ns = await make_namespace("solo-")
    web = await rr.deploy(api, ns, "web", 6)
    await rr.deploy(api, ns, "roll", 2)
    deleted: list[str] = []
    recorder = asyncio.create_task(_record_deletions(api, ns, deleted))
    await asyncio.sleep(0.5)
    solo_operators(ns)
    solo_operators(ns)

    await rr.create_request(
        api, ns, "web", {"target": {"kind": "Deployment", "name": "web"}, "maxConcurrent": 2}
    )
    await rr.create_request(
        api,
        ns,
        "roll",
        {"target": {"kind": "Deployment", "name": "roll"}, "strategy": "RolloutRestart"},
    )
    web_done = await rr.finished(api, ns, "web", within=120)
    roll_done = await rr.finished(api, ns, "roll", within=120)
    await rr.ready_pods(api, ns, "app=web", 6)
    await rr.ready_pods(api, ns, "app=roll", 2)
    await asyncio.sleep(2)  # let any stray second round show up in the watch
    recorder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await recorder

    assert web_done["status"]["phase"] == "Succeeded"
    assert roll_done["status"]["phase"] == "Succeeded"
    original = {p.metadata.uid for p in web}
    web_deleted = [uid for uid in deleted if uid in original]
    assert sorted(web_deleted) == sorted(original), "each original pod deleted exactly once"
    replacements = {
        p.metadata.uid
        for p in (
            await client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=web")
        ).items
    }
    assert not replacements & set(deleted), "no replacement pod was deleted"
    replica_sets = await client.AppsV1Api(api).list_namespaced_replica_set(
        ns, label_selector="app=roll"
    )
    assert len(replica_sets.items) == 2, "one rollout, not two"
