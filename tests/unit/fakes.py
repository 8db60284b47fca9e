"""Small fakes of the restart ports (`Targets`, `Journal`, `Reporter`) and a limiter.

Each fake records what it was asked to do and can be told to fail or to wait
on a hook, so tests assert behaviour (what was restarted, saved, reported, and
how many restarts were in flight) rather than which mock was called how.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from mandrill.domain.restart import process
from mandrill.domain.restart.models import (
    Candidate,
    Kind,
    Outcome,
    Plan,
    RequestRef,
    RestartSpec,
    StepResult,
    TargetResult,
)

NOW = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)
"""The fixed clock of every test."""

Hook = Callable[[], Awaitable[None]]


def candidate(
    name: str,
    *,
    uid: str | None = None,
    age: datetime.timedelta = datetime.timedelta(days=10),
    protected: bool = False,
    kind: Kind = Kind.POD,
) -> Candidate:
    """A live match, `age` old at NOW; its UID defaults to one derived from the name."""
    return Candidate(
        kind=kind, name=name, uid=uid or f"uid-{name}", created=NOW - age, protected=protected
    )


def restart_spec(**spec: Any) -> RestartSpec:
    """A spec selecting pods app=web, with `spec` fields (CRD spelling) on top."""
    return RestartSpec.from_spec({"target": {"selector": {"matchLabels": {"app": "web"}}}, **spec})


@attrs.define
class FakeTargets:
    """`Targets` over a fixed list of candidates; restarts succeed unless told otherwise."""

    log: list[str]
    candidates: list[Candidate] = attrs.Factory(list)
    find_error: Exception | None = None
    find_errors: list[Exception] = attrs.Factory(list)
    """Raised by the next find() calls, one each, before find_error applies."""
    on_ready: Hook | None = None
    failures: dict[str, Exception] = attrs.Factory(dict)
    """Target name -> the error its restart raises."""
    on_restart: Hook | None = None
    delay: float = 0.0
    ready: StepResult = attrs.Factory(
        lambda: StepResult(ok=True, reason="Ready", message="all ready")
    )
    """What wait_ready() answers."""
    find_calls: int = 0
    restarted: list[str] = attrs.Factory(list)
    """Names of the targets restart() was called for, in call order."""
    in_flight: int = 0
    max_in_flight: int = 0
    ready_calls: list[dict[str, Any]] = attrs.Factory(list)

    async def find(self, *, namespace: str, spec: RestartSpec) -> list[Candidate]:
        self.find_calls += 1
        if self.find_errors:
            raise self.find_errors.pop(0)
        if self.find_error is not None:
            raise self.find_error
        return list(self.candidates)

    async def restart(
        self, *, namespace: str, target: TargetResult, spec: RestartSpec, request: RequestRef
    ) -> TargetResult:
        self.restarted.append(target.name)
        self.log.append(f"restart {target.name}")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.on_restart is not None:
                await self.on_restart()
            await asyncio.sleep(self.delay)
            if target.name in self.failures:
                raise self.failures[target.name]
            return attrs.evolve(target, outcome=Outcome.RESTARTED, message="deleted")
        finally:
            self.in_flight -= 1

    async def wait_ready(
        self,
        *,
        namespace: str,
        restarted: Sequence[TargetResult],
        spec: RestartSpec,
        expected: int,
        within: float,
    ) -> StepResult:
        self.ready_calls.append(
            {"restarted": [t.name for t in restarted], "expected": expected, "within": within}
        )
        if self.on_ready is not None:
            await self.on_ready()
        return self.ready


@attrs.define
class FakeJournal:
    """`Journal` keeping entries in a list; raises `error` instead when it is set."""

    log: list[str]
    error: Exception | None = None
    on_save: Hook | None = None
    entries: list[process.JournalEntry] = attrs.Factory(list)

    async def save(self, entry: process.JournalEntry) -> None:
        self.log.append("save")
        if self.on_save is not None:
            await self.on_save()
        if self.error is not None:
            raise self.error
        self.entries.append(entry)


@attrs.define
class FakeReporter:
    """`Reporter` that records each call, in order."""

    log: list[str]
    planned_plans: list[Plan] = attrs.Factory(list)
    resumed_plans: list[Plan] = attrs.Factory(list)
    finished: list[TargetResult] = attrs.Factory(list)
    acknowledged: list[process.FinalOutcome] = attrs.Factory(list)
    handed: list[list[TargetResult]] = attrs.Factory(list)
    adopt: Plan | None = None
    """A plan another operator instance recorded first: planned() returns it."""

    async def planned(self, plan: Plan, *, started: datetime.datetime) -> Plan:
        self.log.append("planned")
        self.planned_plans.append(plan)
        return self.adopt if self.adopt is not None else plan

    async def resumed(self, plan: Plan) -> None:
        self.log.append("resumed")
        self.resumed_plans.append(plan)

    def target_finished(self, result: TargetResult) -> None:
        self.finished.append(result)

    async def handed_back(self, targets: Sequence[TargetResult], *, why: str) -> None:
        self.log.append("handed_back")
        self.handed.append(list(targets))

    async def acknowledge(self, outcome: process.FinalOutcome) -> None:
        self.log.append("acknowledge")
        self.acknowledged.append(outcome)


@attrs.define
class FakeLimiter:
    """The operator-wide limiter: a semaphore of `size`, or no bound at all when None."""

    size: int | None = None
    _semaphore: asyncio.Semaphore | None = None

    def __call__(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._hold()

    @contextlib.asynccontextmanager
    async def _hold(self) -> AsyncIterator[None]:
        if self.size is None:
            yield
            return
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.size)
        async with self._semaphore:
            yield


REQUEST = RequestRef(namespace="shop", name="restart-web", uid="req-uid-1", generation=3)


@attrs.define
class World:
    """The fakes wired into a `process.Context`; `log` interleaves what each of them saw."""

    log: list[str] = attrs.Factory(list)
    targets: FakeTargets = attrs.Factory(lambda self: FakeTargets(self.log), takes_self=True)
    journal: FakeJournal = attrs.Factory(lambda self: FakeJournal(self.log), takes_self=True)
    reporter: FakeReporter = attrs.Factory(lambda self: FakeReporter(self.log), takes_self=True)
    limiter: FakeLimiter = attrs.Factory(FakeLimiter)
    denied_namespaces: Collection[str] = ()

    def context(self) -> process.Context:
        return process.Context(
            targets=self.targets,
            journal=self.journal,
            reporter=self.reporter,
            limiter=self.limiter,
            denied_namespaces=self.denied_namespaces,
            clock=lambda: NOW,
        )

    async def consume(
        self,
        spec: RestartSpec,
        *,
        prior: Plan | None = None,
        raw_spec: Mapping[str, Any] | None = None,
        request: RequestRef = REQUEST,
    ) -> process.FinalOutcome:
        return await process.consume(
            request=request,
            spec=spec,
            raw_spec=raw_spec or {"target": {"selector": {"matchLabels": {"app": "web"}}}},
            prior=prior,
            ctx=self.context(),
        )
