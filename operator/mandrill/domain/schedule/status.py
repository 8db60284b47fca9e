"""A RestartSchedule's status, built in one place from the decision and the runs.

Status is also the schedule's memory: `lastHandledScheduleTime` is the
latest run time decided on (created, skipped or missed), so no run is ever
looked at twice, and `missedRuns` only grows. Everything else (the active
runs, the last successful one) is read off the runs that exist, so a status
patch that was lost is simply made again on the next wake-up.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from mandrill.domain import conditions, timestamps
from mandrill.domain.schedule.cron import utc
from mandrill.domain.schedule.decide import Action, Decision
from mandrill.domain.schedule.models import Run, RunPhase, ScheduleRef

READY = "Ready"


def remembered(status: Mapping[str, Any]) -> tuple[datetime.datetime | None, int]:
    """(lastHandledScheduleTime, missedRuns) as a previous status left them."""
    return (
        timestamps.parse(status.get("lastHandledScheduleTime")),
        int(status.get("missedRuns") or 0),
    )


def local_time(moment: datetime.datetime, tz: datetime.tzinfo) -> str:
    """`2026-12-06T03:00:00+01:00`: the moment on the schedule's wall clock, with its offset."""
    return moment.astimezone(tz).isoformat(timespec="seconds")


def scheduled_patch(
    *,
    ref: ScheduleRef,
    previous: Mapping[str, Any],
    decision: Decision,
    runs: Sequence[Run],
    tz: datetime.tzinfo,
    suspended: bool,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The status of a valid schedule after `decision` was carried out (runs as they are now)."""
    _, missed = remembered(previous)
    patch: dict[str, Any] = {
        "observedGeneration": ref.generation,
        "missedRuns": missed + decision.missed,
        **_runs(previous, runs),
    }
    due = decision.due
    if due is not None:
        patch["lastHandledScheduleTime"] = timestamps.format(due.scheduled)
        if due.action in (Action.CREATE, Action.EXISTS):
            last = timestamps.parse(previous.get("lastScheduleTime"))
            if last is None or utc(due.scheduled) > utc(last):
                patch["lastScheduleTime"] = timestamps.format(due.scheduled)
    if decision.next_run is not None:
        patch["nextScheduleTime"] = timestamps.format(decision.next_run)
        patch["nextScheduleTimeLocal"] = local_time(decision.next_run, tz)
    else:
        patch["nextScheduleTime"] = patch["nextScheduleTimeLocal"] = None
    if suspended:
        reason, message = "Suspended", "suspended: no runs are created"
    elif decision.next_run is None:
        reason, message = "NoNextRun", "the expression matches no time in the next 50 years"
    else:
        reason = "Scheduled"
        message = f"next run at {local_time(decision.next_run, tz)}"
        if decision.next_verdict is not None and not decision.next_verdict.allowed:
            message += f" (it will be skipped: {decision.next_verdict.message})"
    patch["conditions"] = conditions.set_condition(
        previous.get("conditions") or (),
        type=READY,
        status=True,
        reason=reason,
        message=message,
        generation=ref.generation,
        now=now,
    )
    return patch


def invalid_patch(
    *,
    ref: ScheduleRef,
    previous: Mapping[str, Any],
    reason: str,
    message: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The status of a schedule that cannot run: Ready=False, and no next run."""
    return {
        "observedGeneration": ref.generation,
        "nextScheduleTime": None,
        "nextScheduleTimeLocal": None,
        "conditions": conditions.set_condition(
            previous.get("conditions") or (),
            type=READY,
            status=False,
            reason=reason,
            message=message,
            generation=ref.generation,
            now=now,
        ),
    }


def _runs(previous: Mapping[str, Any], runs: Sequence[Run]) -> dict[str, Any]:
    active = sorted((r for r in runs if r.phase is RunPhase.ACTIVE), key=lambda r: utc(r.scheduled))
    fields: dict[str, Any] = {
        "active": [
            {"name": r.name, "uid": r.uid, "scheduledTime": timestamps.format(r.scheduled)}
            for r in active
        ],
        "activeRuns": len(active),
    }
    succeeded = [r for r in runs if r.phase is RunPhase.SUCCEEDED]
    if succeeded:
        newest = max(succeeded, key=lambda r: utc(r.scheduled))
        before = timestamps.parse(previous.get("lastSuccessfulTime"))
        if before is None or utc(newest.scheduled) >= utc(before):
            fields["lastSuccessfulTime"] = timestamps.format(newest.scheduled)
            fields["lastSuccessfulRun"] = newest.name
    return fields
