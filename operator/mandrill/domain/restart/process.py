"""Consume one RestartRequest: plan, then save and restart concurrently, then acknowledge.

The order is the contract:

1. Plan. Choose the targets and record the plan in the request's status
   before touching anything. A resumed request (after a crash or a retry)
   finds its plan there and acts only on targets still Pending, so no target
   is restarted twice; pod deletions and evictions also carry the pod's UID
   as a precondition, so even a stale plan can never hit a replacement pod.
2. Save and restart, concurrently and independently: a journal that is down
   does not stop a restart, and a failed restart is still journalled.
3. Acknowledge: one status patch with the phase, the conditions and every
   target's outcome. The request is acknowledged once that patch is accepted.

Ports are Protocols so this module runs without a cluster in unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import attrs

from mandrill.domain.errors import PermanentError, StoreError, TransientError
from mandrill.domain.restart import selection
from mandrill.domain.restart.models import (
    Candidate,
    Outcome,
    Phase,
    Plan,
    RequestRef,
    RestartSpec,
    StepResult,
    TargetResult,
)


class Targets(Protocol):
    """The cluster, as far as restarting goes."""

    async def find(self, *, namespace: str, spec: RestartSpec) -> list[Candidate]:
        """Matches of the target; raises PermanentError if a named target does not exist."""

    async def restart(
        self, *, namespace: str, target: TargetResult, spec: RestartSpec, request: RequestRef
    ) -> TargetResult:
        """Restart one target once; returns its final result (never Pending)."""

    async def wait_ready(
        self,
        *,
        namespace: str,
        restarted: Sequence[TargetResult],
        spec: RestartSpec,
        expected: int,
        within: float,
    ) -> StepResult:
        """Wait until `restarted` are replaced and `expected` matches are Ready again."""


class Journal(Protocol):
    async def save(self, entry: JournalEntry) -> None:
        """Write the entry once; a replay of the same request UID is a no-op. Raises StoreError."""


class Reporter(Protocol):
    """Where progress and the outcome go: the request's status and Events."""

    async def planned(self, plan: Plan, *, started: datetime.datetime) -> Plan:
        """Record the plan; returns the plan that holds (another instance's, if it won)."""

    async def resumed(self, plan: Plan) -> None: ...

    def target_finished(self, result: TargetResult) -> None: ...

    async def handed_back(self, targets: Sequence[TargetResult], *, why: str) -> None:
        """Record what was done so far; the rest stays Pending for the next attempt."""

    async def acknowledge(self, outcome: FinalOutcome) -> None: ...


@attrs.frozen
class JournalEntry:
    """What the journal keeps of a request: enough to audit and to replay it."""

    request: RequestRef
    spec: Mapping[str, Any]
    targets: tuple[TargetResult, ...]
    received: datetime.datetime


@attrs.frozen
class FinalOutcome:
    phase: Phase
    reason: str
    message: str
    targets: tuple[TargetResult, ...]
    saved: StepResult
    restarted: StepResult
    ready: StepResult | None
    finished: datetime.datetime

    @property
    def steps(self) -> tuple[tuple[str, StepResult], ...]:
        """The conditions this outcome sets, in the order they are listed."""
        steps = (("Saved", self.saved), ("Restarted", self.restarted))
        return steps if self.ready is None else (*steps, ("Ready", self.ready))


def _no_wait() -> contextlib.AbstractAsyncContextManager[Any]:
    return contextlib.nullcontext()


@attrs.frozen
class Context:
    """Everything `consume` needs besides the request itself."""

    targets: Targets
    journal: Journal
    reporter: Reporter
    limiter: Callable[[], contextlib.AbstractAsyncContextManager[Any]]
    """Bounds restarts across all requests of this operator."""
    denied_namespaces: Collection[str]
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    waiting: Callable[[], contextlib.AbstractAsyncContextManager[Any]] = _no_wait
    """Entered while the request only waits (for Ready): the caller may lend its slot out."""


async def consume(
    *,
    request: RequestRef,
    spec: RestartSpec,
    raw_spec: Mapping[str, Any],
    prior: Plan | None,
    ctx: Context,
) -> FinalOutcome:
    """Carry out one request end to end; returns what was acknowledged.

    Raises TransientError when the plan could not be recorded (nothing was
    restarted yet, so a retry is safe), or when some target hit a transient
    error that outlasted the adapter's retries: what finished is recorded,
    the rest stays Pending, and a retry resumes from there."""
    received = ctx.clock()
    if prior is None:
        try:
            candidates = await ctx.targets.find(namespace=request.namespace, spec=spec)
        except PermanentError as e:
            return await reject(ctx=ctx, reason=e.reason, message=e.message)
        plan = selection.plan(
            spec=spec,
            candidates=candidates,
            namespace=request.namespace,
            denied_namespaces=ctx.denied_namespaces,
            now=received,
            seed=request.uid,
        )
        plan = await ctx.reporter.planned(plan, started=received)
    else:
        plan = prior
        await ctx.reporter.resumed(plan)

    entry = JournalEntry(request=request, spec=raw_spec, targets=plan.targets, received=received)
    finished: dict[str, TargetResult] = {}
    transient: list[TransientError] = []
    try:
        # A TaskGroup, not gather: should either side fail unexpectedly, the
        # other is cancelled too, so no restart goes on behind the caller's retry.
        async with asyncio.TaskGroup() as group:
            saving = group.create_task(_save(ctx.journal, entry))
            restarting = group.create_task(
                _restart_all(
                    request=request,
                    spec=spec,
                    plan=plan,
                    ctx=ctx,
                    finished=finished,
                    transient=transient,
                )
            )
        saved, results = saving.result(), restarting.result()
    except asyncio.CancelledError:
        # Shutdown (the drain timeout ran out): hand the rest back. What finished
        # is recorded; what was in flight stays Pending and the next instance
        # retries it, where the UID preconditions make a second restart a no-op.
        await _hand_back(
            ctx,
            [finished.get(t.key, t) for t in plan.targets],
            why="operator stopped",
        )
        raise
    if transient:
        # The API was unavailable for longer than the adapter retries: keep
        # what finished, leave the rest Pending, and let the caller retry.
        await _hand_back(ctx, list(results), why=f"transient error ({transient[0]}), retrying")
        raise TransientError(str(transient[0]))
    restarted = _restart_step(results)
    ready = None
    done = [r for r in results if r.outcome is Outcome.RESTARTED]
    if spec.wait_for_ready and done:
        try:
            async with ctx.waiting():
                ready = await ctx.targets.wait_ready(
                    namespace=request.namespace,
                    restarted=done,
                    spec=spec,
                    expected=plan.matched,
                    within=spec.ready_timeout_seconds,
                )
        except asyncio.CancelledError:
            # Stopped while waiting: every target is done, so the next instance
            # only waits again; the status says so meanwhile.
            await _hand_back(ctx, list(results), why="operator stopped while waiting for Ready")
            raise
        except (TransientError, PermanentError) as e:
            # The restarts happened: what could not be watched is readiness, not the request.
            reason = e.reason if isinstance(e, PermanentError) else "ReadinessUnknown"
            ready = StepResult(ok=False, reason=reason, message=f"could not watch for Ready: {e}")
    outcome = _final(results, saved=saved, restarted=restarted, ready=ready, now=ctx.clock())
    await ctx.reporter.acknowledge(outcome)
    return outcome


NOT_ATTEMPTED = StepResult(ok=False, reason="NotSaved", message="the request failed before saving")
"""The Saved step of a request rejected before its journal write (the retrier saves it later)."""


async def reject(
    *, ctx: Context, reason: str, message: str, targets: Sequence[TargetResult] = ()
) -> FinalOutcome:
    """End the request as Failed, and acknowledge that.

    Used before anything was restarted (an invalid spec, a missing target), and
    when the operator gives up on a request (InternalError): `targets` then
    are those recorded so far, and any still Pending are reported Failed, so a
    Failed request never shows work as if it were still to come."""
    step = StepResult(ok=False, reason=reason, message=message)
    outcome = FinalOutcome(
        phase=Phase.FAILED,
        reason=reason,
        message=message,
        targets=tuple(
            attrs.evolve(t, outcome=Outcome.FAILED, message=f"not attempted: {reason}")
            if t.outcome is Outcome.PENDING
            else t
            for t in targets
        ),
        saved=NOT_ATTEMPTED,
        restarted=step,
        ready=None,
        finished=ctx.clock(),
    )
    await ctx.reporter.acknowledge(outcome)
    return outcome


async def _save(journal: Journal, entry: JournalEntry) -> StepResult:
    try:
        await journal.save(entry)
    except StoreError as e:
        return StepResult(ok=False, reason="StoreUnavailable", message=str(e))
    return StepResult(ok=True, reason="Saved", message="request written to the journal")


async def _hand_back(ctx: Context, targets: list[TargetResult], *, why: str) -> None:
    """Best effort, bounded (the process may be on its way out)."""
    try:
        async with asyncio.timeout(5):
            await ctx.reporter.handed_back(targets, why=why)
    except Exception:  # the status still holds the plan: resuming works without this
        return


async def _restart_all(
    *,
    request: RequestRef,
    spec: RestartSpec,
    plan: Plan,
    ctx: Context,
    finished: dict[str, TargetResult],
    transient: list[TransientError],
) -> tuple[TargetResult, ...]:
    """Restart every Pending target, at most `maxConcurrent` at once; keep the others.

    Results land in `finished` as they come, so a cancelled run still knows
    them; a target whose restart hit a transient error stays Pending, its
    error in `transient`."""
    per_request = asyncio.Semaphore(spec.max_concurrent)

    async def one(target: TargetResult) -> None:
        try:
            async with per_request, _bounded(ctx.limiter):
                result = await _restart_one(request=request, spec=spec, target=target, ctx=ctx)
        except TransientError as e:
            transient.append(e)
            return
        finished[target.key] = result
        ctx.reporter.target_finished(result)

    async with asyncio.TaskGroup() as group:
        for target in plan.pending:
            group.create_task(one(target))
    return tuple(finished.get(t.key, t) for t in plan.targets)


@contextlib.asynccontextmanager
async def _bounded(
    limiter: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
) -> AsyncIterator[None]:
    async with limiter():
        yield


async def _restart_one(
    *, request: RequestRef, spec: RestartSpec, target: TargetResult, ctx: Context
) -> TargetResult:
    started = ctx.clock()
    if spec.dry_run:
        return attrs.evolve(
            target,
            outcome=Outcome.DRY_RUN,
            message="dry run: would restart",
            started=started,
            finished=started,
        )
    try:
        result = await ctx.targets.restart(
            namespace=request.namespace, target=target, spec=spec, request=request
        )
    except PermanentError as e:
        result = attrs.evolve(target, outcome=Outcome.FAILED, message=f"{e.reason}: {e.message}")
    return attrs.evolve(result, started=result.started or started, finished=ctx.clock())


_LABELS = {
    Outcome.PENDING: "pending",
    Outcome.RESTARTED: "restarted",
    Outcome.SKIPPED: "skipped",
    Outcome.BLOCKED: "blocked",
    Outcome.FAILED: "failed",
    Outcome.DRY_RUN: "would be restarted (dry run)",
}


def _restart_step(results: Sequence[TargetResult]) -> StepResult:
    counts = {o: sum(1 for r in results if r.outcome is o) for o in Outcome}
    chosen = len(results) - counts[Outcome.SKIPPED]
    summary = ", ".join(f"{n} {_LABELS[o]}" for o, n in counts.items() if n)
    if counts[Outcome.FAILED] or counts[Outcome.BLOCKED]:
        first = next(r for r in results if r.outcome in (Outcome.FAILED, Outcome.BLOCKED))
        return StepResult(
            ok=False,
            reason="PartiallyRestarted" if counts[Outcome.RESTARTED] else "RestartFailed",
            message=f"{summary}; first: {first.kind} {first.name}: {first.message}",
        )
    if counts[Outcome.DRY_RUN]:
        return StepResult(ok=True, reason="DryRun", message=summary)
    if chosen == 0:
        return StepResult(
            ok=True, reason="NothingToRestart", message=summary or "no target matched"
        )
    return StepResult(ok=True, reason="Restarted", message=summary)


def _final(
    results: tuple[TargetResult, ...],
    *,
    saved: StepResult,
    restarted: StepResult,
    ready: StepResult | None,
    now: datetime.datetime,
) -> FinalOutcome:
    """The request's phase follows the restart (and readiness, when asked for).

    A journal failure shows as Saved=False but does not fail the request: the
    restarts happened, and a Failed phase would invite a second, duplicate
    request."""
    ok = restarted.ok and (ready is None or ready.ok)
    deciding = restarted if not restarted.ok or ready is None else ready
    return FinalOutcome(
        phase=Phase.SUCCEEDED if ok else Phase.FAILED,
        reason=deciding.reason,
        message=deciding.message,
        targets=results,
        saved=saved,
        restarted=restarted,
        ready=ready,
        finished=now,
    )
