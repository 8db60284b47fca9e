"""Helpers for RestartRequest tests: create requests and workloads, wait for outcomes."""

from __future__ import annotations

import datetime
import os
import pathlib
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests import kube, operator_process
from tests.kube import eventually

GROUP, VERSION, PLURAL = "mandrill.dev", "v1alpha1", "restartrequests"
WORKLOAD_IMAGE = os.environ.get("MANDRILL_TEST_WORKLOAD_IMAGE", "registry.invalid/app:1")
"""The test workloads' image: never pulled on the local control plane (kwok runs
no containers); a real, pre-loaded one on kind (deploy/kind/e2e.sh)."""


async def create_request(api: ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> str:
    """Create a RestartRequest; returns its UID."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RestartRequest",
        "metadata": {"name": name},
        "spec": spec,
    }
    created = await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return str(created["metadata"]["uid"])


async def get_request(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return got


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in body.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return dict(c)
    return None


def acknowledged(body: dict[str, Any]) -> bool:
    c = condition(body, "Acknowledged")
    return c is not None and c["status"] == "True"


async def finished(
    api: ApiClient, namespace: str, name: str, within: float = 90.0
) -> dict[str, Any]:
    """Wait for the request's acknowledgement; returns the request."""
    return await kube.object_until(
        lambda: get_request(api, namespace, name),
        lambda body: body is not None and acknowledged(body),
        what=f"RestartRequest {name} acknowledged",
        within=within,
    )


def deployment(
    name: str,
    replicas: int,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    pod_annotations: dict[str, str] | None = None,
) -> client.V1Deployment:
    pod_labels = {"app": name, **(labels or {})}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}, annotations=annotations),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=pod_labels, annotations=pod_annotations),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image=WORKLOAD_IMAGE)],
                    termination_grace_period_seconds=0,
                ),
            ),
        ),
    )


def ready(pod: client.V1Pod) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


async def ready_pods(
    api: ApiClient, namespace: str, selector: str, count: int, within: float = 90.0
) -> list[client.V1Pod]:
    """Wait until exactly `count` pods match, all Running and Ready; returns them."""
    core = client.CoreV1Api(api)

    async def probe() -> list[client.V1Pod] | None:
        pods = (await core.list_namespaced_pod(namespace, label_selector=selector)).items
        good = [p for p in pods if ready(p)]
        return good if len(good) == count == len(pods) else None

    return await eventually(probe, what=f"{count} ready pods {selector}", within=within)


async def deploy(
    api: ApiClient, namespace: str, name: str, replicas: int, **kwargs: Any
) -> list[client.V1Pod]:
    """Create a Deployment and wait for its pods to be Ready."""
    await client.AppsV1Api(api).create_namespaced_deployment(
        namespace, deployment(name, replicas, **kwargs)
    )
    return await ready_pods(api, namespace, f"app={name}", replicas)


async def pod_exists(api: ApiClient, namespace: str, name: str, uid: str) -> bool:
    """Whether the pod with this name AND uid still exists and is not being deleted."""
    try:
        pod = await client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return bool(pod.metadata.uid == uid and pod.metadata.deletion_timestamp is None)


def journal_rows(store: pathlib.Path, request_uid: str) -> list[tuple[Any, ...]]:
    return operator_process.journal_rows(store, request_uid)


def parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def events_for(
    api: ApiClient, namespace: str, name: str, kind: str = "RestartRequest"
) -> list[client.CoreV1Event]:
    listed = await client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={kind}"
    )
    return list(listed.items)


async def events_with(
    api: ApiClient,
    namespace: str,
    name: str,
    reasons: set[str],
    kind: str = "RestartRequest",
    within: float = 20.0,
) -> list[client.CoreV1Event]:
    """The object's Events once each of `reasons` is among them.

    The operator posts Events after the work and after its acknowledgements
    (adapters/events.py), so a test waits for them rather than reading once."""

    async def probe() -> list[client.CoreV1Event] | None:
        found = await events_for(api, namespace, name, kind)
        return found if reasons <= {e.reason for e in found} else None

    return await kube.eventually(
        probe, what=f"Events {sorted(reasons)} on {kind} {name}", within=within
    )
