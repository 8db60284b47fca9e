"""The schedule service's ports: the runs, the status, Events, the clock, the task registry.

The service (application.schedule) sees the world only through these, so its
loop (decide, act, sleep until the next run) is tested with small fakes and a
fake clock that jumps, never with a real minute of waiting.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from mandrill.domain.events import EventSink
from mandrill.domain.schedule.models import Run, ScheduleRef
from mandrill.supervision import TaskRegistry

Body = Mapping[str, Any]


class Runs(Protocol):
    """The RestartRequests a schedule owns."""

    async def list(self, schedule: ScheduleRef) -> list[Run]:
        """Every run that exists now, finished or not."""

    async def create(
        self,
        schedule: ScheduleRef,
        *,
        name: str,
        scheduled: datetime.datetime,
        template: Mapping[str, Any],
    ) -> bool:
        """Create the run's RestartRequest; False if it existed already (that is success)."""

    async def delete(self, schedule: ScheduleRef, run: Run) -> None:
        """Delete a run (the one with its UID only); gone already is fine."""


class StatusWriter(Protocol):
    async def patch(self, schedule: ScheduleRef, status: Mapping[str, Any]) -> None:
        """Merge-patch the schedule's status."""


class Clock(Protocol):
    """The service's only source of time: tests drive a fake one."""

    def now(self) -> datetime.datetime:
        """Now, aware."""

    async def sleep_until(self, moment: datetime.datetime | None, wake: asyncio.Event) -> None:
        """Return at `moment` (never, if None) or as soon as `wake` is set, if sooner."""


class Observer(Protocol):
    """What the service reports for metrics."""

    def runs(self, outcome: str, count: int = 1) -> None:
        """Runs decided on: created, exists, skipped, missed or suspended."""

    def failed(self) -> None:
        """A pass of a loop failed (it is retried)."""


class _Unobserved:
    def runs(self, outcome: str, count: int = 1) -> None:
        return None

    def failed(self) -> None:
        return None


@attrs.frozen
class Ports:
    runs: Runs
    status: StatusWriter
    events: EventSink
    clock: Clock
    tasks: TaskRegistry
    observer: Observer = attrs.Factory(_Unobserved)
