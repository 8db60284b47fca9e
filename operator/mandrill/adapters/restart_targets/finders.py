"""Finding what a RestartRequest's target matches: live pods, or workloads.

A named target that does not exist is a PermanentError (TargetNotFound): the
request cannot succeed by being retried. Pods on their way out (deleting,
Succeeded or Failed) are not matches. A pod of a protected workload is itself
protected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill.adapters import kube
from mandrill.adapters.restart_targets.kube_objects import (
    Obj,
    created,
    live,
    meta,
    protected,
    selector_query,
    workload_api,
)
from mandrill.domain.errors import PermanentError
from mandrill.domain.restart.models import Candidate, Kind, RestartSpec, Strategy


@attrs.define
class TargetFinder:
    """The `find` part of `Targets`, and the workload lookup readiness shares."""

    api: ApiClient

    @property
    def _core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    async def find(self, *, namespace: str, spec: RestartSpec) -> list[Candidate]:
        if spec.kind is Kind.POD:
            pods = await self._pods(namespace, name=spec.name, selector=spec.selector)
            return [self._pod_candidate(p, owner_protected=False) for p in pods if live(p)]
        workloads = await self.find_workloads(namespace, spec)
        if spec.strategy is Strategy.ROLLOUT_RESTART:
            return [
                Candidate(
                    kind=spec.kind,
                    name=meta(w)["name"],
                    uid=meta(w)["uid"],
                    created=created(w),
                    protected=protected(w),
                )
                for w in workloads
            ]
        candidates: list[Candidate] = []
        for w in workloads:
            listed = await self._list_pods(namespace, selector_query(w["spec"]["selector"]))
            owner_protected = protected(w)
            candidates += [self._pod_candidate(p, owner_protected) for p in listed if live(p)]
        return candidates

    async def find_workloads(self, namespace: str, spec: RestartSpec) -> list[Obj]:
        """The workloads `spec` names or selects (spec.kind is a workload kind)."""
        api = workload_api(self.api, spec.kind)
        if spec.name is not None:
            name = spec.name
            return [await _read_named(api.read, name, namespace, what=str(spec.kind))]
        assert spec.selector is not None
        query = spec.selector.to_query()
        listed = await kube.call_json(
            api.list, namespace, label_selector=query, what=f"list {spec.kind}"
        )
        return list(listed.get("items") or ())

    async def _list_pods(self, namespace: str, query: str) -> list[Obj]:
        listed = await kube.call_json(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=query,
            what=f"list pods matching {query}",
        )
        return list(listed.get("items") or ())

    def _pod_candidate(self, pod: Obj, owner_protected: bool) -> Candidate:
        return Candidate(
            kind=Kind.POD,
            name=meta(pod)["name"],
            uid=meta(pod)["uid"],
            created=created(pod),
            protected=owner_protected or protected(pod),
        )

    async def _pods(self, namespace: str, *, name: str | None, selector: Any) -> list[Obj]:
        if name is not None:
            return [await _read_named(self._core.read_namespaced_pod, name, namespace, what="pod")]
        return await self._list_pods(namespace, selector.to_query())


async def _read_named(method: Callable[..., Any], name: str, namespace: str, *, what: str) -> Obj:
    """One named object; a missing one is PermanentError("TargetNotFound")."""
    try:
        return await kube.call_json(method, name, namespace, what=f"read {what} {name}")
    except ApiException as e:
        if e.status == 404:
            raise PermanentError("TargetNotFound", f"{what} {name} not found in {namespace}") from e
        raise
