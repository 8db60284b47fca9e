"""An operator watching namespace globs serves every matching namespace, whenever made.

kopf lists the namespaces once, then starts their watch with a listing of its
own, and ignores what that second listing holds: a namespace made between the
two was never served (until something modified it). CI caught it as a freshly
started operator idling while a test's request waited, because the test made
its namespace the moment the operator answered /healthz. This test does the
same, many times over.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests.operator_process import OperatorProcess, free_port
from tests.restart import rr

BURST = 0.2
"""Seconds of namespaces made from the operator's first /healthz answer. Both
listings fall within its first tenth of a second here (the missed namespaces
were among the first made); a longer burst only gives the namespace controller
more to delete while later tests run."""
MAKERS = 3
"""Namespaces made at once, so a gap of a few milliseconds still gets one."""


async def answered(url: str, within: float = 60.0) -> None:
    """Return as soon as `url` answers 200 (polled every few milliseconds)."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.003)
    raise AssertionError(f"{url} did not answer within {within}s")


async def test_namespaces_made_while_the_operator_starts_are_all_served(
    api: ApiClient, solo_operators: Callable[..., OperatorProcess]
) -> None:
    core = client.CoreV1Api(api)
    prefix = f"rrns-{secrets.token_hex(3)}-"
    made: list[str] = []

    async def make_until(deadline: float) -> None:
        while time.monotonic() < deadline:
            name = f"{prefix}{len(made)}"
            made.append(name)
            await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    port = free_port()
    starting = asyncio.create_task(asyncio.to_thread(solo_operators, f"{prefix}*", port=port))
    try:
        await answered(f"http://127.0.0.1:{port}/healthz")
        deadline = time.monotonic() + BURST
        await asyncio.gather(*(make_until(deadline) for _ in range(MAKERS)))
        await starting

        # A request for a pod that does not exist: Failed (TargetNotFound) and
        # acknowledged at once, but only by an operator that serves its namespace.
        spec = {"target": {"kind": "Pod", "name": "nothing-here"}}
        await asyncio.gather(*(rr.create_request(api, ns, "probe", spec) for ns in made))
        bodies = await asyncio.gather(
            *(rr.finished(api, ns, "probe", within=20) for ns in made), return_exceptions=True
        )
        missed = [ns for ns, body in zip(made, bodies, strict=True) if isinstance(body, Exception)]
        assert not missed, f"{len(missed)} of {len(made)} namespaces never served: {missed}"
        reasons = {body["status"].get("reason") for body in bodies if isinstance(body, dict)}
        assert reasons == {"TargetNotFound"}
    finally:
        await asyncio.gather(
            *(core.delete_namespace(ns, propagation_policy="Background") for ns in made),
            return_exceptions=True,
        )
