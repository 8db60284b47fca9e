"""RestartSchedules: one loop per schedule that decides what is due, does it, and sleeps.

The kopf handler hands every event's body to `ScheduleService.observe` and
returns. The first sighting of a schedule starts its loop (a task in the
operator's registry); a new generation (the spec changed) wakes it; status
patches (our own) only refresh what it knows. Each pass of the loop:

1. parses the spec (`ScheduleSpec.from_spec`); a spec that cannot run gets
   `Ready=False` with the reason, one Warning Event per generation, and no
   runs, until it changes;
2. lists the runs the schedule owns and asks the pure `decide` what is due
   now, given what status remembers;
3. creates the run's RestartRequest (AlreadyExists is success: another
   instance, or this one before a crash, made it), or posts why it was
   skipped or missed, prunes finished runs beyond the history limits, and
   writes status;
4. sleeps until the next run, or until woken by a change of the spec or
   the end of one of its runs (`poke`); while runs are active it also looks
   again every `recheck` seconds, in case such an event was missed.

A changed spec (a new generation) applies from the moment it is seen: runs
the new spec would have made before are not caught up, as for a new
schedule, so editing a weekly schedule into an hourly one does not start a
run at once. What status remembers (`lastHandledScheduleTime`,
`missedRuns`) only moves forward here, even if a watch event older than our
last patch arrives late, so one process never decides on a run twice.
Errors never end the loop: a TransientError or an unexpected one is logged,
counted and retried with a growing backoff.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

import attrs

from mandrill import resources
from mandrill.application.schedule_ports import Body, Ports
from mandrill.domain import timestamps
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.events import EventType
from mandrill.domain.schedule import decide, status
from mandrill.domain.schedule.cron import utc
from mandrill.domain.schedule.decide import Action, Decision
from mandrill.domain.schedule.models import (
    InvalidSchedule,
    Run,
    RunPhase,
    ScheduleRef,
    ScheduleSpec,
)

log = logging.getLogger(__name__)
_OUTCOMES = {
    Action.CREATE: "created",
    Action.EXISTS: "exists",
    Action.SKIP: "skipped",
    Action.MISS: "missed",
    Action.SUSPENDED: "suspended",
}


@attrs.define
class _Schedule:
    body: Body
    wake: asyncio.Event = attrs.Factory(asyncio.Event)
    last_handled: datetime.datetime | None = None
    """The furthest `lastHandledScheduleTime` seen or written: never goes back."""
    missed: int = 0
    reported_invalid: tuple[int, str] | None = None
    """(generation, reason) of the last Invalid Event: one per generation."""
    failures: int = 0
    generation: int | None = None
    """The generation of the last pass (at first, the status's observedGeneration)."""

    def remember(self, st: Body) -> None:
        last, missed = status.remembered(st)
        self.advance(last)
        self.missed = max(self.missed, missed)

    def advance(self, moment: datetime.datetime | None) -> None:
        if moment is not None and (
            self.last_handled is None or utc(moment) > utc(self.last_handled)
        ):
            self.last_handled = moment


@attrs.define
class ScheduleService:
    ports: Ports
    recheck: float = 30.0
    """Seconds between looks while runs are active."""
    first_backoff: float = 1.0
    max_backoff: float = 60.0
    _schedules: dict[str, _Schedule] = attrs.Factory(dict)
    _stopped: bool = False

    def observe(self, body: Body) -> None:
        """Take note of a schedule as an event shows it; never blocks."""
        uid = body["metadata"]["uid"]
        known = self._schedules.get(uid)
        if known is None and self._stopped:
            return
        if known is None:
            known = self._schedules[uid] = _Schedule(body=body)
            known.remember(body.get("status") or {})
            seen = (body.get("status") or {}).get("observedGeneration")
            known.generation = int(seen) if seen is not None else None
            self.ports.tasks.spawn(f"schedule/{uid}", lambda: self._loop(uid))
            return
        changed = _generation(body) != _generation(known.body)
        known.body = body
        known.remember(body.get("status") or {})
        if changed:
            known.wake.set()

    def poke(self, uid: str) -> None:
        """One of the schedule's runs changed (it finished): look again now, not at the recheck."""
        known = self._schedules.get(uid)
        if known is not None:
            known.wake.set()

    def forget(self, uid: str) -> None:
        """The schedule was deleted: stop its loop (its runs go with it, by ownership)."""
        self._schedules.pop(uid, None)
        self.ports.tasks.cancel(f"schedule/{uid}")

    def stop(self) -> None:
        """Stop every loop (the operator is draining): no run is published from now on."""
        self._stopped = True
        for uid in list(self._schedules):
            self.forget(uid)

    def __len__(self) -> int:
        return len(self._schedules)

    async def _loop(self, uid: str) -> None:
        while (entry := self._schedules.get(uid)) is not None:
            entry.wake.clear()
            try:
                wake_at = await self.reconcile(entry)
                entry.failures = 0
            except (TransientError, PermanentError) as e:
                self.ports.observer.failed()
                wake_at = self._backoff(entry)
                log.warning("RestartSchedule %s: %s; again in a while", _name(entry.body), e)
            except Exception:
                self.ports.observer.failed()
                wake_at = self._backoff(entry)
                log.exception("RestartSchedule %s: unexpected error", _name(entry.body))
            await self.ports.clock.sleep_until(wake_at, entry.wake)

    def _backoff(self, entry: _Schedule) -> datetime.datetime:
        entry.failures += 1
        delay = min(self.max_backoff, self.first_backoff * 2 ** (entry.failures - 1))
        return self.ports.clock.now() + datetime.timedelta(seconds=delay)

    async def reconcile(self, entry: _Schedule) -> datetime.datetime | None:
        """One pass (see the module docstring); returns when to look again (None: on change)."""
        body, now = entry.body, self.ports.clock.now()
        ref = ScheduleRef.from_body(body)
        previous = body.get("status") or {}
        try:
            spec = ScheduleSpec.from_spec(body.get("spec") or {})
        except InvalidSchedule as e:
            await self._invalid(entry, ref, previous, e, now)
            return None
        if entry.generation is not None and entry.generation != ref.generation:
            # A changed spec applies from now on: no run it would have made before
            # is caught up (nor counted missed), as when a schedule is created.
            entry.advance(now)
        entry.generation = ref.generation
        runs = await self.ports.runs.list(ref)
        # In a thread: counting the runs an every-minute schedule missed over weeks
        # of downtime takes a good part of a second, which the event loop (and every
        # RestartRequest in flight) should not wait for. decide() is pure.
        decision = await asyncio.to_thread(
            decide.decide,
            spec,
            now=now,
            created=ref.created,
            last_handled=entry.last_handled,
            runs=runs,
        )
        runs = await self._act(body, ref, spec, decision, runs)
        runs = await self._prune(ref, spec, runs)
        remembered = {
            **previous,
            "missedRuns": entry.missed,
            "lastHandledScheduleTime": (
                timestamps.format(entry.last_handled) if entry.last_handled else None
            ),
        }
        patch = status.scheduled_patch(
            ref=ref,
            previous=remembered,
            decision=decision,
            runs=runs,
            tz=spec.cron.tz,
            suspended=spec.suspend,
            now=now,
        )
        if "lastHandledScheduleTime" not in patch and entry.last_handled is not None:
            patch["lastHandledScheduleTime"] = timestamps.format(entry.last_handled)
        if any(previous.get(k) != v for k, v in patch.items()):  # a quiet pass writes nothing
            await self.ports.status.patch(ref, patch)
        entry.remember(patch)
        entry.body = {**body, "status": {**previous, **patch}}
        wake_at = decision.next_run
        if any(r.phase is RunPhase.ACTIVE for r in runs):
            soon = now + datetime.timedelta(seconds=self.recheck)
            wake_at = soon if wake_at is None else min(wake_at, soon, key=utc)
        return wake_at

    async def _act(
        self, body: Body, ref: ScheduleRef, spec: ScheduleSpec, decision: Decision, runs: list[Run]
    ) -> list[Run]:
        due = decision.due
        if decision.missed_earlier:
            self._event(
                body,
                "Warning",
                "RunsMissed",
                f"{decision.missed_earlier} run(s) fell due while the operator was away and "
                "were not started; only the latest was considered",
            )
            self.ports.observer.runs("missed", decision.missed_earlier)
        if due is None:
            return runs
        self.ports.observer.runs(_OUTCOMES[due.action])
        local = status.local_time(due.scheduled, spec.cron.tz)
        if due.action is Action.CREATE:
            name = decide.run_name(ref.name, due.scheduled)
            made = await self.ports.runs.create(
                ref, name=name, scheduled=due.scheduled, template=spec.template
            )
            if made:
                self._event(body, "Normal", "RunCreated", f"RestartRequest {name} for {local}")
            return await self.ports.runs.list(ref)
        if due.action is Action.SKIP:
            self._event(body, "Normal", "RunSkipped", f"run at {local} skipped: {due.message}")
        elif due.action is Action.MISS:
            self._event(body, "Warning", "RunMissed", f"run at {local} missed: {due.message}")
        return runs

    async def _prune(self, ref: ScheduleRef, spec: ScheduleSpec, runs: list[Run]) -> list[Run]:
        doomed = decide.to_prune(
            runs, successful=spec.successful_history, failed=spec.failed_history
        )
        for run in doomed:
            await self.ports.runs.delete(ref, run)
        gone = {r.uid for r in doomed}
        return [r for r in runs if r.uid not in gone]

    async def _invalid(
        self,
        entry: _Schedule,
        ref: ScheduleRef,
        previous: Body,
        error: InvalidSchedule,
        now: datetime.datetime,
    ) -> None:
        entry.generation = ref.generation
        key = (ref.generation, error.reason)
        if entry.reported_invalid != key:
            entry.reported_invalid = key
            self._event(entry.body, "Warning", error.reason, f"runs nothing: {error.message}")
        patch = status.invalid_patch(
            ref=ref, previous=previous, reason=error.reason, message=error.message, now=now
        )
        if any(previous.get(k) != v for k, v in patch.items()):
            await self.ports.status.patch(ref, patch)
        entry.body = {**entry.body, "status": {**previous, **patch}}

    def _event(self, body: Body, type: EventType, reason: str, message: str) -> None:
        obj = {
            "apiVersion": resources.API_VERSION,
            "kind": resources.RESTART_SCHEDULE_KIND,
            "metadata": body["metadata"],
        }
        self.ports.events(obj, type, reason, message)


def _generation(body: Body) -> int:
    return int(body["metadata"].get("generation") or 1)


def _name(body: Body) -> str:
    meta = body["metadata"]
    return f"{meta.get('namespace')}/{meta.get('name')}"
