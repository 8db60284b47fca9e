"""What is due now, decided from (spec, status, runs, now) on a fake clock.

Covers: the first run and the ones after it; only the latest of many missed
runs starts, the rest are counted (never a burst, never a cliff); the
starting deadline; a run that exists is never made again; windows,
exclusions and concurrencyPolicy; suspend; the run's name; history pruning;
the spec checks (zone, expression, template via the RestartRequest parser);
and the status built from a decision (conditions keep their transition time).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from mandrill.domain import timestamps
from mandrill.domain.schedule import decide as d
from mandrill.domain.schedule import status
from mandrill.domain.schedule.models import (
    InvalidSchedule,
    Run,
    RunPhase,
    ScheduleRef,
    ScheduleSpec,
)

UTC = datetime.UTC
TEMPLATE = {"target": {"kind": "Deployment", "selector": {"matchLabels": {"tier": "web"}}},
            "strategy": "RolloutRestart", "maxConcurrent": 1}  # fmt: skip
CREATED = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # a Tuesday


def spec(**fields: Any) -> ScheduleSpec:
    return ScheduleSpec.from_spec({"schedule": "0 * * * *", "template": TEMPLATE, **fields})


def utc(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def run(hour: int, phase: RunPhase = RunPhase.ACTIVE, day: int = 1) -> Run:
    scheduled = utc(2026, 12, day, hour)
    return Run(name=d.run_name("hourly", scheduled), uid=f"uid-{day}-{hour}", scheduled=scheduled,
               phase=phase)  # fmt: skip


def decide(
    s: ScheduleSpec,
    now: datetime.datetime,
    last: datetime.datetime | None = None,
    runs: tuple[Run, ...] = (),
) -> d.Decision:
    return d.decide(s, now=now, created=CREATED, last_handled=last, runs=runs)


def test_nothing_is_due_before_the_first_run_and_the_next_one_is_named() -> None:
    got = decide(spec(), utc(2026, 12, 1, 12, 30))

    assert got.due is None
    assert got.next_run == utc(2026, 12, 1, 13)
    assert got.missed == 0


def test_the_run_at_its_time_is_created_then_never_again() -> None:
    s = spec()

    first = decide(s, utc(2026, 12, 1, 13, 0, 2))
    again = decide(s, utc(2026, 12, 1, 13, 30), last=first.handled_through)

    assert first.due == d.Due(utc(2026, 12, 1, 13), d.Action.CREATE)
    assert first.next_run == utc(2026, 12, 1, 14)
    assert again.due is None


def test_runs_before_the_schedule_existed_are_not_due() -> None:
    got = d.decide(spec(), now=utc(2026, 12, 1, 12, 10), created=utc(2026, 12, 1, 12, 5),
                   last_handled=None, runs=())  # fmt: skip

    assert got.due is None


def test_many_missed_runs_start_the_latest_once_and_count_the_rest() -> None:
    """Down from 13:00 to 17:10: runs 13..17 were due; only 17:00 starts."""
    got = decide(spec(startingDeadlineSeconds=900), utc(2026, 12, 1, 17, 10),
                 last=utc(2026, 12, 1, 12))  # fmt: skip

    assert got.due == d.Due(utc(2026, 12, 1, 17), d.Action.CREATE)
    assert got.missed_earlier == 4
    assert got.missed == 4


def test_a_run_past_its_starting_deadline_is_missed_not_started() -> None:
    got = decide(spec(startingDeadlineSeconds=300), utc(2026, 12, 1, 17, 10),
                 last=utc(2026, 12, 1, 12))  # fmt: skip

    assert got.due is not None
    assert got.due.action is d.Action.MISS
    assert got.due.reason == "Deadline"
    assert "600s late" in got.due.message
    assert got.missed == 5


def test_no_cliff_after_a_hundred_misses() -> None:
    """A Kubernetes CronJob gives up after 100 missed runs; this one counts and goes on."""
    got = decide(spec(schedule="* * * * *"), utc(2026, 12, 2, 12, 0), last=utc(2026, 12, 1, 12))

    assert got.due == d.Due(utc(2026, 12, 2, 12), d.Action.CREATE)
    assert got.missed_earlier == 24 * 60 - 1


def test_a_run_that_exists_is_done_whatever_else_holds() -> None:
    """Crashed after creating the run, before recording it; back after the deadline."""
    made = run(17)

    got = decide(spec(startingDeadlineSeconds=60), utc(2026, 12, 1, 17, 30),
                 last=utc(2026, 12, 1, 16), runs=(made,))  # fmt: skip

    assert got.due == d.Due(utc(2026, 12, 1, 17), d.Action.EXISTS)
    assert got.missed == 0


def test_window_and_exclusion_skip_a_run() -> None:
    night = spec(windows=[{"start": "22:00", "end": "04:00"}])
    frozen = spec(exclusions=[{"start": "2026-12-01", "end": "2026-12-02", "reason": "freeze"}])

    by_window = decide(night, utc(2026, 12, 1, 13, 0, 1))
    by_exclusion = decide(frozen, utc(2026, 12, 1, 13, 0, 1))
    in_window = decide(night, utc(2026, 12, 1, 23, 0, 1), last=utc(2026, 12, 1, 22))

    assert by_window.due is not None
    assert (by_window.due.action, by_window.due.reason) == (d.Action.SKIP, "Window")
    assert by_exclusion.due is not None
    assert (by_exclusion.due.action, by_exclusion.due.reason) == (d.Action.SKIP, "Exclusion")
    assert "freeze" in by_exclusion.due.message
    assert in_window.due == d.Due(utc(2026, 12, 1, 23), d.Action.CREATE)
    assert by_window.missed == 0  # a skip is not a miss


def test_a_late_start_must_still_be_inside_a_window() -> None:
    """The 03:00 run, found at 05:30 once the 02:00-05:00 window has closed: missed."""
    s = spec(schedule="0 3 * * *", windows=[{"start": "02:00", "end": "05:00"}])

    got = decide(s, utc(2026, 12, 2, 5, 30))

    assert got.due is not None
    assert (got.due.action, got.due.reason) == (d.Action.MISS, "Window")
    assert got.missed == 1


def test_forbid_skips_while_a_run_is_active_and_allow_does_not() -> None:
    active = (run(13), run(12, RunPhase.SUCCEEDED))
    now = utc(2026, 12, 1, 14, 0, 1)

    forbid = decide(spec(), now, last=utc(2026, 12, 1, 13), runs=active)
    allow = decide(spec(concurrencyPolicy="Allow"), now, last=utc(2026, 12, 1, 13), runs=active)
    done = decide(spec(), now, last=utc(2026, 12, 1, 13), runs=(run(13, RunPhase.FAILED),))

    assert forbid.due is not None
    assert (forbid.due.action, forbid.due.reason) == (d.Action.SKIP, "Forbid")
    assert active[0].name in forbid.due.message
    assert allow.due == d.Due(utc(2026, 12, 1, 14), d.Action.CREATE)
    assert done.due == d.Due(utc(2026, 12, 1, 14), d.Action.CREATE)


def test_suspended_creates_nothing_and_counts_nothing_missed() -> None:
    got = decide(spec(suspend=True), utc(2026, 12, 1, 17, 10), last=utc(2026, 12, 1, 12))

    assert got.due is not None
    assert got.due.action is d.Action.SUSPENDED
    assert got.missed == 0
    assert got.next_run == utc(2026, 12, 1, 18)


def test_run_names_are_deterministic_utc_and_fit() -> None:
    berlin_first = datetime.datetime(2026, 10, 25, 2, 30, tzinfo=UTC).replace(hour=0)
    berlin_second = berlin_first + datetime.timedelta(hours=1)

    assert d.run_name("web", utc(2026, 12, 6, 2)) == "web-202612060200"
    assert d.run_name("web", berlin_first) != d.run_name("web", berlin_second)
    long = d.run_name("x" * 253, utc(2026, 12, 6, 2))
    assert len(long) == 253
    assert long.endswith("-202612060200")


def test_history_limits_prune_the_oldest_finished_runs_only() -> None:
    runs = [run(h, RunPhase.SUCCEEDED) for h in (1, 2, 3, 4, 5)]
    runs += [run(h, RunPhase.FAILED) for h in (6, 7)] + [run(8)]

    doomed = d.to_prune(runs, successful=3, failed=1)

    assert [r.scheduled.hour for r in doomed] == [1, 2, 6]
    assert d.to_prune(runs, successful=0, failed=0) == runs[:7]


@pytest.mark.parametrize(
    ("fields", "reason", "words"),
    [
        ({"timeZone": "Mars/Olympus"}, "InvalidTimeZone", "not an IANA time zone"),
        ({"schedule": "every day"}, "InvalidSchedule", "five fields"),
        ({"schedule": "0 0 31 2 *"}, "InvalidSchedule", "Bad day-of-month"),
        ({"template": {"target": {"kind": "Pod"}}}, "InvalidTemplate", "exactly one of name"),
        ({"template": {**TEMPLATE, "count": 1, "percent": 5}}, "InvalidTemplate", "exclusive"),
        ({"windows": [{"start": "1:00", "end": "02:00"}]}, "InvalidWindow", "not a time"),
    ],
)
def test_invalid_spec_has_a_reason(fields: dict[str, Any], reason: str, words: str) -> None:
    with pytest.raises(InvalidSchedule, match=words) as caught:
        spec(**fields)
    assert caught.value.reason == reason


def test_upcoming_marks_the_runs_that_will_be_skipped() -> None:
    """The README's schedule: Sundays 03:00 Berlin, never in December's last two weeks."""
    s = spec(schedule="0 3 * * SUN", timeZone="Europe/Berlin",
             exclusions=[{"start": "12-18", "end": "12-31"}])  # fmt: skip

    got = d.upcoming(s, after=utc(2026, 12, 1), count=5)

    assert [(t.date().isoformat(), v.allowed) for t, v in got] == [
        ("2026-12-06", True),
        ("2026-12-13", True),
        ("2026-12-20", False),
        ("2026-12-27", False),
        ("2027-01-03", True),
    ]
    assert got[0][0].isoformat() == "2026-12-06T03:00:00+01:00"


REF = ScheduleRef(namespace="ns", name="hourly", uid="u", generation=2)


def test_status_records_the_run_and_keeps_the_transition_time() -> None:
    s = spec()
    first = decide(s, utc(2026, 12, 1, 13, 0, 2))
    made = run(13)
    one = status.scheduled_patch(ref=REF, previous={}, decision=first, runs=(made,), tz=UTC,
                                 suspended=False, now=utc(2026, 12, 1, 13, 0, 2))  # fmt: skip
    finished = (run(13, RunPhase.SUCCEEDED),)
    later = decide(s, utc(2026, 12, 1, 17, 10), last=first.handled_through, runs=finished)
    two = status.scheduled_patch(ref=REF, previous=one, decision=later, runs=finished, tz=UTC,
                                 suspended=False, now=utc(2026, 12, 1, 17, 10))  # fmt: skip

    assert one["lastScheduleTime"] == timestamps.format(utc(2026, 12, 1, 13))
    assert one["lastHandledScheduleTime"] == one["lastScheduleTime"]
    assert one["active"] == [{"name": made.name, "uid": made.uid,
                              "scheduledTime": one["lastScheduleTime"]}]  # fmt: skip
    assert one["activeRuns"] == 1
    assert one["nextScheduleTime"] == timestamps.format(utc(2026, 12, 1, 14))
    assert one["missedRuns"] == 0
    [ready] = one["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Scheduled")
    assert ready["observedGeneration"] == 2
    # Down from 13:00 to 17:10: 14..16 missed (counted), 17 created
    assert two["missedRuns"] == 3
    assert two["lastScheduleTime"] == timestamps.format(utc(2026, 12, 1, 17))
    assert two["lastSuccessfulRun"] == made.name
    assert two["activeRuns"] == 0
    assert two["conditions"][0]["lastTransitionTime"] == ready["lastTransitionTime"]


def test_invalid_status_flips_ready_and_clears_the_next_run() -> None:
    ok = status.scheduled_patch(ref=REF, previous={}, decision=decide(spec(), CREATED), runs=(),
                                tz=UTC, suspended=False, now=CREATED)  # fmt: skip
    later = CREATED + datetime.timedelta(minutes=5)

    bad = status.invalid_patch(ref=REF, previous=ok, reason="InvalidTimeZone",
                               message="no such zone", now=later)  # fmt: skip

    assert bad["nextScheduleTime"] is None
    [ready] = bad["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidTimeZone")
    assert ready["lastTransitionTime"] == timestamps.format(later)


NEW_YORK = "America/New_York"


def test_fall_back_night_runs_once_when_the_clock_repeats_the_hour() -> None:
    """01:30 happens twice in New York on 2026-11-01 (EDT, then EST): one run."""
    s = spec(schedule="30 1 * * *", timeZone=NEW_YORK)
    first_0130 = utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    second_0130 = utc(2026, 11, 1, 6, 30)  # 01:30 EST
    made = datetime.datetime(2026, 10, 31, tzinfo=UTC)

    at_first = d.decide(s, now=first_0130 + datetime.timedelta(seconds=1), created=made,
                        last_handled=None, runs=())  # fmt: skip
    at_second = d.decide(s, now=second_0130 + datetime.timedelta(seconds=1), created=made,
                         last_handled=at_first.handled_through, runs=())  # fmt: skip

    # Python never finds a time in a repeated hour equal to one of another zone: compare in UTC.
    assert at_first.due is not None
    assert at_first.due.action is d.Action.CREATE
    assert at_first.due.scheduled.astimezone(UTC) == first_0130
    assert at_second.due is None
    assert at_second.next_run is not None
    assert at_second.next_run.astimezone(UTC) == utc(2026, 11, 2, 6, 30)


def test_spring_forward_night_runs_right_after_the_gap() -> None:
    """02:30 does not exist in New York on 2026-03-08: the run is at 03:00 EDT (07:00 UTC)."""
    s = spec(schedule="30 2 * * *", timeZone=NEW_YORK)
    made = datetime.datetime(2026, 3, 7, 12, tzinfo=UTC)

    got = d.decide(s, now=utc(2026, 3, 8, 7, 0, 1), created=made, last_handled=None, runs=())

    assert got.due == d.Due(utc(2026, 3, 8, 7, 0), d.Action.CREATE)
    assert got.missed == 0
    assert d.run_name("nightly", got.due.scheduled) == "nightly-202603080700"
