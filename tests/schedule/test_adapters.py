"""The schedule adapters without a cluster: a run's body and how a listed one is read,
the wall clock's test seam, and a draining service that publishes nothing more."""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest

from mandrill.adapters import schedules
from mandrill.domain.schedule.models import RunPhase, ScheduleRef
from tests.schedule.fakes import FakeClock, World

REF = ScheduleRef(namespace="ns", name="weekly", uid="s-1")
AT = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.UTC)


def test_a_run_is_owned_labelled_and_annotated_and_reads_back() -> None:
    body = schedules.run_body(REF, name="weekly-202612060200", scheduled=AT,
                              template={"target": {"name": "x"}})  # fmt: skip

    meta = body["metadata"]
    assert meta["ownerReferences"][0]["uid"] == "s-1"
    assert meta["ownerReferences"][0]["controller"] is True
    assert meta["labels"] == {"mandrill.dev/schedule-uid": "s-1"}
    assert body["spec"] == {"target": {"name": "x"}}
    listed = {**body, "metadata": {**meta, "uid": "r-1"}}
    run = schedules.run_from_body(listed)
    assert run is not None
    assert (run.scheduled, run.phase) == (AT, RunPhase.ACTIVE)
    acked = {"type": "Acknowledged", "status": "True"}
    done = {**listed, "status": {"phase": "Failed", "conditions": [acked]}}
    finished = schedules.run_from_body(done)
    assert finished is not None
    assert finished.phase is RunPhase.FAILED
    assert schedules.run_from_body({"metadata": {"name": "by-hand", "uid": "u"}}) is None


def test_the_test_clock_runs_fast_from_its_anchor(monkeypatch: pytest.MonkeyPatch) -> None:
    anchor = time.time() - 10
    monkeypatch.setenv("MANDRILL_TEST_CLOCK", f"{anchor}:60")

    clock = schedules.clock()

    ahead = clock.now().timestamp() - time.time()
    assert 590 < ahead < 610  # ten real seconds since the anchor are ten minutes
    monkeypatch.delenv("MANDRILL_TEST_CLOCK")
    assert abs(schedules.clock().now().timestamp() - time.time()) < 1


async def test_the_wall_clock_sleeps_until_the_moment_or_a_wake() -> None:
    clock = schedules.WallClock(anchor=time.time(), speed=60)
    wake = asyncio.Event()
    started = time.monotonic()

    await clock.sleep_until(clock.now() + datetime.timedelta(seconds=3), wake)  # 0.05 s real

    assert time.monotonic() - started < 1
    wake.set()
    async with asyncio.timeout(1):
        await clock.sleep_until(None, wake)


async def test_a_stopped_service_publishes_nothing_more() -> None:
    world = World(
        clock=FakeClock(current=datetime.datetime(2026, 12, 1, 12, 30, tzinfo=datetime.UTC))
    )
    service = world.service()
    body = {"metadata": {"namespace": "ns", "name": "hourly", "uid": "s-1",
                         "creationTimestamp": "2026-12-01T12:00:00Z"},
            "spec": {"schedule": "0 * * * *", "template": {"target": {"name": "x"}}}}  # fmt: skip
    service.observe(body)
    await world.clock.settle()

    service.stop()
    service.observe({**body, "metadata": {**body["metadata"], "uid": "s-2"}})
    await asyncio.sleep(0)

    assert len(service) == 0
    assert not world.tasks.running("schedule/s-1")
    assert world.runs.created == []
    await world.tasks.close()
