"""Reading the election's Lease as the tests see it: who holds it, and since when."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests.leader.conftest import LEASE


async def spec(api: ApiClient, namespace: str) -> dict[str, Any] | None:
    """The Lease's spec as JSON, or None if there is no Lease."""
    try:
        lease = await client.CoordinationV1Api(api).read_namespaced_lease(
            LEASE, namespace, _preload_content=False
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    async with lease:
        body: dict[str, Any] = await lease.json()
    return dict(body.get("spec") or {})


async def holder(api: ApiClient, namespace: str) -> str:
    found = await spec(api, namespace)
    return str((found or {}).get("holderIdentity") or "")


async def held_by(
    api: ApiClient, namespace: str, prefix: str, *, within: float, interval: float = 0.05
) -> float:
    """Poll until the Lease's holder starts with `prefix`; the monotonic time it was seen."""
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        last = await holder(api, namespace)
        if last.startswith(prefix):
            return time.monotonic()
        await asyncio.sleep(interval)
    raise AssertionError(f"Lease not held by {prefix}* within {within} s; holder: {last!r}")
