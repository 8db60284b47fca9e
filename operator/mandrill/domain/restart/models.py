"""RestartRequest as plain values: the parsed spec, the targets and their outcomes.

The CRD schema is the first gate; `RestartSpec.from_spec` re-checks only what a
schema cannot (or what an older CRD might have let through) and raises
`InvalidSpec` with a one-line reason, which ends the request as Failed.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import attrs

from mandrill.domain import timestamps


class InvalidSpec(ValueError):
    """The request cannot be carried out as written; retrying will not help."""


class Kind(enum.StrEnum):
    POD = "Pod"
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    DAEMONSET = "DaemonSet"


WORKLOAD_KINDS = frozenset({Kind.DEPLOYMENT, Kind.STATEFULSET, Kind.DAEMONSET})


class Strategy(enum.StrEnum):
    DELETE = "Delete"
    EVICT = "Evict"
    ROLLOUT_RESTART = "RolloutRestart"


class Phase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Outcome(enum.StrEnum):
    """What happened to one target."""

    PENDING = "Pending"
    RESTARTED = "Restarted"
    SKIPPED = "Skipped"
    BLOCKED = "Blocked"
    FAILED = "Failed"
    DRY_RUN = "DryRun"


_DURATION = re.compile(r"(\d+)(d|h|m|s)")
_DURATION_WHOLE = re.compile(r"(?:\d+(?:d|h|m|s))+")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> datetime.timedelta:
    """Parse "3d", "12h30m", "90s" (the CRD's minAge format) into a timedelta."""
    if not _DURATION_WHOLE.fullmatch(text):
        raise InvalidSpec(f"minAge {text!r} is not a duration like 30m, 12h or 3d")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    return datetime.timedelta(seconds=seconds)


_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


@attrs.frozen
class Requirement:
    """One matchExpressions entry of a LabelSelector."""

    key: str
    operator: str
    """In, NotIn, Exists or DoesNotExist."""
    values: tuple[str, ...] = ()


@attrs.frozen
class LabelSelector:
    """A standard Kubernetes LabelSelector."""

    match_labels: Mapping[str, str] = attrs.field(factory=dict)
    match_expressions: tuple[Requirement, ...] = ()

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> LabelSelector:
        expressions = tuple(
            Requirement(key=e["key"], operator=e["operator"], values=tuple(e.get("values") or ()))
            for e in raw.get("matchExpressions") or ()
        )
        for e in expressions:
            if e.operator not in _OPERATORS:
                raise InvalidSpec(
                    f"selector operator {e.operator!r} is not In, NotIn, Exists or DoesNotExist"
                )
            if e.operator in ("In", "NotIn") and not e.values:
                raise InvalidSpec(f"selector expression on {e.key!r}: {e.operator} needs values")
        selector = cls(
            match_labels=dict(raw.get("matchLabels") or {}), match_expressions=expressions
        )
        if not selector.match_labels and not selector.match_expressions:
            raise InvalidSpec("target.selector is empty: it would match everything")
        return selector

    def to_query(self) -> str:
        """The selector in the API's `labelSelector` query syntax."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for e in self.match_expressions:
            if e.operator == "In":
                parts.append(f"{e.key} in ({','.join(e.values)})")
            elif e.operator == "NotIn":
                parts.append(f"{e.key} notin ({','.join(e.values)})")
            elif e.operator == "Exists":
                parts.append(e.key)
            else:
                parts.append(f"!{e.key}")
        return ",".join(parts)


@attrs.frozen
class RestartSpec:
    """What a RestartRequest asks for, parsed from its `spec`."""

    kind: Kind
    strategy: Strategy
    name: str | None = None
    """Exactly one of `name` and `selector` is set."""
    selector: LabelSelector | None = None
    count: int | None = None
    """Restart this many randomly chosen matches (at most)."""
    percent: int | None = None
    """Restart this share of the matches, rounded up."""
    max_concurrent: int = 5
    """Targets of this request restarted at once."""
    min_age: datetime.timedelta | None = None
    """Skip targets younger than this."""
    grace_period_seconds: int | None = None
    dry_run: bool = False
    wait_for_ready: bool = False
    ready_timeout_seconds: int = 300
    eviction_timeout_seconds: int = 60
    """How long a PDB-blocked eviction is retried before the target is reported Blocked."""
    ttl_seconds_after_finished: int | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RestartSpec:
        """Parse a RestartRequest spec; raises InvalidSpec with a one-line reason."""
        target = spec.get("target") or {}
        try:
            kind = Kind(target.get("kind", "Pod"))
            strategy = Strategy(spec.get("strategy", "Delete"))
        except ValueError as e:
            raise InvalidSpec(str(e)) from None
        name = target.get("name") or None
        selector = LabelSelector.from_spec(target["selector"]) if target.get("selector") else None
        if (name is None) == (selector is None):
            raise InvalidSpec("target needs exactly one of name or selector")
        if strategy is Strategy.ROLLOUT_RESTART and kind not in WORKLOAD_KINDS:
            raise InvalidSpec("RolloutRestart applies to Deployment, StatefulSet or DaemonSet")
        count, percent = spec.get("count"), spec.get("percent")
        if count is not None and percent is not None:
            raise InvalidSpec("count and percent are mutually exclusive")
        if count is not None and count < 1:
            raise InvalidSpec("count must be at least 1")
        if percent is not None and not 1 <= percent <= 100:
            raise InvalidSpec("percent must be between 1 and 100")
        wait = spec.get("waitForReady") or {}
        min_age = spec.get("minAge")
        return cls(
            kind=kind,
            strategy=strategy,
            name=name,
            selector=selector,
            count=count,
            percent=percent,
            max_concurrent=int(spec.get("maxConcurrent", 5)),
            min_age=parse_duration(min_age) if min_age else None,
            grace_period_seconds=spec.get("gracePeriodSeconds"),
            dry_run=bool(spec.get("dryRun", False)),
            wait_for_ready=bool(wait.get("enabled", False)),
            ready_timeout_seconds=int(wait.get("timeoutSeconds", 300)),
            eviction_timeout_seconds=int(spec.get("evictionTimeoutSeconds", 60)),
            ttl_seconds_after_finished=spec.get("ttlSecondsAfterFinished"),
        )

    def describe_target(self) -> str:
        """A short human label for printer columns and Events: "Deployment/web", "Pod app=web"."""
        if self.name is not None:
            return f"{self.kind}/{self.name}"
        assert self.selector is not None
        return f"{self.kind} {self.selector.to_query()}"


@attrs.frozen
class Candidate:
    """A pod or workload that the request's target matched, as the cluster showed it."""

    kind: Kind
    name: str
    uid: str
    created: datetime.datetime
    protected: bool = False
    """Annotated mandrill.dev/protected: "true"."""


class TargetRow(TypedDict, total=False):
    """One row of status.targets (and of the journal's copy of them)."""

    kind: str
    name: str
    uid: str
    action: str
    outcome: str
    message: str
    started: str
    finished: str


@attrs.frozen
class TargetResult:
    """One target of a request and what happened to it; one row of status.targets."""

    kind: Kind
    name: str
    uid: str
    action: str
    """Delete, Evict, RolloutRestart, or None for skipped targets."""
    outcome: Outcome
    message: str = ""
    started: datetime.datetime | None = None
    finished: datetime.datetime | None = None

    @property
    def key(self) -> str:
        """The idempotency key: a restart is done at most once per key."""
        return target_key(self.kind, self.uid)

    def to_status(self) -> TargetRow:
        row = TargetRow(
            kind=str(self.kind),
            name=self.name,
            uid=self.uid,
            action=self.action,
            outcome=str(self.outcome),
            message=self.message,
        )
        if self.started is not None:
            row["started"] = timestamps.format(self.started)
        if self.finished is not None:
            row["finished"] = timestamps.format(self.finished)
        return row

    @classmethod
    def from_status(cls, row: Mapping[str, Any]) -> TargetResult:
        return cls(
            kind=Kind(row["kind"]),
            name=row["name"],
            uid=row["uid"],
            action=row.get("action", ""),
            outcome=Outcome(row["outcome"]),
            message=row.get("message", ""),
            started=timestamps.parse(row.get("started")),
            finished=timestamps.parse(row.get("finished")),
        )


def target_key(kind: Kind, uid: str) -> str:
    """Pods and workloads are keyed by UID: a replacement pod has a new one, so it
    is never mistaken for the target it replaced."""
    return f"{kind}/{uid}"


@attrs.frozen
class RequestRef:
    """Which RestartRequest this is."""

    namespace: str
    name: str
    uid: str
    generation: int = 1

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RequestRef:
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
        )


@attrs.frozen
class Plan:
    """The targets chosen for a request, recorded before anything is restarted.

    Persisting the plan first is what makes a resumed request act on the same
    targets: a random choice is made once, never again after a crash."""

    targets: tuple[TargetResult, ...]
    description: str
    matched: int
    """Live matches when the plan was made, chosen or not: what waitForReady waits to see again."""

    @property
    def pending(self) -> tuple[TargetResult, ...]:
        return tuple(t for t in self.targets if t.outcome is Outcome.PENDING)


@attrs.frozen
class StepResult:
    """The outcome of the save step or the restart step, for its condition."""

    ok: bool
    reason: str
    message: str


def unique_by_key(targets: Sequence[TargetResult]) -> tuple[TargetResult, ...]:
    """Drop repeated targets (same kind and UID), keeping the first."""
    seen: set[str] = set()
    kept = []
    for t in targets:
        if t.key not in seen:
            seen.add(t.key)
            kept.append(t)
    return tuple(kept)
