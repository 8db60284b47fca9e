"""What restarting reads from Kubernetes objects, and which client calls reach a workload.

Objects stay plain JSON (`kube.call_json`): the generated client's model objects
cost more CPU to build than the API call itself (a pod read took a quarter of
the operator's CPU under load), and restarting reads a handful of fields.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from mandrill import resources
from mandrill.domain import timestamps
from mandrill.domain.restart.models import Kind, LabelSelector, Requirement

Obj = Mapping[str, Any]
"""A Kubernetes object as the API server sent it (JSON)."""


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def protected(obj: Obj) -> bool:
    return (meta(obj).get("annotations") or {}).get(resources.PROTECTED_ANNOTATION) == "true"


def selector_query(selector: Obj) -> str:
    """A workload's spec.selector (a LabelSelector) as a labelSelector query."""
    return LabelSelector(
        match_labels=dict(selector.get("matchLabels") or {}),
        match_expressions=tuple(
            Requirement(key=e["key"], operator=e["operator"], values=tuple(e.get("values") or ()))
            for e in selector.get("matchExpressions") or ()
        ),
    ).to_query()


def live(pod: Obj) -> bool:
    return meta(pod).get("deletionTimestamp") is None and status(pod).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def pod_ready(pod: Obj) -> bool:
    return (
        live(pod)
        and status(pod).get("phase") == "Running"
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status(pod).get("conditions") or ()
        )
    )


def created(obj: Obj) -> datetime.datetime:
    when = timestamps.parse(meta(obj).get("creationTimestamp"))
    return when or datetime.datetime.now(datetime.UTC)


def ref(kind: str, api_version: str, namespace: str, name: str, uid: str) -> dict[str, Any]:
    """An object reference for an Event about `kind` `namespace`/`name`."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"namespace": namespace, "name": name, "uid": uid},
    }


def template_annotations(workload: Obj) -> Mapping[str, str]:
    """The annotations of a workload's pod template."""
    template = (workload.get("spec") or {}).get("template") or {}
    return (template.get("metadata") or {}).get("annotations") or {}


@attrs.frozen
class WorkloadApi:
    """The client calls for one workload kind (namespaced read, list and patch)."""

    read: Callable[..., Awaitable[Any]]
    list: Callable[..., Awaitable[Any]]
    patch: Callable[..., Awaitable[Any]]


def workload_api(api: ApiClient, kind: Kind) -> WorkloadApi:
    """The client calls for `kind`; raises ValueError for a kind that is not a workload."""
    apps = client.AppsV1Api(api)
    if kind is Kind.DEPLOYMENT:
        return WorkloadApi(
            apps.read_namespaced_deployment,
            apps.list_namespaced_deployment,
            apps.patch_namespaced_deployment,
        )
    if kind is Kind.STATEFULSET:
        return WorkloadApi(
            apps.read_namespaced_stateful_set,
            apps.list_namespaced_stateful_set,
            apps.patch_namespaced_stateful_set,
        )
    if kind is Kind.DAEMONSET:
        return WorkloadApi(
            apps.read_namespaced_daemon_set,
            apps.list_namespaced_daemon_set,
            apps.patch_namespaced_daemon_set,
        )
    raise ValueError(f"{kind} is not a workload kind")
