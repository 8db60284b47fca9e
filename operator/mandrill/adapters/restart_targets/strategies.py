"""Restarting one target once: delete or evict a pod, or rollout-restart a workload.

Exactly-once comes from identities, not from luck: a pod is deleted or evicted
with its UID as a precondition (a replacement pod, even one with the same
StatefulSet name, can never be hit), and a rollout restart stamps the pod
template with the request's UID, so a resumed request sees its own mark and
does not roll the workload again. "Already gone" is an outcome, not an error.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import kube
from mandrill.adapters.restart_targets.kube_objects import (
    Obj,
    WorkloadApi,
    meta,
    ref,
    template_annotations,
    workload_api,
)
from mandrill.domain.errors import TransientError
from mandrill.domain.events import EventSink
from mandrill.domain.restart.models import (
    Kind,
    Outcome,
    RequestRef,
    RestartSpec,
    Strategy,
    TargetResult,
)


@attrs.define
class RestartStrategies:
    """The `restart` part of `Targets`: one target, by the request's strategy."""

    api: ApiClient
    events: EventSink
    clock: Callable[[], datetime.datetime]

    @property
    def _core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

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
                ref(str(target.kind), api_version, namespace, target.name, target.uid),
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
        api = workload_api(self.api, target.kind)
        for _ in range(5):
            try:
                workload = await kube.call_json(
                    api.read, target.name, namespace, what=f"read {target.kind}"
                )
            except ApiException as e:
                if e.status == 404:
                    return _gone(target)
                raise
            if meta(workload).get("uid") != target.uid:
                return _gone(target)
            stamp = template_annotations(workload).get(resources.RESTARTED_BY_ANNOTATION)
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
        api: WorkloadApi,
        namespace: str,
        target: TargetResult,
        workload: Obj,
        request: RequestRef,
    ) -> None:
        patch = {
            "metadata": {"uid": target.uid, "resourceVersion": meta(workload)["resourceVersion"]},
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


def _gone(target: TargetResult) -> TargetResult:
    return attrs.evolve(
        target,
        outcome=Outcome.RESTARTED,
        message="already gone (replaced since the plan was made, or by an earlier attempt)",
    )
