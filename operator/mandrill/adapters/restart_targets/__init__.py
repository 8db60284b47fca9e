"""The cluster side of restarting: find targets, restart each once, wait for Ready.

`KubeTargets` is the `Targets` port (domain/restart/process.py) over the
Kubernetes API, composed of three parts, one module each:

- `finders`: what a request's target matches (pods or workloads);
- `strategies`: restarting one target exactly once (delete, evict, rollout);
- `readiness`: watching until the replacements are Ready;

over `kube_objects`, the plain-JSON reads and the workload client calls they share.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

import attrs
from kubernetes_asyncio.client import ApiClient

from mandrill.adapters.restart_targets.finders import TargetFinder
from mandrill.adapters.restart_targets.readiness import Readiness
from mandrill.adapters.restart_targets.strategies import RestartStrategies
from mandrill.domain.events import EventSink
from mandrill.domain.restart.models import (
    Candidate,
    RequestRef,
    RestartSpec,
    StepResult,
    TargetResult,
)

__all__ = ["KubeTargets"]


@attrs.define
class KubeTargets:
    """`Targets` over the Kubernetes API (kubernetes_asyncio)."""

    api: ApiClient
    events: EventSink
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    _finder: TargetFinder = attrs.field(init=False)
    _strategies: RestartStrategies = attrs.field(init=False)
    _readiness: Readiness = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._finder = TargetFinder(self.api)
        self._strategies = RestartStrategies(self.api, self.events, self.clock)
        self._readiness = Readiness(self.api, self._finder)

    async def find(self, *, namespace: str, spec: RestartSpec) -> list[Candidate]:
        return await self._finder.find(namespace=namespace, spec=spec)

    async def restart(
        self, *, namespace: str, target: TargetResult, spec: RestartSpec, request: RequestRef
    ) -> TargetResult:
        return await self._strategies.restart(
            namespace=namespace, target=target, spec=spec, request=request
        )

    async def wait_ready(
        self,
        *,
        namespace: str,
        restarted: Sequence[TargetResult],
        spec: RestartSpec,
        expected: int,
        within: float,
    ) -> StepResult:
        return await self._readiness.wait_ready(
            namespace=namespace, restarted=restarted, spec=spec, expected=expected, within=within
        )
