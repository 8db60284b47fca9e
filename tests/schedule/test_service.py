"""The schedule loop on a fake clock: created on time, skipped, missed, pruned, once.

Covers: the timer sleeps until the next run and the run is created when the
clock reaches it (with the template, named from its time, an Event); Forbid
skips while a run is active and the loop looks again soon; a service started
afresh (a restart, a second instance) over runs that exist creates none
twice; the latest of many missed runs starts and the rest are counted with
one Event; finished runs beyond the history limits are deleted; an invalid
spec runs nothing and says so once per generation, then a fixed one runs;
a stale watch event never makes a run be decided twice; an API hiccup is
retried after a backoff. No real time passes.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mandrill.domain import timestamps
from mandrill.domain.schedule.models import RunPhase
from tests.schedule.fakes import FakeClock, World

UTC = datetime.UTC
CREATED = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {"target": {"kind": "Deployment", "name": "web"}, "strategy": "RolloutRestart"}


def at(hour: int, minute: int = 0, second: int = 0, day: int = 1) -> datetime.datetime:
    return datetime.datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


def body(generation: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mandrill.dev/v1alpha1",
        "kind": "RestartSchedule",
        "metadata": {"namespace": "ns", "name": "hourly", "uid": "s-1",
                     "generation": generation,
                     "creationTimestamp": timestamps.format(CREATED)},
        "spec": {"schedule": "0 * * * *", "template": TEMPLATE, **spec},
        "status": status or {},
    }  # fmt: skip


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World(clock=FakeClock(current=at(12, 30)))
    yield w
    await w.tasks.close()


async def test_sleeps_until_the_next_run_then_creates_it(world: World) -> None:
    service = world.service()
    service.observe(body())
    await world.clock.settle()

    assert world.runs.created == []
    assert world.clock.wake_at == at(13)
    assert world.status.merged["nextScheduleTime"] == timestamps.format(at(13))
    assert world.status.merged["conditions"][0]["reason"] == "Scheduled"

    await world.clock.jump(at(13, 0, 1))

    assert world.runs.created == [("hourly-202612011300", TEMPLATE)]
    assert world.reasons() == ["RunCreated"]
    assert world.status.merged["lastScheduleTime"] == timestamps.format(at(13))
    assert world.status.merged["activeRuns"] == 1
    assert world.clock.wake_at == at(13, 0, 31)  # active: look again in `recheck`


async def test_forbid_skips_while_active_and_allow_runs(world: World) -> None:
    service = world.service(recheck=3600)
    service.observe(body())
    await world.clock.settle()
    await world.clock.jump(at(13, 0, 1))

    await world.clock.jump(at(14, 0, 1))  # the 13:00 run is still active

    assert [n for n, _ in world.runs.created] == ["hourly-202612011300"]
    assert world.reasons() == ["RunCreated", "RunSkipped"]
    assert "concurrencyPolicy Forbid" in world.events[-1][2]
    world.runs.finish("hourly-202612011300")
    await world.clock.jump(at(15, 0, 1))
    assert [n for n, _ in world.runs.created][-1] == "hourly-202612011500"
    assert world.status.merged["lastSuccessfulRun"] == "hourly-202612011300"


async def test_a_fresh_service_over_existing_runs_creates_none_twice(world: World) -> None:
    """An operator SIGKILLed after creating the 13:00 run but before recording it."""
    first = world.service()
    first.observe(body())
    await world.clock.settle()
    await world.clock.jump(at(13, 0, 1))
    await world.tasks.close()
    world.status.merged.clear()  # the status patch never made it

    second = World(clock=world.clock, runs=world.runs)
    again = second.service()
    again.observe(body())
    await second.clock.settle()

    assert [n for n, _ in world.runs.created] == ["hourly-202612011300"]
    assert second.reasons() == []  # nothing new happened
    assert second.status.merged["lastScheduleTime"] == timestamps.format(at(13))
    await second.tasks.close()


async def test_back_after_downtime_only_the_latest_run_starts(world: World) -> None:
    world.clock.current = at(17, 10)
    status = {"lastHandledScheduleTime": timestamps.format(at(12)), "missedRuns": 2}
    service = world.service()

    service.observe(body(status=status, startingDeadlineSeconds=900))
    await world.clock.settle()

    assert [n for n, _ in world.runs.created] == ["hourly-202612011700"]
    assert world.reasons() == ["RunsMissed", "RunCreated"]
    assert world.events[0][0] == "Warning"
    assert world.events[0][2].startswith("4 run(s)")
    assert world.status.merged["missedRuns"] == 6
    assert world.observer.counts == {"missed": 4, "created": 1}


async def test_past_the_deadline_the_run_is_missed_with_a_warning(world: World) -> None:
    world.clock.current = at(13, 10)
    service = world.service()

    service.observe(body(startingDeadlineSeconds=60))
    await world.clock.settle()

    assert world.runs.created == []
    assert [(t, r) for t, r, _ in world.events] == [("Warning", "RunMissed")]
    assert world.status.merged["missedRuns"] == 1


async def test_history_limits_delete_old_finished_runs(world: World) -> None:
    service = world.service()
    service.observe(body(successfulRunsHistoryLimit=2, failedRunsHistoryLimit=0))
    await world.clock.settle()
    for hour in (13, 14, 15, 16):
        await world.clock.jump(at(hour, 0, 1))
        name = f"hourly-20261201{hour}00"
        world.runs.finish(name, RunPhase.FAILED if hour == 14 else RunPhase.SUCCEEDED)

    await world.clock.jump(at(16, 0, 40))  # the recheck after the last one finished

    # The failed 14:00 run went at once (limit 0); 13:00 once three had succeeded.
    assert world.runs.deleted == ["hourly-202612011400", "hourly-202612011300"]
    assert sorted(world.runs.runs) == ["hourly-202612011500", "hourly-202612011600"]


async def test_invalid_spec_runs_nothing_says_so_once_then_a_fix_runs(world: World) -> None:
    service = world.service()
    service.observe(body(timeZone="Mars/Olympus"))
    await world.clock.settle()
    await world.clock.jump(at(13, 0, 1))

    assert world.runs.created == []
    assert world.clock.wake_at is None  # waits for a change, not for a time
    [ready] = world.status.merged["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidTimeZone")
    assert world.status.merged["nextScheduleTime"] is None
    assert world.reasons() == ["InvalidTimeZone"]

    service.observe(body(generation=2, timeZone="Europe/Berlin"))
    await world.clock.settle()

    assert world.status.merged["conditions"][0]["status"] == "True"
    # The 13:00 run fell due while it was invalid: the fixed spec applies from now.
    assert world.runs.created == []
    assert world.clock.wake_at is not None
    assert world.clock.wake_at.astimezone(UTC) == at(14)
    assert world.reasons() == ["InvalidTimeZone"]


async def test_a_changed_spec_applies_from_now_without_catching_up(world: World) -> None:
    """Editing an hourly schedule into a half-hourly one at 13:10 runs nothing for 13:00."""
    service = world.service()
    service.observe(body())
    await world.clock.settle()
    world.clock.current = at(12, 59)
    service.observe(body(generation=2, status=world.status.merged, suspend=True))
    await world.clock.settle()
    await world.clock.jump(at(13, 10))  # suspended over 13:00

    service.observe(body(generation=3, status=world.status.merged, schedule="*/30 * * * *"))
    await world.clock.settle()

    assert world.runs.created == []
    assert world.status.merged["missedRuns"] == 0
    assert world.status.merged["lastHandledScheduleTime"] == timestamps.format(at(13, 10))
    await world.clock.jump(at(13, 30, 1))
    assert [n for n, _ in world.runs.created] == ["hourly-202612011330"]


async def test_a_stale_watch_event_does_not_decide_a_run_twice(world: World) -> None:
    windows = [{"start": "22:00", "end": "04:00"}]
    service = world.service()
    service.observe(body(windows=windows))
    await world.clock.settle()
    await world.clock.jump(at(13, 0, 1))
    assert world.reasons() == ["RunSkipped"]

    service.observe(body(windows=windows))  # arrives late: the status before the skip
    await world.clock.jump(at(14, 0, 1))

    assert world.reasons() == ["RunSkipped", "RunSkipped"]  # no RunsMissed for 13:00
    assert world.status.merged["missedRuns"] == 0
    skipped = [m for _, r, m in world.events if r == "RunSkipped"]
    assert [m.split()[2] for m in skipped] == ["2026-12-01T13:00:00+00:00",
                                               "2026-12-01T14:00:00+00:00"]  # fmt: skip
    assert world.status.merged["lastHandledScheduleTime"] == timestamps.format(at(14))


async def test_status_patches_of_our_own_do_not_wake_the_loop(world: World) -> None:
    service = world.service()
    service.observe(body())
    await world.clock.settle()
    patches = len(world.status.patches)

    service.observe(body(status=world.status.merged))  # the event our own patch caused

    await world.clock.jump(at(12, 45))  # not due: the loop only checks its moment
    assert len(world.status.patches) == patches


async def test_an_api_hiccup_is_retried_after_a_backoff(world: World) -> None:
    world.runs.fail_next_list = True
    service = world.service(first_backoff=5)
    service.observe(body())
    await world.clock.settle()

    assert world.status.patches == []
    assert world.observer.counts["failed"] == 1
    assert world.clock.wake_at == at(12, 30, 5)
    await world.clock.jump(at(12, 30, 5))
    assert world.status.merged["nextScheduleTime"] == timestamps.format(at(13))


async def test_forget_stops_the_loop(world: World) -> None:
    service = world.service()
    service.observe(body())
    await world.clock.settle()
    assert world.tasks.running("schedule/s-1")

    service.forget("s-1")
    await asyncio.sleep(0)

    assert len(service) == 0
    assert not world.tasks.running("schedule/s-1")


async def test_a_finished_run_wakes_its_schedule_before_the_recheck(world: World) -> None:
    service = world.service(recheck=3600)
    service.observe(body())
    await world.clock.settle()
    await world.clock.jump(at(13, 0, 1))
    assert world.status.merged["activeRuns"] == 1

    world.runs.finish("hourly-202612011300")
    service.poke("s-1")
    await world.clock.settle()

    assert world.status.merged["activeRuns"] == 0
    assert world.status.merged["lastSuccessfulRun"] == "hourly-202612011300"
    service.poke("someone-else")  # not ours: nothing happens
