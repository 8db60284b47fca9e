"""Small fakes for the schedule service: runs, status, Events and a clock that jumps."""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import Mapping
from typing import Any

import attrs

from mandrill.application.schedule import ScheduleService
from mandrill.application.schedule_ports import Ports
from mandrill.domain.errors import TransientError
from mandrill.domain.schedule.models import Run, RunPhase, ScheduleRef
from mandrill.supervision import TaskRegistry


@attrs.define
class FakeClock:
    """Time stands still until a test moves it; sleepers wake when it passes their moment."""

    current: datetime.datetime
    wake_at: datetime.datetime | None = None
    """What the last sleeper asked for: the timer under test."""
    _tick: asyncio.Event = attrs.Factory(asyncio.Event)
    _asleep: asyncio.Event = attrs.Factory(asyncio.Event)

    def now(self) -> datetime.datetime:
        return self.current

    async def sleep_until(self, moment: datetime.datetime | None, wake: asyncio.Event) -> None:
        self.wake_at = moment
        while not wake.is_set() and (moment is None or self.current < moment):
            tick = self._tick
            self._asleep.set()
            waits = [asyncio.create_task(tick.wait()), asyncio.create_task(wake.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        self._asleep.clear()

    async def settle(self) -> None:
        """After something woke the loop (a start, a change): wait until it sleeps again."""
        self._asleep.clear()
        async with asyncio.timeout(5):
            await self._asleep.wait()

    async def jump(self, to: datetime.datetime) -> None:
        """Move the clock to `to`, wake whoever sleeps, and wait until they sleep again."""
        self.current = to
        tick, self._tick = self._tick, asyncio.Event()
        self._asleep.clear()
        tick.set()
        async with asyncio.timeout(5):
            await self._asleep.wait()


@attrs.define
class FakeRuns:
    runs: dict[str, Run] = attrs.Factory(dict)
    created: list[tuple[str, Mapping[str, Any]]] = attrs.Factory(list)
    """(name, template) of each creation that made a new run."""
    create_calls: int = 0
    deleted: list[str] = attrs.Factory(list)
    fail_next_list: bool = False

    async def list(self, schedule: ScheduleRef) -> list[Run]:
        if self.fail_next_list:
            self.fail_next_list = False
            raise TransientError("the API server hiccuped")
        return list(self.runs.values())

    async def create(
        self,
        schedule: ScheduleRef,
        *,
        name: str,
        scheduled: datetime.datetime,
        template: Mapping[str, Any],
    ) -> bool:
        self.create_calls += 1
        if name in self.runs:
            return False
        self.runs[name] = Run(name=name, uid=f"uid-{name}", scheduled=scheduled,
                              phase=RunPhase.ACTIVE)  # fmt: skip
        self.created.append((name, template))
        return True

    async def delete(self, schedule: ScheduleRef, run: Run) -> None:
        self.runs.pop(run.name, None)
        self.deleted.append(run.name)

    def finish(self, name: str, phase: RunPhase = RunPhase.SUCCEEDED) -> None:
        self.runs[name] = attrs.evolve(self.runs[name], phase=phase)


@attrs.define
class FakeStatus:
    patches: list[dict[str, Any]] = attrs.Factory(list)
    merged: dict[str, Any] = attrs.Factory(dict)

    async def patch(self, schedule: ScheduleRef, status: Mapping[str, Any]) -> None:
        self.patches.append(dict(status))
        self.merged.update(status)


@attrs.define
class FakeObserver:
    counts: collections.Counter[str] = attrs.Factory(collections.Counter)

    def runs(self, outcome: str, count: int = 1) -> None:
        self.counts[outcome] += count

    def failed(self) -> None:
        self.counts["failed"] += 1


@attrs.define
class World:
    clock: FakeClock
    runs: FakeRuns = attrs.Factory(FakeRuns)
    status: FakeStatus = attrs.Factory(FakeStatus)
    events: list[tuple[str, str, str]] = attrs.Factory(list)
    """(type, reason, message)."""
    tasks: TaskRegistry = attrs.Factory(lambda: TaskRegistry("test"))
    observer: FakeObserver = attrs.Factory(FakeObserver)

    def service(self, **kwargs: Any) -> ScheduleService:
        def post(obj: Mapping[str, Any], type: str, reason: str, message: str) -> None:
            assert obj["kind"] == "RestartSchedule"
            self.events.append((type, reason, message))

        ports = Ports(runs=self.runs, status=self.status, events=post, clock=self.clock,
                      tasks=self.tasks, observer=self.observer)  # fmt: skip
        return ScheduleService(ports=ports, **kwargs)

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]
