"""The acknowledging status patch as pure data: condition shape (type, status, reason,
message, observedGeneration, lastTransitionTime), which conditions appear, counters."""

from __future__ import annotations

import datetime

from mandrill.adapters.request_status import condition, final_status
from mandrill.domain.restart.models import Kind, Outcome, Phase, StepResult, TargetResult
from mandrill.domain.restart.process import FinalOutcome
from tests.unit.fakes import NOW

ACKED_AT = NOW + datetime.timedelta(seconds=5, microseconds=250)


def _row(name: str, outcome: Outcome) -> TargetResult:
    return TargetResult(
        kind=Kind.POD, name=name, uid=f"uid-{name}", action="Delete", outcome=outcome
    )


def outcome(*, ready: StepResult | None = None) -> FinalOutcome:
    return FinalOutcome(
        phase=Phase.SUCCEEDED,
        reason="Restarted",
        message="2 restarted, 1 skipped",
        targets=(
            _row("a", Outcome.RESTARTED),
            _row("b", Outcome.RESTARTED),
            _row("c", Outcome.SKIPPED),
            _row("d", Outcome.BLOCKED),
            _row("e", Outcome.FAILED),
        ),
        saved=StepResult(ok=False, reason="StoreUnavailable", message="disk full"),
        restarted=StepResult(ok=True, reason="Restarted", message="2 restarted, 1 skipped"),
        ready=ready,
        finished=NOW,
    )


def test_condition_from_a_step() -> None:
    step = StepResult(ok=False, reason="StoreUnavailable", message="disk full")
    assert condition("Saved", step, generation=4, now=ACKED_AT) == {
        "type": "Saved",
        "status": "False",
        "reason": "StoreUnavailable",
        "message": "disk full",
        "observedGeneration": 4,
        "lastTransitionTime": "2025-03-01T12:00:05Z",
    }


def test_condition_from_a_bool_uses_the_type_as_reason() -> None:
    made = condition("Ready", True, generation=1, now=ACKED_AT)
    assert (made["status"], made["reason"], made["message"]) == ("True", "Ready", "")


def test_final_status_without_ready() -> None:
    status = final_status(outcome(), generation=3, now=ACKED_AT)
    conditions = status["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [
        ("Saved", "False", "StoreUnavailable"),
        ("Restarted", "True", "Restarted"),
        ("Acknowledged", "True", "Acknowledged"),
    ]
    assert conditions[-1]["message"] == "phase Succeeded"
    assert {c["observedGeneration"] for c in conditions} == {3}
    assert {c["lastTransitionTime"] for c in conditions} == {"2025-03-01T12:00:05Z"}
    assert (status["phase"], status["reason"], status["message"]) == (
        "Succeeded",
        "Restarted",
        "2 restarted, 1 skipped",
    )
    assert status["observedGeneration"] == 3
    assert (status["restarted"], status["skipped"], status["failed"]) == (2, 1, 2)
    assert [t["name"] for t in status["targets"]] == ["a", "b", "c", "d", "e"]
    assert status["finishedAt"] == "2025-03-01T12:00:00.000000Z"
    assert status["acknowledgedAt"] == "2025-03-01T12:00:05.000250Z"


def test_final_status_with_ready_adds_it_before_acknowledged() -> None:
    ready = StepResult(ok=False, reason="NotReady", message="1 of 3 ready")
    status = final_status(outcome(ready=ready), generation=3, now=ACKED_AT)
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        ("Saved", "False"),
        ("Restarted", "True"),
        ("Ready", "False"),
        ("Acknowledged", "True"),
    ]
    assert status["conditions"][2]["message"] == "1 of 3 ready"
