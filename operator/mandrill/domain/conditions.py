"""Status conditions as Kubernetes means them, built in one place.

`set_condition` is our `meta.SetStatusCondition` (k8s.io/apimachinery): a
condition keeps its `lastTransitionTime` while its status stays the same, so
"Acknowledged has been False since 12:00" survives every progress patch, and
changes only when the status flips. Every condition carries the generation
it was computed for. Status is written with merge patches, which replace the
`conditions` list whole, so writers send the full list this returns.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

from mandrill.domain import timestamps

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """A metav1.Condition as it sits in status.conditions."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    *,
    type: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime.datetime,
) -> list[Condition]:
    """`conditions` with `type` set; the others are kept as they are, in order."""
    wanted: ConditionStatus = "True" if status else "False"
    made = Condition(
        type=type,
        status=wanted,
        reason=reason,
        message=message,
        observedGeneration=generation,
        lastTransitionTime=timestamps.format(now),
    )
    result: list[Condition] = []
    for c in conditions:
        if c.get("type") != type:
            result.append(typed(c))
        elif c.get("status") == wanted and c.get("lastTransitionTime"):
            result.append({**made, "lastTransitionTime": str(c["lastTransitionTime"])})
        else:
            result.append(made)
    if not any(c["type"] == type for c in result):
        result.append(made)
    return result


def find(conditions: Iterable[Mapping[str, Any]], type: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type), None)


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type: str) -> bool:
    c = find(conditions or (), type)
    return c is not None and c.get("status") == "True"


def typed(c: Mapping[str, Any]) -> Condition:
    """A condition read back from the API server (or written by someone else), as is."""
    return Condition(
        type=str(c.get("type", "")),
        status=c.get("status", "Unknown"),
        reason=str(c.get("reason", "")),
        message=str(c.get("message", "")),
        observedGeneration=int(c.get("observedGeneration") or 0),
        lastTransitionTime=str(c.get("lastTransitionTime", "")),
    )
