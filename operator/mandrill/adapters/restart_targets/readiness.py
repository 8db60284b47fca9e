"""Waiting until a request's replacements are Ready (waitForReady).

Readiness is watched, not polled: each wait lists once and then follows a
watch from that resourceVersion (listing again when the watch expires or the
version is too old). The whole wait is bounded by `within`; running out of
time is a NotReady result, not an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import attrs
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill.adapters import kube
from mandrill.adapters.restart_targets.finders import TargetFinder
from mandrill.adapters.restart_targets.kube_objects import (
    Obj,
    meta,
    pod_ready,
    selector_query,
    status,
    workload_api,
)
from mandrill.domain.restart.models import Kind, RestartSpec, StepResult, Strategy, TargetResult


@attrs.define
class Readiness:
    """The `wait_ready` part of `Targets`."""

    api: ApiClient
    finder: TargetFinder
    """Looks up the target's workloads again, for their current desired replicas."""

    @property
    def _core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    async def wait_ready(
        self,
        *,
        namespace: str,
        restarted: Sequence[TargetResult],
        spec: RestartSpec,
        expected: int,
        within: float,
    ) -> StepResult:
        """Watch until replacements are Ready: workloads fully rolled and ready, or
        (for pods) none of the restarted pods left and as many Ready pods as before."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(within):
                if spec.strategy is Strategy.ROLLOUT_RESTART:
                    for target in restarted:
                        await self._wait_workload(namespace, spec.kind, target.name)
                else:
                    await self._wait_pods(namespace, spec, restarted, expected)
        except TimeoutError:
            return StepResult(
                ok=False,
                reason="NotReady",
                message=f"replacements not Ready within {within:.0f}s",
            )
        return StepResult(
            ok=True,
            reason="Ready",
            message=f"replacements Ready after {time.monotonic() - started:.1f}s",
        )

    async def _wait_pods(
        self, namespace: str, spec: RestartSpec, restarted: Sequence[TargetResult], expected: int
    ) -> None:
        """Wait until no restarted pod is left and enough matching pods are Ready again.

        "Enough" is the number matched when the plan was made, or for a
        workload its desired replicas. The workload's status alone would not
        do: right after an eviction it still counts the old pods as ready."""
        gone = {t.uid for t in restarted}
        if spec.kind is Kind.POD:
            query = (
                {"field_selector": f"metadata.name={spec.name}"}
                if spec.name is not None
                else {"label_selector": spec.selector.to_query() if spec.selector else ""}
            )
            await self._wait_pod_set(namespace, query, gone, expected)
            return
        for w in await self.finder.find_workloads(namespace, spec):
            desired = (
                w["spec"].get("replicas", 1)
                if spec.kind is not Kind.DAEMONSET
                else status(w).get("desiredNumberScheduled", 0)
            )
            query = {"label_selector": selector_query(w["spec"]["selector"])}
            await self._wait_pod_set(namespace, query, gone, desired or 0)

    async def _wait_pod_set(
        self, namespace: str, query: Mapping[str, Any], gone: set[str], wanted: int
    ) -> None:
        def done(pods: Mapping[str, Obj]) -> bool:
            if any(uid in gone for uid in pods):
                return False
            return sum(1 for p in pods.values() if pod_ready(p)) >= wanted

        await self._watch_until(self._core.list_namespaced_pod, namespace, done=done, **query)

    async def _wait_workload(self, namespace: str, kind: Kind, name: str) -> None:
        api = workload_api(self.api, kind)

        def done(objects: Mapping[str, Obj]) -> bool:
            return any(_rolled_out(kind, w) for w in objects.values())

        await self._watch_until(
            api.list, namespace, done=done, field_selector=f"metadata.name={name}"
        )

    async def _watch_until(
        self,
        list_method: Callable[..., Awaitable[Any]],
        namespace: str,
        *,
        done: Callable[[Mapping[str, Obj]], bool],
        **query: Any,
    ) -> None:
        """List, then watch from that resourceVersion until `done` holds for the objects.

        `list_method` is one of the client's list methods; objects stay JSON."""
        while True:
            listed = await kube.call_json(
                list_method, namespace, what="list for readiness", **query
            )
            objects = {meta(o)["uid"]: o for o in listed.get("items") or ()}
            if done(objects):
                return
            w = watch.Watch(return_type="object")
            try:
                async for event in w.stream(
                    list_method,
                    namespace,
                    resource_version=meta(listed)["resourceVersion"],
                    timeout_seconds=60,
                    **query,
                ):
                    obj = event["raw_object"]
                    if event["type"] == "DELETED":
                        objects.pop(meta(obj)["uid"], None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        objects[meta(obj)["uid"]] = obj
                    if done(objects):
                        return
            except ApiException as e:
                if e.status != 410:  # resourceVersion too old: list again
                    raise
            except aiohttp.ClientError:
                pass  # the connection dropped (an API server restart, say): list again
            finally:
                w.stop()
                await w.close()


def _rolled_out(kind: Kind, w: Obj) -> bool:
    """The controller has seen the latest spec, and every replica runs the new template
    and is Ready (for a Deployment, no old replica is left either)."""
    state = status(w)
    desired = w["spec"].get("replicas", 1) if kind is not Kind.DAEMONSET else None
    if not state or state.get("observedGeneration", 0) < meta(w).get("generation", 0):
        return False
    if kind is Kind.DEPLOYMENT:
        return bool(
            state.get("updatedReplicas", 0) == desired
            and state.get("readyReplicas", 0) == desired
            and state.get("replicas", 0) == desired
        )
    if kind is Kind.STATEFULSET:
        return bool(
            state.get("updatedReplicas", 0) == desired
            and state.get("readyReplicas", 0) == desired
            and state.get("currentRevision") == state.get("updateRevision")
        )
    scheduled = state.get("desiredNumberScheduled", 0)
    return bool(
        state.get("updatedNumberScheduled", 0) == scheduled
        and state.get("numberReady", 0) == scheduled
    )
