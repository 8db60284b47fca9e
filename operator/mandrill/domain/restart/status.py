"""The RestartRequest status codec: the one place that reads and builds `status`.

Every status the operator writes is built here from domain values, and every
decision taken from a status (is it acknowledged, is there a plan to resume,
was its journal write lost) is read here, so the shape of `status` is defined
once, typed, and tested without a cluster. Writers (adapters.request_status,
adapters.journal_retry) only send what this returns.

Conditions go through `conditions.set_condition`: writers pass the conditions
they last saw and get the full list back, `lastTransitionTime` kept unless a
status flips.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

from mandrill.domain import conditions, timestamps
from mandrill.domain.conditions import Condition
from mandrill.domain.restart.models import (
    Outcome,
    Phase,
    Plan,
    RequestRef,
    StepResult,
    TargetResult,
    TargetRow,
)

INTERNAL_ERROR = "InternalError"


class RestartStatus(TypedDict, total=False):
    """`status` of a RestartRequest, as crds/restartrequest.yaml declares it."""

    phase: str
    reason: str
    message: str
    target: str
    matched: int
    restarted: int
    skipped: int
    failed: int
    attempts: int
    observedGeneration: int
    startedAt: str
    finishedAt: str
    acknowledgedAt: str
    conditions: list[Condition]
    targets: list[TargetRow]


class InvalidStatus(ValueError):
    """A status this codec cannot read back (written by hand, or by a buggy version)."""


def is_acknowledged(status: Mapping[str, Any]) -> bool:
    """True once the final status patch was accepted: nothing is left to do."""
    return conditions.is_true(status.get("conditions"), "Acknowledged")


def unsaved(status: Mapping[str, Any]) -> bool:
    """Acknowledged, but its journal write failed: the journal retrier's backlog."""
    found = conditions.find(status.get("conditions") or (), "Saved")
    return is_acknowledged(status) and found is not None and found.get("status") == "False"


def attempts(status: Mapping[str, Any]) -> int:
    return int(status.get("attempts") or 0)


def prior_plan(status: Mapping[str, Any], *, description: str) -> Plan | None:
    """The plan a previous attempt recorded, if any; InvalidStatus if it cannot be read."""
    rows = status.get("targets")
    if status.get("phase") not in (Phase.RUNNING, Phase.PENDING) or rows is None:
        return None
    try:
        return Plan(
            targets=tuple(TargetResult.from_status(r) for r in rows),
            description=status.get("target") or description,
            matched=int(status.get("matched", len(rows))),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidStatus(f"status.targets cannot be read: {type(e).__name__}: {e}") from e


def targets_of(status: Mapping[str, Any]) -> tuple[TargetResult, ...]:
    """The targets recorded in status, for the journal's retry; InvalidStatus if unreadable."""
    try:
        return tuple(TargetResult.from_status(t) for t in status.get("targets") or ())
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidStatus(f"status.targets cannot be read: {type(e).__name__}: {e}") from e


def _counted(status: RestartStatus, targets: Sequence[TargetResult]) -> RestartStatus:
    """`status` with the target rows and their counters (the printer columns)."""
    status["targets"] = rows(targets)
    status["restarted"] = sum(1 for t in targets if t.outcome is Outcome.RESTARTED)
    status["skipped"] = sum(1 for t in targets if t.outcome is Outcome.SKIPPED)
    status["failed"] = sum(1 for t in targets if t.outcome in (Outcome.FAILED, Outcome.BLOCKED))
    return status


def rows(targets: Iterable[TargetResult]) -> list[TargetRow]:
    return [t.to_status() for t in targets]


def _with(
    current: Iterable[Mapping[str, Any]],
    kind: str,
    step: StepResult,
    *,
    generation: int,
    now: datetime.datetime,
) -> list[Condition]:
    return conditions.set_condition(
        current,
        type=kind,
        status=step.ok,
        reason=step.reason,
        message=step.message,
        generation=generation,
        now=now,
    )


def planned(
    plan: Plan,
    *,
    started: datetime.datetime,
    attempt: int,
    request: RequestRef,
    current: Iterable[Mapping[str, Any]],
    now: datetime.datetime,
) -> RestartStatus:
    """The first write: the plan, before anything is restarted."""
    step = StepResult(ok=False, reason="InProgress", message="planned, restarting")
    status = RestartStatus(
        phase=str(Phase.RUNNING),
        target=plan.description,
        matched=plan.matched,
        startedAt=timestamps.format(started),
        attempts=attempt,
        observedGeneration=request.generation,
        conditions=_with(current, "Acknowledged", step, generation=request.generation, now=now),
    )
    return _counted(status, plan.targets)


def progress(targets: Sequence[TargetResult]) -> RestartStatus:
    """Per-target progress while restarting (best effort; the final write has it all)."""
    return _counted(RestartStatus(), targets)


def handed_back(
    targets: Sequence[TargetResult],
    *,
    why: str,
    request: RequestRef,
    current: Iterable[Mapping[str, Any]],
    now: datetime.datetime,
) -> tuple[RestartStatus, str]:
    """What was done so far, and the message saying the rest waits for the next attempt."""
    pending = sum(1 for t in targets if t.outcome is Outcome.PENDING)
    message = (
        f"{why}: {len(targets) - pending} of {len(targets)} targets done, "
        f"{pending} pending; the next attempt resumes them"
    )
    step = StepResult(ok=False, reason="HandedBack", message=message)
    status = RestartStatus(
        message=message,
        conditions=_with(current, "Acknowledged", step, generation=request.generation, now=now),
    )
    return _counted(status, targets), message


def final(
    *,
    phase: Phase,
    reason: str,
    message: str,
    targets: Sequence[TargetResult],
    steps: Sequence[tuple[str, StepResult]],
    finished: datetime.datetime,
    request: RequestRef,
    current: Iterable[Mapping[str, Any]],
    now: datetime.datetime,
) -> RestartStatus:
    """The acknowledging write: phase, conditions (each step, then Acknowledged), targets."""
    result = [conditions.typed(c) for c in current]
    for kind, step in steps:
        result = _with(result, kind, step, generation=request.generation, now=now)
    ack = StepResult(ok=True, reason="Acknowledged", message=f"phase {phase}")
    result = _with(result, "Acknowledged", ack, generation=request.generation, now=now)
    # Acknowledged last, as readers expect the list to end with it.
    result.sort(key=lambda c: c["type"] == "Acknowledged")
    status = RestartStatus(
        phase=str(phase),
        reason=reason,
        message=message,
        observedGeneration=request.generation,
        conditions=result,
        finishedAt=timestamps.format(finished),
        acknowledgedAt=timestamps.format(now),
    )
    return _counted(status, targets)


def saved_on_retry(
    current: Iterable[Mapping[str, Any]], *, request: RequestRef, now: datetime.datetime
) -> RestartStatus:
    """Saved flips to True once the journal retrier has written the request."""
    step = StepResult(
        ok=True, reason="SavedOnRetry", message="written to the journal after the store came back"
    )
    return RestartStatus(
        conditions=_with(current, "Saved", step, generation=request.generation, now=now)
    )
