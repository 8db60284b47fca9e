"""A RestartRequest's status and Events: the plan, progress, and the acknowledgement.

Status is written with JSON merge patches to the status subresource (no
resourceVersion, so no 409s; lists are replaced whole, which is what we want
for `targets`). Per-target progress is coalesced and written at most once a
second, never once per pod: a 500-pod request costs a handful of patches.

Events are few for the same reason (each is an API write, and kopf posts
them one at a time): a request gets one when it ends (Acknowledged or
Failed, with the counts and whether it was saved), plus a Warning for each
target that failed or was blocked and for a journal that was down. A
restarted pod or workload gets its own Restarted Event (restart_targets).
Status holds everything else, target by target.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import kube
from mandrill.adapters.restart_requests import read_request
from mandrill.domain import timestamps
from mandrill.domain.conditions import Condition
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.events import EventSink, EventType
from mandrill.domain.restart import process, status
from mandrill.domain.restart.models import Outcome, Phase, Plan, RequestRef, TargetResult
from mandrill.domain.restart.process import FinalOutcome

PROGRESS_INTERVAL = 1.0


class _Conflict(Exception):
    """A conditional status patch lost the race: someone wrote in between."""


@attrs.define
class RequestStatus:
    """`Reporter` for one request."""

    api: ApiClient
    request: RequestRef
    body: Mapping[str, Any]
    """The request as kopf saw it: the object Events are attached to."""
    events: EventSink
    attempts: int
    clock: Callable[[], datetime.datetime] = timestamps.now
    _targets: dict[str, TargetResult] = attrs.Factory(dict)
    _conditions: list[Condition] | None = None
    """The conditions as last written (or as kopf saw them): each write sends the full list."""
    _dirty: bool = False
    _flusher: asyncio.Task[None] | None = None

    @property
    def conditions(self) -> list[Condition]:
        if self._conditions is None:
            self._conditions = list((self.body.get("status") or {}).get("conditions") or ())
        return self._conditions

    async def _patch(
        self, patch: status.RestartStatus, *, resource_version: str | None = None
    ) -> None:
        """Merge-patch the status; with `resource_version`, only if nobody wrote since."""
        custom = client.CustomObjectsApi(self.api)
        body: dict[str, Any] = {"status": patch}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            await kube.call(
                lambda: custom.patch_namespaced_custom_object_status(
                    resources.GROUP,
                    resources.VERSION,
                    self.request.namespace,
                    resources.RESTART_REQUESTS,
                    self.request.name,
                    body,
                    _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                ),
                what="patch RestartRequest status",
            )
        except ApiException as e:
            if e.status == 409 and resource_version is not None:
                raise _Conflict from e
            raise PermanentError("Gone", "the RestartRequest was deleted meanwhile") from e
        if "conditions" in patch:
            self._conditions = list(patch["conditions"])

    async def _read(self) -> dict[str, Any]:
        return await read_request(self.api, self.request)

    def _event(self, kind: EventType, reason: str, message: str) -> None:
        self.events(self.body, kind, reason, message)

    async def planned(self, plan: Plan, *, started: datetime.datetime) -> Plan:
        """Record the plan unless another operator instance recorded one first.

        The patch is conditional on the resourceVersion just read: two
        instances (a rolling update) may plan the same request at once, but
        only one plan is ever written, and the other instance adopts it, so
        they restart the same targets (which UID preconditions then make
        happen once) instead of two different random subsets."""
        # First try against the version kopf handed us, whose status the caller
        # has already found without a plan (it is usually current); only after
        # a conflict is the request read again, and its plan, if any, adopted.
        current: Mapping[str, Any] = self.body
        for _ in range(5):
            self._conditions = list((current.get("status") or {}).get("conditions") or ())
            try:
                await self._record_plan(
                    plan, started=started, resource_version=current["metadata"]["resourceVersion"]
                )
            except _Conflict:
                current = await self._read()
            else:
                return plan
            if status.is_acknowledged(current.get("status") or {}):
                # Another instance saw it through meanwhile: planning again would
                # restart the replacements. The caller re-reads and stops.
                raise TransientError("the request was acknowledged by another instance")
            theirs = status.prior_plan(current.get("status") or {}, description=plan.description)
            if theirs is not None:
                self._targets = {t.key: t for t in theirs.targets}
                return theirs
        raise TransientError("the request kept changing while its plan was being recorded")

    async def _record_plan(
        self, plan: Plan, *, started: datetime.datetime, resource_version: str
    ) -> None:
        self._targets = {t.key: t for t in plan.targets}
        patch = status.planned(
            plan,
            started=started,
            attempt=self.attempts,
            request=self.request,
            current=self.conditions,
            now=self.clock(),
        )
        await self._patch(patch, resource_version=resource_version)

    async def resumed(self, plan: Plan) -> None:
        """Count the attempt, conditional on the version the plan was read from: if
        someone wrote since (another instance, going on), retry from the latest."""
        self._targets = {t.key: t for t in plan.targets}
        try:
            await self._patch(
                status.RestartStatus(attempts=self.attempts),
                resource_version=self.body["metadata"]["resourceVersion"],
            )
        except _Conflict:
            raise TransientError(
                "the request changed while resuming; retrying from its latest state"
            ) from None
        self._event(
            "Normal",
            "Resumed",
            f"resuming: {len(plan.pending)} of {len(plan.targets)} targets still pending",
        )

    def target_finished(self, result: TargetResult) -> None:
        self._targets[result.key] = result
        self._dirty = True
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())
        if result.outcome in (Outcome.FAILED, Outcome.BLOCKED):
            self._event(
                "Warning", str(result.outcome), f"{result.kind} {result.name}: {result.message}"
            )

    async def _flush_later(self) -> None:
        await asyncio.sleep(PROGRESS_INTERVAL)
        if self._dirty:
            self._dirty = False
            rows = list(self._targets.values())
            # Progress is best effort: the final patch carries everything.
            with contextlib.suppress(Exception):
                await self._patch(status.progress(rows))

    async def handed_back(self, targets: Sequence[TargetResult], *, why: str) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        patch, message = status.handed_back(
            list(targets), why=why, request=self.request, current=self.conditions, now=self.clock()
        )
        await self._patch(patch)
        self._event("Normal", "HandedBack", message)

    async def acknowledge(self, outcome: FinalOutcome) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait([self._flusher])
        patch = status.final(
            phase=outcome.phase,
            reason=outcome.reason,
            message=outcome.message,
            targets=outcome.targets,
            steps=outcome.steps,
            finished=outcome.finished,
            request=self.request,
            current=self.conditions,
            now=self.clock(),
        )
        await self._patch(patch)
        if not outcome.saved.ok and outcome.saved != process.NOT_ATTEMPTED:
            # A journal that was down; a rejected request's Failed Warning says it all.
            self._event("Warning", "NotSaved", f"{outcome.saved.reason}: {outcome.saved.message}")
        summary = f"{outcome.reason}: {outcome.message}"
        if outcome.saved.ok:
            summary += "; saved to the journal"
        if outcome.phase is Phase.SUCCEEDED:
            self._event("Normal", "Acknowledged", summary)
        else:
            self._event("Warning", "Failed", summary)
