"""A deposed leader is inert: frozen past its lease, or unable to renew, it stops and leaves.

Covers: a leader SIGSTOPped mid-flight while the standby takes the Lease and
finishes every request, then SIGCONTed, exits with status 4 within one retry
period and writes nothing at all: no RestartRequest changes, no pod is
deleted, no Event is posted in the namespace after it wakes (watched), so it
restarts nothing the new leader planned, and every target was deleted
exactly once; a leader whose renewals are refused (its RoleBinding deleted)
stops at its renew deadline and exits with status 4.

Short timings (lease 6 s, renew deadline 4 s, retry 1 s) keep these quick;
the defaults are measured in test_failover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.kube import deletions, eventually
from tests.leader import leases
from tests.leader.conftest import Electors
from tests.leader.test_failover import _acknowledged, _all_acknowledged, _one_request_per_pod
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]
SHORT = (
    "--leader-election-lease-duration",
    "6",
    "--leader-election-renew-deadline",
    "4",
    "--leader-election-retry-period",
    "1",
)
RETRY = 1.0
LEADERSHIP_LOST = 4


@contextlib.asynccontextmanager
async def writes(api: ApiClient, ns: str) -> AsyncIterator[list[str]]:
    """Every change to RestartRequests, pods and Events in `ns` while the block runs."""
    seen: list[str] = []
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    sources: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = [
        (
            "RestartRequest",
            custom.list_namespaced_custom_object,
            (rr.GROUP, rr.VERSION, ns, rr.PLURAL),
        ),
        ("Pod", core.list_namespaced_pod, (ns,)),
        ("Event", core.list_namespaced_event, (ns,)),
    ]
    started = asyncio.Event()
    ready: list[None] = []

    async def follow(kind: str, method: Callable[..., Any], args: tuple[Any, ...]) -> None:
        listed = await method(*args)
        version = (
            listed["metadata"]["resourceVersion"]
            if isinstance(listed, dict)
            else listed.metadata.resource_version
        )
        ready.append(None)
        if len(ready) == len(sources):
            started.set()
        w = watch.Watch()
        try:
            async for event in w.stream(
                method, *args, resource_version=version, timeout_seconds=60
            ):
                obj = event["object"]
                name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
                seen.append(f"{event['type']} {kind} {name}")
        finally:
            await w.close()

    tasks = [asyncio.create_task(follow(*source)) for source in sources]
    await asyncio.wait_for(started.wait(), 30)
    try:
        yield seen
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_leader_frozen_past_its_lease_wakes_inert_and_leaves(
    api: ApiClient, cluster: kube.Cluster, make_namespace: MakeNamespace, electors: Electors
) -> None:
    ns = await make_namespace("solo-")
    pods = await rr.deploy(api, ns, "web", 40)
    original = {p.metadata.uid for p in pods}
    async with deletions(cluster, ns) as deleted:
        a = electors(ns, "op-a", *SHORT, "--max-concurrent-restarts", "1")
        await leases.held_by(api, ns, "op-a_", within=30)
        b = electors(ns, "op-b", *SHORT, "--max-concurrent-restarts", "1")
        await _one_request_per_pod(api, ns, pods)

        async def some_acknowledged() -> list[dict[str, Any]] | None:
            done = await _acknowledged(api, ns)
            return done if len(done) >= 5 else None

        await eventually(some_acknowledged, what="5 acknowledged", within=120)
        a.signal(signal.SIGSTOP)
        in_flight = 40 - len(await _acknowledged(api, ns))
        await leases.held_by(api, ns, "op-b_", within=6 + 1 + 10)
        await _all_acknowledged(api, ns, 40, within=240)
        await rr.ready_pods(api, ns, "app=web", 40, within=120)
        await asyncio.sleep(6)  # the new leader's last Events go out: from now on all is quiet

        async with writes(api, ns) as after_wake:
            a.signal(signal.SIGCONT)
            woken = time.monotonic()
            code = await asyncio.to_thread(a.wait, 10)
            left = time.monotonic() - woken
            await asyncio.sleep(4)  # anything it sent on the way out would show by now

    print(
        f"\ndeposed: a leader frozen with {in_flight} of 40 requests unacknowledged woke "
        f"after the standby finished them, and exited {left:.2f} s later, writing nothing"
    )
    assert code == LEADERSHIP_LOST, a.log_tail()
    assert left <= RETRY, f"took {left:.2f} s to stop"
    assert after_wake == [], "the deposed leader wrote after waking"
    assert in_flight > 0
    log = a.log_path.read_text()
    assert "lost Lease" in log
    assert "exiting with status 4" in log
    deleted_targets = [uid for uid in deleted if uid in original]
    assert sorted(deleted_targets) == sorted(original), "each target deleted exactly once"
    assert not set(deleted) - original, "a replacement pod was deleted"
    assert b.leading()


async def test_leader_that_cannot_renew_stops_at_its_deadline_and_exits(
    api: ApiClient, cluster: kube.Cluster, make_namespace: MakeNamespace, electors: Electors
) -> None:
    ns = await make_namespace("solo-")
    a = electors(ns, "op-a", *SHORT)
    await leases.held_by(api, ns, "op-a_", within=30)

    await client.RbacAuthorizationV1Api(api).delete_namespaced_role_binding(
        "mandrill-leader-election", ns
    )
    revoked = time.monotonic()
    code = await asyncio.to_thread(a.wait, 30)
    took = time.monotonic() - revoked

    print(f"\nrenewals refused: the leader exited {took:.1f} s later (renew deadline 4 s)")
    assert code == LEADERSHIP_LOST, a.log_tail()
    assert took <= 4 + RETRY + 2, f"took {took:.1f} s"
    assert "not renewed within the renew deadline" in a.log_path.read_text()
