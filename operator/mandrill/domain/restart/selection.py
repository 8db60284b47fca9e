"""Which matches of a request get restarted, and which are skipped and why.

Pure: the same candidates, settings, clock and seed give the same plan. The
seed is the request's UID, so even a plan computed twice (a crash before it was
recorded) picks the same random subset.
"""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Collection, Sequence

from mandrill.domain.restart.models import (
    Candidate,
    Outcome,
    Plan,
    RestartSpec,
    TargetResult,
    unique_by_key,
)


def action_for(spec: RestartSpec) -> str:
    return str(spec.strategy)


def plan(
    *,
    spec: RestartSpec,
    candidates: Sequence[Candidate],
    namespace: str,
    denied_namespaces: Collection[str],
    now: datetime.datetime,
    seed: str,
) -> Plan:
    """Choose the targets: skip protected, too young and deny-listed ones, then apply the mode."""
    action = action_for(spec)
    skipped: list[TargetResult] = []
    eligible: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: (c.name, c.uid)):
        reason = _skip_reason(c, spec=spec, namespace=namespace, denied=denied_namespaces, now=now)
        if reason:
            skipped.append(
                TargetResult(
                    kind=c.kind,
                    name=c.name,
                    uid=c.uid,
                    action=action,
                    outcome=Outcome.SKIPPED,
                    message=reason,
                )
            )
        else:
            eligible.append(c)
    chosen = choose(eligible, count=spec.count, percent=spec.percent, seed=seed)
    pending = [
        TargetResult(kind=c.kind, name=c.name, uid=c.uid, action=action, outcome=Outcome.PENDING)
        for c in chosen
    ]
    return Plan(
        targets=unique_by_key([*pending, *skipped]),
        description=spec.describe_target(),
        matched=len(candidates),
    )


def choose(
    eligible: Sequence[Candidate], *, count: int | None, percent: int | None, seed: str
) -> list[Candidate]:
    """All of them, a random `count`, or a random `percent` (rounded up), in name order."""
    if count is None and percent is None:
        return list(eligible)
    wanted = count if count is not None else math.ceil(len(eligible) * (percent or 0) / 100)
    wanted = min(wanted, len(eligible))
    picked = random.Random(seed).sample(range(len(eligible)), wanted)
    return [eligible[i] for i in sorted(picked)]


def _skip_reason(
    c: Candidate,
    *,
    spec: RestartSpec,
    namespace: str,
    denied: Collection[str],
    now: datetime.datetime,
) -> str | None:
    if namespace in denied:
        return f"namespace {namespace} is on the operator's deny list"
    if c.protected:
        return "annotated mandrill.dev/protected=true"
    if spec.min_age is not None and now - c.created < spec.min_age:
        age = now - c.created
        return f"younger than minAge ({_human(age)} < {_human(spec.min_age)})"
    return None


def _human(delta: datetime.timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
