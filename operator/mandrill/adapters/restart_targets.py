"""The cluster side of restarting: find targets, restart each once, wait for Ready.

Exactly-once comes from identities, not from luck: a pod is deleted or evicted
with its UID as a precondition (a replacement pod, even one with the same
StatefulSet name, can never be hit), and a rollout restart stamps the pod
template with the request's UID, so a resumed request sees its own mark and
does not roll the workload again. "Already gone" is an outcome, not an error.

Objects stay plain JSON (`kube.call_json`): the generated client's model objects
cost more CPU to build than the API call itself (a pod read took a quarter of
the operator's CPU under load), and this module reads a handful of fields.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import kube
from mandrill.domain import timestamps
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.events import EventSink
from mandrill.domain.restart.models import (
    Candidate,
    Kind,
    LabelSelector,
    Outcome,
    RequestRef,
    Requirement,
    RestartSpec,
    StepResult,
    Strategy,
    TargetResult,
)

Obj = Mapping[str, Any]
"""A Kubernetes object as the API server sent it (JSON)."""


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _protected(obj: Obj) -> bool:
    return (_meta(obj).get("annotations") or {}).get(resources.PROTECTED_ANNOTATION) == "true"


def _selector_query(selector: Obj) -> str:
    """A workload's spec.selector (a LabelSelector) as a labelSelector query."""
    return LabelSelector(
        match_labels=dict(selector.get("matchLabels") or {}),
        match_expressions=tuple(
            Requirement(key=e["key"], operator=e["operator"], values=tuple(e.get("values") or ()))
            for e in selector.get("matchExpressions") or ()
        ),
    ).to_query()


def _live(pod: Obj) -> bool:
    return _meta(pod).get("deletionTimestamp") is None and _status(pod).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def _pod_ready(pod: Obj) -> bool:
    return (
        _live(pod)
        and _status(pod).get("phase") == "Running"
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in _status(pod).get("conditions") or ()
        )
    )


def _created(obj: Obj) -> datetime.datetime:
    created = timestamps.parse(_meta(obj).get("creationTimestamp"))
    return created or datetime.datetime.now(datetime.UTC)


def _ref(kind: str, api_version: str, namespace: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"namespace": namespace, "name": name, "uid": uid},
    }


@attrs.frozen
class _WorkloadApi:
    read: Callable[..., Awaitable[Any]]
    list: Callable[..., Awaitable[Any]]
    patch: Callable[..., Awaitable[Any]]


@attrs.define
class KubeTargets:
    """`Targets` over the Kubernetes API (kubernetes_asyncio)."""

    api: ApiClient
    events: EventSink
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)

    @property
    def _core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def _workloads(self, kind: Kind) -> _WorkloadApi:
        apps = client.AppsV1Api(self.api)
        if kind is Kind.DEPLOYMENT:
            return _WorkloadApi(
                apps.read_namespaced_deployment,
                apps.list_namespaced_deployment,
                apps.patch_namespaced_deployment,
            )
        if kind is Kind.STATEFULSET:
            return _WorkloadApi(
                apps.read_namespaced_stateful_set,
                apps.list_namespaced_stateful_set,
                apps.patch_namespaced_stateful_set,
            )
        if kind is Kind.DAEMONSET:
            return _WorkloadApi(
                apps.read_namespaced_daemon_set,
                apps.list_namespaced_daemon_set,
                apps.patch_namespaced_daemon_set,
            )
        raise ValueError(f"{kind} is not a workload kind")

    # -- finding ------------------------------------------------------------

    async def find(self, *, namespace: str, spec: RestartSpec) -> list[Candidate]:
        if spec.kind is Kind.POD:
            pods = await self._pods(namespace, name=spec.name, selector=spec.selector)
            return [self._pod_candidate(p, owner_protected=False) for p in pods if _live(p)]
        workloads = await self._find_workloads(namespace, spec)
        if spec.strategy is Strategy.ROLLOUT_RESTART:
            return [
                Candidate(
                    kind=spec.kind,
                    name=_meta(w)["name"],
                    uid=_meta(w)["uid"],
                    created=_created(w),
                    protected=_protected(w),
                    restarted_by=_template_annotations(w).get(resources.RESTARTED_BY_ANNOTATION),
                )
                for w in workloads
            ]
        candidates: list[Candidate] = []
        for w in workloads:
            listed = await self._list_pods(namespace, _selector_query(w["spec"]["selector"]))
            owner_protected = _protected(w)
            candidates += [self._pod_candidate(p, owner_protected) for p in listed if _live(p)]
        return candidates

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
            name=_meta(pod)["name"],
            uid=_meta(pod)["uid"],
            created=_created(pod),
            protected=owner_protected or _protected(pod),
        )

    async def _pods(self, namespace: str, *, name: str | None, selector: Any) -> list[Obj]:
        if name is not None:
            try:
                pod = await kube.call_json(
                    self._core.read_namespaced_pod, name, namespace, what=f"read pod {name}"
                )
            except ApiException as e:
                if e.status == 404:
                    raise PermanentError(
                        "TargetNotFound", f"pod {name} not found in {namespace}"
                    ) from e
                raise
            return [pod]
        return await self._list_pods(namespace, selector.to_query())

    async def _find_workloads(self, namespace: str, spec: RestartSpec) -> list[Obj]:
        api = self._workloads(spec.kind)
        if spec.name is not None:
            name = spec.name
            try:
                return [await kube.call_json(api.read, name, namespace, what=f"read {spec.kind}")]
            except ApiException as e:
                if e.status == 404:
                    raise PermanentError(
                        "TargetNotFound", f"{spec.kind} {name} not found in {namespace}"
                    ) from e
                raise
        assert spec.selector is not None
        query = spec.selector.to_query()
        listed = await kube.call_json(
            api.list, namespace, label_selector=query, what=f"list {spec.kind}"
        )
        return list(listed.get("items") or ())

    # -- restarting ---------------------------------------------------------

    async def restart(
        self, *, namespace: str, target: TargetResult, spec: RestartSpec, request: RequestRef
    ) -> TargetResult:
        started = self.clock()
        if spec.strategy is Strategy.DELETE:
            result = await self._delete(namespace, target, spec)
        elif spec.strategy is Strategy.EVICT:
            result = await self._evict(namespace, target, spec)
        else:
            result = await self._rollout(namespace, target, request)
        result = attrs.evolve(result, started=started, finished=self.clock())
        if result.outcome is Outcome.RESTARTED:
            api_version = "v1" if target.kind is Kind.POD else "apps/v1"
            self.events(
                _ref(str(target.kind), api_version, namespace, target.name, target.uid),
                "Normal",
                "Restarted",
                f"{result.message} by RestartRequest {request.namespace}/{request.name}",
            )
        return result

    def _options(self, target: TargetResult, spec: RestartSpec) -> client.V1DeleteOptions:
        return client.V1DeleteOptions(
            grace_period_seconds=spec.grace_period_seconds,
            preconditions=client.V1Preconditions(uid=target.uid),
        )

    async def _delete(
        self, namespace: str, target: TargetResult, spec: RestartSpec
    ) -> TargetResult:
        try:
            await kube.call_json(
                self._core.delete_namespaced_pod,
                target.name,
                namespace,
                body=self._options(target, spec),
                what=f"delete pod {target.name}",
            )
        except ApiException as e:
            if e.status in (404, 409):
                return _gone(target)
            raise
        return attrs.evolve(target, outcome=Outcome.RESTARTED, message="pod deleted")

    async def _evict(self, namespace: str, target: TargetResult, spec: RestartSpec) -> TargetResult:
        """Evict through the Eviction API; a PDB refusal (429) is retried until the deadline."""
        deadline = time.monotonic() + spec.eviction_timeout_seconds
        eviction = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=target.name, namespace=namespace),
            delete_options=self._options(target, spec),
        )
        delay = 0.5
        while True:
            try:
                await kube.call_json(
                    self._core.create_namespaced_pod_eviction,
                    target.name,
                    namespace,
                    eviction,
                    what=f"evict pod {target.name}",
                    passthrough=frozenset({404, 409, 429}),
                )
            except ApiException as e:
                if e.status in (404, 409):
                    return _gone(target)
                if e.status != 429:
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return attrs.evolve(
                        target,
                        outcome=Outcome.BLOCKED,
                        message=f"eviction blocked for {spec.eviction_timeout_seconds}s: "
                        f"{kube.api_message(e)}",
                    )
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 5.0)
                continue
            return attrs.evolve(target, outcome=Outcome.RESTARTED, message="pod evicted")

    async def _rollout(
        self, namespace: str, target: TargetResult, request: RequestRef
    ) -> TargetResult:
        """Stamp the pod template once. The patch carries the workload's uid and
        resourceVersion as preconditions: if another instance (a rolling update
        of the operator) stamped it meanwhile, ours gets 409, re-reads, and finds
        the stamp instead of rolling the workload a second time."""
        api = self._workloads(target.kind)
        for _ in range(5):
            try:
                workload = await kube.call_json(
                    api.read, target.name, namespace, what=f"read {target.kind}"
                )
            except ApiException as e:
                if e.status == 404:
                    return _gone(target)
                raise
            if _meta(workload).get("uid") != target.uid:
                return _gone(target)
            stamp = _template_annotations(workload).get(resources.RESTARTED_BY_ANNOTATION)
            if stamp == request.uid:
                return attrs.evolve(
                    target,
                    outcome=Outcome.RESTARTED,
                    message="rollout restart already applied by this request",
                )
            try:
                await self._stamp(api, namespace, target, workload, request)
            except ApiException as e:
                if e.status == 404:
                    return _gone(target)
                if e.status == 409:
                    continue  # changed since we read it: look again
                raise
            return attrs.evolve(target, outcome=Outcome.RESTARTED, message="rollout restarted")
        raise TransientError(f"{target.kind} {target.name} kept changing under the rollout patch")

    async def _stamp(
        self,
        api: _WorkloadApi,
        namespace: str,
        target: TargetResult,
        workload: Obj,
        request: RequestRef,
    ) -> None:
        patch = {
            "metadata": {"uid": target.uid, "resourceVersion": _meta(workload)["resourceVersion"]},
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {
                            resources.RESTARTED_AT_ANNOTATION: self.clock().isoformat(),
                            resources.RESTARTED_BY_ANNOTATION: request.uid,
                        }
                    }
                }
            },
        }
        await kube.call_json(api.patch, target.name, namespace, patch, what=f"patch {target.kind}")

    # -- waiting ------------------------------------------------------------

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
        for w in await self._find_workloads(namespace, spec):
            desired = (
                w["spec"].get("replicas", 1)
                if spec.kind is not Kind.DAEMONSET
                else _status(w).get("desiredNumberScheduled", 0)
            )
            query = {"label_selector": _selector_query(w["spec"]["selector"])}
            await self._wait_pod_set(namespace, query, gone, desired or 0)

    async def _wait_pod_set(
        self, namespace: str, query: Mapping[str, Any], gone: set[str], wanted: int
    ) -> None:
        def done(pods: Mapping[str, Obj]) -> bool:
            if any(uid in gone for uid in pods):
                return False
            return sum(1 for p in pods.values() if _pod_ready(p)) >= wanted

        await self._watch_until(self._core.list_namespaced_pod, namespace, done=done, **query)

    async def _wait_workload(self, namespace: str, kind: Kind, name: str) -> None:
        api = self._workloads(kind)

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
            objects = {_meta(o)["uid"]: o for o in listed.get("items") or ()}
            if done(objects):
                return
            w = watch.Watch(return_type="object")
            try:
                async for event in w.stream(
                    list_method,
                    namespace,
                    resource_version=_meta(listed)["resourceVersion"],
                    timeout_seconds=60,
                    **query,
                ):
                    obj = event["raw_object"]
                    if event["type"] == "DELETED":
                        objects.pop(_meta(obj)["uid"], None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        objects[_meta(obj)["uid"]] = obj
                    if done(objects):
                        return
            except ApiException as e:
                if e.status != 410:  # resourceVersion too old: list again
                    raise
            finally:
                w.stop()
                await w.close()


def _gone(target: TargetResult) -> TargetResult:
    return attrs.evolve(
        target,
        outcome=Outcome.RESTARTED,
        message="already gone (replaced since the plan was made, or by an earlier attempt)",
    )


def _template_annotations(workload: Obj) -> Mapping[str, str]:
    template = (workload.get("spec") or {}).get("template") or {}
    return (template.get("metadata") or {}).get("annotations") or {}


def _rolled_out(kind: Kind, w: Obj) -> bool:
    status = w.get("status")
    desired = w["spec"].get("replicas", 1) if kind is not Kind.DAEMONSET else None
    if not status or status.get("observedGeneration", 0) < _meta(w).get("generation", 0):
        return False
    if kind is Kind.DEPLOYMENT:
        return bool(
            status.get("updatedReplicas", 0) == desired
            and status.get("readyReplicas", 0) == desired
            and status.get("replicas", 0) == desired
        )
    if kind is Kind.STATEFULSET:
        return bool(
            status.get("updatedReplicas", 0) == desired
            and status.get("readyReplicas", 0) == desired
            and status.get("currentRevision") == status.get("updateRevision")
        )
    scheduled = status.get("desiredNumberScheduled", 0)
    return bool(
        status.get("updatedNumberScheduled", 0) == scheduled
        and status.get("numberReady", 0) == scheduled
    )
