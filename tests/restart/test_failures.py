"""Failures that must end loud, against the real API server: a request whose prior
status cannot be read ends Failed/InternalError with a Warning Event and a metric
after bounded retries, and the resync's listing finds exactly the requests of the
namespaces the operator serves (globs and exclusions as kopf reads them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from mandrill import config
from mandrill.adapters.restart_requests import KubeRequests
from mandrill.wiring import namespace_filter
from tests.kube import eventually
from tests.operator_process import OperatorProcess
from tests.restart import rr
from tests.restart.test_observability import scrape

MakeNamespace = Callable[[str], Awaitable[str]]


async def test_an_unreadable_prior_status_ends_failed_with_internal_error(
    api: ApiClient,
    make_namespace: MakeNamespace,
    solo_operators: Callable[..., OperatorProcess],
) -> None:
    ns = await make_namespace("solo-")
    await rr.deploy(api, ns, "web", 1)
    await rr.create_request(api, ns, "broken", {"target": {"kind": "Deployment", "name": "web"}})
    # A plan no version of mandrill could have written: a target row without a UID.
    await client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        rr.GROUP,
        rr.VERSION,
        ns,
        rr.PLURAL,
        "broken",
        {"status": {"phase": "Running", "targets": [{"kind": "Pod", "name": "web-x"}]}},
        _content_type="application/merge-patch+json",
    )
    op = solo_operators(ns)
    body = await rr.finished(api, ns, "broken", within=60)
    st = body["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "InternalError")
    assert "gave up after 3 unexpected errors" in st["message"]
    assert "InvalidStatus: status.targets cannot be read" in st["message"]
    assert rr.acknowledged(body)

    async def warned() -> list[client.CoreV1Event] | None:
        events = await rr.events_for(api, ns, "broken")
        found = [e for e in events if e.type == "Warning" and "InternalError" in e.message]
        return found or None

    (event,) = await eventually(warned, what="a Warning Event naming InternalError", within=10)
    assert event.source.component == "mandrill"
    metrics = scrape(op)
    assert metrics["mandrill_restart_request_errors_total"] == 3
    assert metrics['mandrill_restart_requests_acknowledged_total{phase="Failed"}'] == 1
    # Once acknowledged it stays so: no hot loop of retries behind it.
    await asyncio.sleep(1)
    assert scrape(op)["mandrill_restart_request_errors_total"] == 3


async def test_resync_lists_exactly_the_served_namespaces(
    api: ApiClient, make_namespace: MakeNamespace, crds: None
) -> None:
    served, excluded, other = (
        await make_namespace("resync-a-"),
        await make_namespace("resync-skip-"),
        await make_namespace("elsewhere-"),
    )
    for ns in (served, excluded, other):
        await rr.create_request(api, ns, "r", {"target": {"name": "p"}})

    async def namespaces(flag: str) -> set[str]:
        """What the resync lists for `--namespace flag`."""
        patterns = config.namespace_patterns(flag)
        requests = KubeRequests(api=api, patterns=patterns, serves=namespace_filter(patterns))
        return {b["metadata"]["namespace"] for b in await requests.list_all()}

    assert await namespaces("resync-*,!resync-skip-*") == {served}
    assert await namespaces(f"{served},{other}") == {served, other}
    assert {served, excluded, other} <= await namespaces("")  # cluster-wide
