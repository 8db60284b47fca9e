"""A standby does nothing but wait; when it becomes the leader it picks up everything it saw.

Covers: while another holder renews the Lease, an operator with leader
election serves /healthz and /metrics and touches nothing: a RestartRequest,
a CrawlJob and a RestartSchedule created meanwhile get no status and no
target is restarted; once the holder stops renewing, the standby takes the
Lease a lease later and acts on all three (the request acknowledged, the
crawl finished, the schedule's status written) without any new event about
them, because a new leader lists everything.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from mandrill.adapters import lease
from mandrill.domain import timestamps
from mandrill.domain.leadership import LeaseRecord
from tests.kube import eventually
from tests.leader import leases
from tests.leader.conftest import LEASE, Electors
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]
OTHERS_LEASE = 5
"""The other holder's lease duration, in seconds: what the standby must wait once it stops."""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return int(response.status)


async def _hold(store: lease.KubeLease, stop: asyncio.Event) -> None:
    """Be the leader "someone-else": create the Lease and renew it every second until `stop`."""
    record = LeaseRecord(holder="someone-else", lease_duration_seconds=OTHERS_LEASE)
    current = await store.create(record)
    assert current is not None
    while not stop.is_set():
        await asyncio.sleep(1)
        renewed = LeaseRecord(
            holder="someone-else",
            lease_duration_seconds=OTHERS_LEASE,
            renew_time=timestamps.now(),
        )
        current = await store.update(renewed, version=current.version)
        assert current is not None, "nobody takes a Lease that is renewed"


async def _custom(api: ApiClient, ns: str, plural: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        rr.GROUP, rr.VERSION, ns, plural, name
    )
    return got


async def test_standby_touches_nothing_then_takes_over_everything_it_saw(
    api: ApiClient, make_namespace: MakeNamespace, electors: Electors
) -> None:
    ns = await make_namespace("solo-")
    [pod] = await rr.deploy(api, ns, "web", 1)
    stop = asyncio.Event()
    holder = asyncio.create_task(_hold(lease.KubeLease(api=api, namespace=ns, name=LEASE), stop))
    await leases.held_by(api, ns, "someone-else", within=10)
    standby = electors(ns, "op-a", "--crawl-allow-private", "true")
    custom = client.CustomObjectsApi(api)

    await rr.create_request(api, ns, "one", {"target": {"name": pod.metadata.name}})
    await custom.create_namespaced_custom_object(
        rr.GROUP,
        rr.VERSION,
        ns,
        "crawljobs",
        {
            "apiVersion": f"{rr.GROUP}/{rr.VERSION}",
            "kind": "CrawlJob",
            "metadata": {"name": "site"},
            "spec": {"urls": [f"http://127.0.0.1:{_closed_port()}/"], "maxDepth": 0},
        },
    )
    await custom.create_namespaced_custom_object(
        rr.GROUP,
        rr.VERSION,
        ns,
        "restartschedules",
        {
            "apiVersion": f"{rr.GROUP}/{rr.VERSION}",
            "kind": "RestartSchedule",
            "metadata": {"name": "hourly"},
            "spec": {
                "schedule": "0 * * * *",
                "timeZone": "UTC",
                "template": {"target": {"kind": "Deployment", "name": "web"}},
            },
        },
    )
    await asyncio.sleep(6)  # an acting operator handles all three within a second or two

    untouched = {
        plural: (await _custom(api, ns, plural, name)).get("status")
        for plural, name in (
            ("restartrequests", "one"),
            ("crawljobs", "site"),
            ("restartschedules", "hourly"),
        )
    }
    assert untouched == dict.fromkeys(("restartrequests", "crawljobs", "restartschedules"))
    assert await rr.pod_exists(api, ns, pod.metadata.name, pod.metadata.uid)
    assert not standby.leading()
    assert await asyncio.to_thread(_healthz, standby.port) == 200

    stop.set()
    await holder
    stopped = time.monotonic()
    taken = await leases.held_by(api, ns, "op-a_", within=OTHERS_LEASE + 2 + 5)

    done = await rr.finished(api, ns, "one", within=30)
    assert done["status"]["phase"] == "Succeeded"

    async def crawled() -> dict[str, Any] | None:
        st = (await _custom(api, ns, "crawljobs", "site")).get("status") or {}
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    async def scheduled() -> dict[str, Any] | None:
        st = (await _custom(api, ns, "restartschedules", "hourly")).get("status") or {}
        return st if st.get("nextScheduleTime") else None

    crawl = await eventually(crawled, what="the CrawlJob crawled", within=30)
    schedule = await eventually(scheduled, what="the schedule's status", within=30)
    assert crawl["pagesFailed"] == 1
    upcoming = timestamps.parse(schedule["nextScheduleTime"])
    assert upcoming is not None
    assert (upcoming.minute, upcoming.second) == (0, 0), "on the hour"
    assert standby.leading()
    assert OTHERS_LEASE - 1 <= taken - stopped <= OTHERS_LEASE + 2 + 1
