"""RestartSchedule as plain values: the parsed spec, its runs, and which schedule it is.

`ScheduleSpec.from_spec` is the second gate after the CRD schema: it parses
the cron expression and the zone (which a schema pattern can only roughly
check), the windows and exclusions, and the template with the very parser
RestartRequests go through (`RestartSpec.from_spec`), so a template that
would fail as a request fails here first, and the schedule runs nothing.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from typing import Any

import attrs

from mandrill.domain import timestamps
from mandrill.domain.restart.models import InvalidSpec, RestartSpec
from mandrill.domain.schedule.cron import Cron, InvalidCron
from mandrill.domain.schedule.windows import Exclusion, InvalidWindow, Window


class InvalidSchedule(ValueError):
    """The schedule cannot run as written; `reason` is CamelCase for conditions and Events."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConcurrencyPolicy(enum.StrEnum):
    FORBID = "Forbid"
    """No new run while an earlier one is unacknowledged: the new one is skipped."""
    ALLOW = "Allow"


@attrs.frozen
class ScheduleSpec:
    """What a RestartSchedule asks for, parsed from its `spec`."""

    cron: Cron
    template: Mapping[str, Any]
    """The RestartRequest spec each run is created with, as written (checked by RestartSpec)."""
    windows: tuple[Window, ...] = ()
    exclusions: tuple[Exclusion, ...] = ()
    concurrency: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    starting_deadline: datetime.timedelta | None = None
    """A run that cannot start within this of its time is missed; None: no deadline."""
    suspend: bool = False
    successful_history: int = 3
    failed_history: int = 1

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ScheduleSpec:
        """Parse a RestartSchedule spec; raises InvalidSchedule with a one-line reason."""
        try:
            cron = Cron.parse(str(spec.get("schedule", "")), str(spec.get("timeZone") or "UTC"))
        except InvalidCron as e:
            reason = "InvalidTimeZone" if "timeZone" in str(e) else "InvalidSchedule"
            raise InvalidSchedule(reason, str(e)) from None
        template = dict(spec.get("template") or {})
        try:
            RestartSpec.from_spec(template)
        except InvalidSpec as e:
            raise InvalidSchedule("InvalidTemplate", f"template: {e}") from None
        try:
            windows = tuple(Window.from_spec(w) for w in spec.get("windows") or ())
            exclusions = tuple(Exclusion.from_spec(x) for x in spec.get("exclusions") or ())
        except InvalidWindow as e:
            raise InvalidSchedule("InvalidWindow", str(e)) from None
        try:
            concurrency = ConcurrencyPolicy(spec.get("concurrencyPolicy", "Forbid"))
        except ValueError as e:
            raise InvalidSchedule("InvalidSchedule", str(e)) from None
        deadline = spec.get("startingDeadlineSeconds")
        return cls(
            cron=cron,
            template=template,
            windows=windows,
            exclusions=exclusions,
            concurrency=concurrency,
            starting_deadline=(
                datetime.timedelta(seconds=int(deadline)) if deadline is not None else None
            ),
            suspend=bool(spec.get("suspend", False)),
            successful_history=int(spec.get("successfulRunsHistoryLimit", 3)),
            failed_history=int(spec.get("failedRunsHistoryLimit", 1)),
        )


@attrs.frozen
class ScheduleRef:
    """Which RestartSchedule this is."""

    namespace: str
    name: str
    uid: str
    generation: int = 1
    created: datetime.datetime | None = None
    """Runs before the schedule existed are never due."""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ScheduleRef:
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
            created=timestamps.parse(meta.get("creationTimestamp")),
        )


class RunPhase(enum.StrEnum):
    ACTIVE = "Active"
    """Not acknowledged yet."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@attrs.frozen
class Run:
    """A RestartRequest that a schedule created, as the API server lists it."""

    name: str
    uid: str
    scheduled: datetime.datetime
    phase: RunPhase
