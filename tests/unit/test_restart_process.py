"""Consuming a RestartRequest over fake ports: save and restart run concurrently and
independently, failures end up in the right condition, a resumed request restarts only
what is still Pending, dry runs touch nothing, concurrency is bounded, and the reporter
sees the plan first and one acknowledgement last. Also: reading a prior plan and the
acknowledgement back from raw status."""

from __future__ import annotations

import asyncio

import pytest

from mandrill.domain.errors import PermanentError, StoreError, TransientError
from mandrill.domain.restart import process
from mandrill.domain.restart.models import (
    Kind,
    Outcome,
    Phase,
    Plan,
    StepResult,
    TargetResult,
)
from tests.unit.fakes import NOW, REQUEST, World, candidate, restart_spec


def outcomes(result: process.FinalOutcome) -> dict[str, Outcome]:
    return {t.name: t.outcome for t in result.targets}


async def test_everything_restarted_and_saved() -> None:
    world = World()
    world.targets.candidates = [candidate("web-a"), candidate("web-b")]
    raw = {"target": {"selector": {"matchLabels": {"app": "web"}}}, "count": 9}
    result = await world.consume(restart_spec(), raw_spec=raw)
    assert result.phase is Phase.SUCCEEDED
    assert (result.reason, result.saved.ok, result.restarted.ok) == ("Restarted", True, True)
    assert outcomes(result) == {"web-a": Outcome.RESTARTED, "web-b": Outcome.RESTARTED}
    assert all(t.started == NOW and t.finished == NOW for t in result.targets)
    (entry,) = world.journal.entries
    assert (entry.request, entry.spec, entry.received) == (REQUEST, raw, NOW)
    assert [t.outcome for t in entry.targets] == [Outcome.PENDING, Outcome.PENDING]


async def test_save_and_restart_run_concurrently(world: World) -> None:
    save_started, restart_started = asyncio.Event(), asyncio.Event()

    async def save_waits_for_a_restart() -> None:
        save_started.set()
        await restart_started.wait()

    async def restart_waits_for_the_save() -> None:
        restart_started.set()
        await save_started.wait()

    world.journal.on_save = save_waits_for_a_restart
    world.targets.on_restart = restart_waits_for_the_save
    # Done one after the other, either step would wait forever for the other.
    async with asyncio.timeout(2):
        result = await world.consume(restart_spec())
    assert result.phase is Phase.SUCCEEDED
    assert len(world.journal.entries) == 1


async def test_store_down_still_restarts_and_succeeds(world: World) -> None:
    world.journal.error = StoreError("disk full")
    result = await world.consume(restart_spec())
    assert world.targets.restarted == ["web-a", "web-b", "web-c"]
    assert result.saved == StepResult(ok=False, reason="StoreUnavailable", message="disk full")
    assert result.phase is Phase.SUCCEEDED
    assert result.restarted.ok


async def test_failed_restart_fails_the_request_but_is_journalled(world: World) -> None:
    world.targets.failures["web-b"] = PermanentError("Forbidden", "pods is forbidden")
    message = "Forbidden: pods is forbidden"
    result = await world.consume(restart_spec())
    assert outcomes(result) == {
        "web-a": Outcome.RESTARTED,
        "web-b": Outcome.FAILED,
        "web-c": Outcome.RESTARTED,
    }
    (failed,) = (t for t in result.targets if t.name == "web-b")
    assert failed.message == message
    assert failed.finished == NOW
    assert result.phase is Phase.FAILED
    assert (result.reason, result.restarted.ok) == ("PartiallyRestarted", False)
    assert result.saved.ok
    assert len(world.journal.entries) == 1


async def test_all_restarts_failing_is_restart_failed(world: World) -> None:
    for name in ("web-a", "web-b", "web-c"):
        world.targets.failures[name] = PermanentError("Gone", "pod vanished")
    result = await world.consume(restart_spec())
    assert (result.phase, result.reason) == (Phase.FAILED, "RestartFailed")
    assert result.message == "3 failed; first: Pod web-a: Gone: pod vanished"


def _row(name: str, outcome: Outcome) -> TargetResult:
    return TargetResult(
        kind=Kind.POD, name=name, uid=f"uid-{name}", action="Delete", outcome=outcome
    )


async def test_resume_restarts_only_pending_targets_without_finding_again(world: World) -> None:
    prior = Plan(
        targets=(
            _row("web-a", Outcome.RESTARTED),
            _row("web-b", Outcome.PENDING),
            _row("web-c", Outcome.SKIPPED),
            _row("web-d", Outcome.PENDING),
        ),
        description="Pod app=web",
        matched=5,
    )
    result = await world.consume(restart_spec(), prior=prior)
    assert world.targets.find_calls == 0
    assert sorted(world.targets.restarted) == ["web-b", "web-d"]
    assert world.reporter.resumed_plans == [prior]
    assert world.reporter.planned_plans == []
    assert [t.name for t in result.targets] == ["web-a", "web-b", "web-c", "web-d"]
    assert outcomes(result) == {
        "web-a": Outcome.RESTARTED,
        "web-b": Outcome.RESTARTED,
        "web-c": Outcome.SKIPPED,
        "web-d": Outcome.RESTARTED,
    }
    assert result.phase is Phase.SUCCEEDED


async def test_dry_run_restarts_nothing(world: World) -> None:
    result = await world.consume(restart_spec(dryRun=True, waitForReady={"enabled": True}))
    assert world.targets.restarted == []
    assert world.targets.ready_calls == []
    assert set(outcomes(result).values()) == {Outcome.DRY_RUN}
    assert (result.phase, result.reason) == (Phase.SUCCEEDED, "DryRun")
    assert len(world.journal.entries) == 1


async def test_max_concurrent_bounds_restarts_in_flight(world: World) -> None:
    world.targets.candidates = [candidate(f"web-{i}") for i in range(7)]
    world.targets.delay = 0.01
    result = await world.consume(restart_spec(maxConcurrent=2))
    assert world.targets.max_in_flight == 2
    assert len(world.targets.restarted) == 7
    assert result.phase is Phase.SUCCEEDED


async def test_global_limiter_bounds_restarts_in_flight(world: World) -> None:
    world.targets.candidates = [candidate(f"web-{i}") for i in range(7)]
    world.targets.delay = 0.01
    world.limiter.size = 3
    await world.consume(restart_spec(maxConcurrent=10))
    assert world.targets.max_in_flight == 3
    assert len(world.targets.restarted) == 7


async def test_target_not_found_is_rejected_without_saving_or_restarting(world: World) -> None:
    world.targets.find_error = PermanentError("TargetNotFound", "deployment web not found")
    result = await world.consume(restart_spec())
    assert (result.phase, result.reason, result.message) == (
        Phase.FAILED,
        "TargetNotFound",
        "deployment web not found",
    )
    assert result.targets == ()
    assert not result.saved.ok
    assert world.journal.entries == []
    assert world.targets.restarted == []
    assert world.log == ["acknowledge"]
    assert world.reporter.acknowledged == [result]


async def test_wait_for_ready_expects_every_match(world: World) -> None:
    world.targets.candidates.append(candidate("web-p", protected=True))
    spec = restart_spec(count=2, waitForReady={"enabled": True, "timeoutSeconds": 42})
    result = await world.consume(spec)
    (call,) = world.targets.ready_calls
    assert call["expected"] == 4
    assert call["within"] == 42
    assert sorted(call["restarted"]) == sorted(world.targets.restarted)
    assert len(call["restarted"]) == 2
    assert result.ready == world.targets.ready
    assert result.phase is Phase.SUCCEEDED


async def test_wait_for_ready_is_skipped_when_nothing_restarted(world: World) -> None:
    world.denied_namespaces = {REQUEST.namespace}
    result = await world.consume(restart_spec(waitForReady={"enabled": True}))
    assert world.targets.ready_calls == []
    assert result.ready is None
    assert (result.phase, result.reason) == (Phase.SUCCEEDED, "NothingToRestart")
    assert set(outcomes(result).values()) == {Outcome.SKIPPED}


async def test_not_ready_fails_the_request_with_its_reason(world: World) -> None:
    world.targets.ready = StepResult(ok=False, reason="NotReady", message="1 of 3 ready after 5s")
    result = await world.consume(restart_spec(waitForReady={"enabled": True}))
    assert (result.phase, result.reason, result.message) == (
        Phase.FAILED,
        "NotReady",
        "1 of 3 ready after 5s",
    )
    assert result.restarted.ok


async def test_reporter_sees_the_plan_first_and_one_acknowledgement_last(world: World) -> None:
    result = await world.consume(restart_spec())
    assert world.log[0] == "planned"
    assert world.log[-1] == "acknowledge"
    assert world.log.count("acknowledge") == 1
    assert world.reporter.acknowledged == [result]
    (plan,) = world.reporter.planned_plans
    assert [t.outcome for t in plan.targets] == [Outcome.PENDING] * 3
    assert sorted(r.name for r in world.reporter.finished) == ["web-a", "web-b", "web-c"]


async def test_cancellation_hands_back_what_is_done_and_leaves_the_rest_pending(
    world: World,
) -> None:
    """Shutdown cancels the handler after the drain timeout: finished targets are
    recorded, the rest stay Pending for the next instance, and nothing is acknowledged."""
    world.targets.candidates = [candidate("web-a"), candidate("web-b"), candidate("web-c")]
    release, second_started = asyncio.Event(), asyncio.Event()

    async def only_the_first_finishes() -> None:
        if len(world.targets.restarted) > 1:
            second_started.set()
            await release.wait()  # never set: this one is in flight at shutdown

    world.targets.on_restart = only_the_first_finishes
    task = asyncio.create_task(world.consume(restart_spec(maxConcurrent=1)))
    async with asyncio.timeout(2):
        await second_started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert world.reporter.acknowledged == []
    [handed] = world.reporter.handed
    assert [t.outcome for t in handed] == [Outcome.RESTARTED, Outcome.PENDING, Outcome.PENDING]
    assert world.log[-1] == "handed_back"


async def test_a_plan_recorded_first_by_another_instance_is_adopted(world: World) -> None:
    """Two instances planning at once: the loser restarts the winner's targets, not its own."""
    world.targets.candidates = [candidate("web-a"), candidate("web-b"), candidate("web-c")]
    theirs = Plan(
        targets=tuple(
            TargetResult(
                kind=Kind.POD,
                name=name,
                uid=f"uid-{name}",
                action="Delete",
                outcome=Outcome.PENDING,
            )
            for name in ("web-a", "web-c")
        ),
        description="Pod app=web",
        matched=3,
    )
    world.reporter.adopt = theirs

    result = await world.consume(restart_spec(count=1))  # our own plan would hold one

    assert sorted(world.targets.restarted) == ["web-a", "web-c"]
    assert [t.name for t in result.targets] == ["web-a", "web-c"]


async def test_transient_restart_error_hands_back_and_raises_for_a_retry(world: World) -> None:
    """The API outlasting the adapter's retries is not a verdict on the target:
    what finished is recorded, the target stays Pending, the caller retries."""
    world.targets.failures["web-b"] = TransientError("API timed out")

    with pytest.raises(TransientError, match="API timed out"):
        await world.consume(restart_spec())

    [handed] = world.reporter.handed
    assert {t.name: t.outcome for t in handed} == {
        "web-a": Outcome.RESTARTED,
        "web-b": Outcome.PENDING,
        "web-c": Outcome.RESTARTED,
    }
    assert world.reporter.acknowledged == []
    assert len(world.journal.entries) == 1
