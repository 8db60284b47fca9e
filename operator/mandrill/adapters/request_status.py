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
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import kube
from mandrill.adapters.restart_targets import EventSink
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.restart import process
from mandrill.domain.restart.models import (
    Outcome,
    Phase,
    Plan,
    RequestRef,
    StepResult,
    TargetResult,
    timestamp,
)
from mandrill.domain.restart.process import FinalOutcome

PROGRESS_INTERVAL = 1.0


class _Conflict(Exception):
    """A conditional status patch lost the race: someone wrote in between."""


def condition(
    kind: str, step: StepResult | bool, *, generation: int, now: datetime.datetime
) -> dict[str, Any]:
    """A standard metav1.Condition."""
    if isinstance(step, bool):
        step = StepResult(ok=step, reason=kind, message="")
    return {
        "type": kind,
        "status": "True" if step.ok else "False",
        "reason": step.reason,
        "message": step.message,
        "observedGeneration": generation,
        "lastTransitionTime": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def counts(targets: tuple[TargetResult, ...] | list[TargetResult]) -> dict[str, int]:
    return {
        "restarted": sum(1 for t in targets if t.outcome is Outcome.RESTARTED),
        "skipped": sum(1 for t in targets if t.outcome is Outcome.SKIPPED),
        "failed": sum(1 for t in targets if t.outcome in (Outcome.FAILED, Outcome.BLOCKED)),
    }


def final_status(
    outcome: FinalOutcome, *, generation: int, now: datetime.datetime
) -> dict[str, Any]:
    """The acknowledging patch: phase, conditions, every target's result, counters."""
    conditions = [
        condition("Saved", outcome.saved, generation=generation, now=now),
        condition("Restarted", outcome.restarted, generation=generation, now=now),
    ]
    if outcome.ready is not None:
        conditions.append(condition("Ready", outcome.ready, generation=generation, now=now))
    conditions.append(
        condition(
            "Acknowledged",
            StepResult(ok=True, reason="Acknowledged", message=f"phase {outcome.phase}"),
            generation=generation,
            now=now,
        )
    )
    return {
        "phase": str(outcome.phase),
        "reason": outcome.reason,
        "message": outcome.message,
        "observedGeneration": generation,
        "conditions": conditions,
        "targets": [t.to_status() for t in outcome.targets],
        **counts(outcome.targets),
        "finishedAt": timestamp(outcome.finished),
        "acknowledgedAt": timestamp(now),
    }


async def read_request(api: ApiClient, request: RequestRef) -> dict[str, Any]:
    """The request as the API server has it now; PermanentError("Gone") if deleted."""
    custom = client.CustomObjectsApi(api)
    try:
        body: dict[str, Any] = await kube.call(
            lambda: custom.get_namespaced_custom_object(
                resources.GROUP,
                resources.VERSION,
                request.namespace,
                resources.RESTART_REQUESTS,
                request.name,
            ),
            what="read RestartRequest",
        )
    except ApiException as e:
        raise PermanentError("Gone", "the RestartRequest was deleted meanwhile") from e
    if body["metadata"]["uid"] != request.uid:
        raise PermanentError("Gone", "the RestartRequest was deleted and created anew")
    return body


@attrs.define
class RequestStatus:
    """`Reporter` for one request."""

    api: ApiClient
    request: RequestRef
    body: Mapping[str, Any]
    """The request as kopf saw it: the object Events are attached to."""
    events: EventSink
    attempts: int
    _targets: dict[str, TargetResult] = attrs.Factory(dict)
    _dirty: bool = False
    _flusher: asyncio.Task[None] | None = None

    async def _patch(
        self, status: Mapping[str, Any], *, resource_version: str | None = None
    ) -> None:
        """Merge-patch the status; with `resource_version`, only if nobody wrote since."""
        custom = client.CustomObjectsApi(self.api)
        body: dict[str, Any] = {"status": status}
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

    async def _read(self) -> dict[str, Any]:
        return await read_request(self.api, self.request)

    def _event(self, kind: str, reason: str, message: str) -> None:
        self.events(self.body, kind, reason, message)

    async def planned(self, plan: Plan, *, started: datetime.datetime) -> Plan:
        """Record the plan unless another operator instance recorded one first.

        The patch is conditional on the resourceVersion just read: two
        instances (a rolling update) may plan the same request at once, but
        only one plan is ever written, and the other instance adopts it, so
        they restart the same targets (which UID preconditions then make
        happen once) instead of two different random subsets."""
        # First try against the version kopf handed us (it writes nothing before
        # the handler runs, so it is usually current); read only after a conflict.
        current: Mapping[str, Any] = self.body
        for _ in range(5):
            theirs = process.prior_plan(current.get("status") or {}, description=plan.description)
            if theirs is not None:
                self._targets = {t.key: t for t in theirs.targets}
                return theirs
            try:
                await self._record_plan(
                    plan, started=started, resource_version=current["metadata"]["resourceVersion"]
                )
            except _Conflict:
                current = await self._read()
                continue
            return plan
        raise TransientError("the request kept changing while its plan was being recorded")

    async def _record_plan(
        self, plan: Plan, *, started: datetime.datetime, resource_version: str
    ) -> None:
        self._targets = {t.key: t for t in plan.targets}
        now = datetime.datetime.now(datetime.UTC)
        await self._patch(
            {
                "phase": str(Phase.RUNNING),
                "target": plan.description,
                "matched": plan.matched,
                "targets": [t.to_status() for t in plan.targets],
                **counts(plan.targets),
                "startedAt": timestamp(started),
                "attempts": self.attempts,
                "observedGeneration": self.request.generation,
                "conditions": [
                    condition(
                        "Acknowledged",
                        StepResult(False, "InProgress", "planned, restarting"),
                        generation=self.request.generation,
                        now=now,
                    )
                ],
            },
            resource_version=resource_version,
        )

    async def resumed(self, plan: Plan) -> None:
        self._targets = {t.key: t for t in plan.targets}
        await self._patch({"attempts": self.attempts})
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
                await self._patch({"targets": [t.to_status() for t in rows], **counts(rows)})

    async def handed_back(self, targets: Sequence[TargetResult], *, why: str) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        rows = list(targets)
        pending = sum(1 for t in rows if t.outcome is Outcome.PENDING)
        message = (
            f"{why}: {len(rows) - pending} of {len(rows)} targets done, "
            f"{pending} pending; the next attempt resumes them"
        )
        await self._patch(
            {
                "targets": [t.to_status() for t in rows],
                **counts(rows),
                "message": message,
                "conditions": [
                    condition(
                        "Acknowledged",
                        StepResult(False, "HandedBack", message),
                        generation=self.request.generation,
                        now=datetime.datetime.now(datetime.UTC),
                    )
                ],
            }
        )
        self._event("Normal", "HandedBack", message)

    async def acknowledge(self, outcome: FinalOutcome) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait([self._flusher])
        now = datetime.datetime.now(datetime.UTC)
        await self._patch(final_status(outcome, generation=self.request.generation, now=now))
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
