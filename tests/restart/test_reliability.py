"""Exactly-once under a crash, an unavailable store, and many requests at once.

Each test here that needs a special operator (killed, or with a broken store)
starts its own on a `solo-*` namespace, which the shared operator ignores.
"""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import time
from collections.abc import Awaitable, Callable

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests.kube import eventually
from tests.operator_process import OperatorProcess
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]


async def _pdb(api: ApiClient, namespace: str, app: str, min_available: int) -> None:
    policy = client.PolicyV1Api(api)
    await policy.create_namespaced_pod_disruption_budget(
        namespace,
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name=app),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=min_available,
                selector=client.V1LabelSelector(match_labels={"app": app}),
            ),
        ),
    )

    async def computed() -> bool:
        pdb = await policy.read_namespaced_pod_disruption_budget(app, namespace)
        return bool(pdb.status and pdb.status.expected_pods)

    await eventually(computed, what=f"PDB {app} computed")


async def test_sigkill_mid_request_resumes_without_restarting_twice(
    api: ApiClient, make_namespace: MakeNamespace, solo_operators: Callable[..., OperatorProcess]
) -> None:
    ns = await make_namespace("solo-")
    free = await rr.deploy(api, ns, "free", 3, labels={"group": "g"})
    held = await rr.deploy(api, ns, "held", 3, labels={"group": "g"})
    await _pdb(api, ns, "held", 3)  # blocks every eviction of "held" for now
    first = solo_operators(ns)
    uid = await rr.create_request(
        api,
        ns,
        "crash",
        {
            "target": {"selector": {"matchLabels": {"group": "g"}}},
            "strategy": "Evict",
            "maxConcurrent": 6,
            "evictionTimeoutSeconds": 300,
        },
    )

    async def half_done() -> dict[str, object] | None:
        body = await rr.get_request(api, ns, "crash")
        return body if body.get("status", {}).get("restarted") == 3 else None

    mid = await eventually(half_done, what="the free pods' restarts recorded", within=60)
    first.kill()
    pending = {t["uid"] for t in mid["status"]["targets"] if t["outcome"] == "Pending"}  # type: ignore[index]
    assert pending == {p.metadata.uid for p in held}
    replacements = await rr.ready_pods(api, ns, "app=free", 3)
    assert not {p.metadata.uid for p in replacements} & {p.metadata.uid for p in free}
    await client.PolicyV1Api(api).patch_namespaced_pod_disruption_budget(
        "held", ns, {"spec": {"minAvailable": 0}}
    )

    second = solo_operators(ns)
    body = await rr.finished(api, ns, "crash", within=120)

    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert status["restarted"] == 6
    assert status["attempts"] == 2
    for pod in replacements:  # restarted once, by the first operator: never again
        assert await rr.pod_exists(api, ns, pod.metadata.name, pod.metadata.uid)
    for pod in held:
        assert not await rr.pod_exists(api, ns, pod.metadata.name, pod.metadata.uid)
    store = pathlib.Path(second.store_url.removeprefix("sqlite:///"))
    assert len(rr.journal_rows(store, uid)) == 1
    events = await rr.events_with(api, ns, "crash", {"Acknowledged", "Resumed"})
    acknowledged = sum(e.count or 1 for e in events if e.reason == "Acknowledged")
    assert acknowledged == 1
    assert any(e.reason == "Resumed" for e in events)


async def test_unavailable_store_still_restarts_and_reports_not_saved(
    api: ApiClient, make_namespace: MakeNamespace, solo_operators: Callable[..., OperatorProcess]
) -> None:
    ns = await make_namespace("solo-")
    pods = await rr.deploy(api, ns, "web", 2)
    solo_operators(ns, store_url="sqlite:////proc/no-such-dir/journal.sqlite")
    await rr.create_request(api, ns, "unsaved", {"target": {"kind": "Deployment", "name": "web"}})

    body = await rr.finished(api, ns, "unsaved")

    assert body["status"]["phase"] == "Succeeded"
    assert body["status"]["restarted"] == 2
    saved = rr.condition(body, "Saved")
    assert saved is not None
    assert saved["status"] == "False"
    assert saved["reason"] == "StoreUnavailable"
    for p in pods:
        assert not await rr.pod_exists(api, ns, p.metadata.name, p.metadata.uid)
    events = await rr.events_with(api, ns, "unsaved", {"NotSaved"})
    assert any(e.reason == "NotSaved" and e.type == "Warning" for e in events)


@pytest.mark.usefixtures("operator")
async def test_hundred_requests_at_once_are_all_acknowledged_and_overlap(
    api: ApiClient, make_namespace: MakeNamespace
) -> None:
    ns = await make_namespace("rr-")
    pods = await rr.deploy(api, ns, "web", 100)
    created: dict[str, float] = {}

    async def create(i: int, pod: client.V1Pod) -> None:
        await rr.create_request(api, ns, f"r{i}", {"target": {"name": pod.metadata.name}})
        created[f"r{i}"] = time.time()

    await asyncio.gather(*(create(i, p) for i, p in enumerate(pods)))

    async def all_acknowledged() -> list[dict[str, object]] | None:
        listed = await client.CustomObjectsApi(api).list_namespaced_custom_object(
            rr.GROUP, rr.VERSION, ns, rr.PLURAL
        )
        items = listed["items"]
        done = [b for b in items if rr.acknowledged(b)]
        return done if len(done) == 100 else None

    bodies = await eventually(all_acknowledged, what="100 requests acknowledged", within=180)

    assert {b["status"]["phase"] for b in bodies} == {"Succeeded"}  # type: ignore[index]
    assert sum(b["status"]["restarted"] for b in bodies) == 100  # type: ignore[index]
    # Overlap from the requests' own timestamps: how many were in flight at once.
    spans = [
        (rr.parse_time(b["status"]["startedAt"]), rr.parse_time(b["status"]["acknowledgedAt"]))  # type: ignore[index]
        for b in bodies
    ]
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    in_flight = peak = 0
    for _, step in points:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak >= 10, f"at most {peak} requests were handled at the same time"
    latencies = sorted(
        rr.parse_time(b["status"]["acknowledgedAt"]).timestamp() - created[b["metadata"]["name"]]  # type: ignore[index]
        for b in bodies
    )
    print(
        f"\n100 requests: peak in flight {peak}, creation->ack p50 "
        f"{statistics.median(latencies):.2f}s p99 {latencies[98]:.2f}s"
    )
