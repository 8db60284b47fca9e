"""The RestartRequest status codec as pure data: what each write holds (phase,
counters, targets, timestamps), conditions as Kubernetes means them
(lastTransitionTime kept until the status flips, observedGeneration on each,
Acknowledged last), and what is read back (prior plan, acknowledged, unsaved)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from mandrill.domain import conditions
from mandrill.domain.restart import status
from mandrill.domain.restart.models import (
    Kind,
    Outcome,
    Phase,
    Plan,
    RequestRef,
    StepResult,
    TargetResult,
)
from mandrill.domain.restart.process import FinalOutcome
from tests.unit.fakes import NOW

ACKED_AT = NOW + datetime.timedelta(seconds=5, microseconds=250)
REQUEST = RequestRef(namespace="shop", name="r", uid="u", generation=3)


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


def final(done: FinalOutcome, *, current: list[Any] | None = None) -> status.RestartStatus:
    return status.final(
        phase=done.phase,
        reason=done.reason,
        message=done.message,
        targets=done.targets,
        steps=done.steps,
        finished=done.finished,
        request=REQUEST,
        current=current or [],
        now=ACKED_AT,
    )


def test_set_condition_adds_one_with_every_field() -> None:
    made = conditions.set_condition(
        [],
        type="Saved",
        status=False,
        reason="StoreUnavailable",
        message="disk full",
        generation=4,
        now=ACKED_AT,
    )
    assert made == [
        {
            "type": "Saved",
            "status": "False",
            "reason": "StoreUnavailable",
            "message": "disk full",
            "observedGeneration": 4,
            "lastTransitionTime": "2025-03-01T12:00:05.000250Z",
        }
    ]


def test_set_condition_keeps_the_transition_time_while_the_status_stays() -> None:
    first = conditions.set_condition(
        [],
        type="Acknowledged",
        status=False,
        reason="InProgress",
        message="planned",
        generation=1,
        now=NOW,
    )
    later = NOW + datetime.timedelta(minutes=3)
    again = conditions.set_condition(
        first,
        type="Acknowledged",
        status=False,
        reason="HandedBack",
        message="stopped",
        generation=2,
        now=later,
    )
    assert again[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert (again[0]["reason"], again[0]["observedGeneration"]) == ("HandedBack", 2)
    flipped = conditions.set_condition(
        again,
        type="Acknowledged",
        status=True,
        reason="Acknowledged",
        message="done",
        generation=2,
        now=later,
    )
    assert flipped[0]["lastTransitionTime"] == "2025-03-01T12:03:00.000000Z"


def test_set_condition_leaves_the_others_in_place() -> None:
    current = [
        {
            "type": "Saved",
            "status": "True",
            "reason": "Saved",
            "message": "",
            "observedGeneration": 1,
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        },
        {
            "type": "Acknowledged",
            "status": "True",
            "reason": "Acknowledged",
            "message": "",
            "observedGeneration": 1,
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        },
    ]
    made = conditions.set_condition(
        current,
        type="Restarted",
        status=True,
        reason="Restarted",
        message="",
        generation=1,
        now=NOW,
    )
    assert [c["type"] for c in made] == ["Saved", "Acknowledged", "Restarted"]
    assert made[:2] == current


def test_final_status_without_ready() -> None:
    written = final(outcome())
    conds = written["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conds] == [
        ("Saved", "False", "StoreUnavailable"),
        ("Restarted", "True", "Restarted"),
        ("Acknowledged", "True", "Acknowledged"),
    ]
    assert conds[-1]["message"] == "phase Succeeded"
    assert {c["observedGeneration"] for c in conds} == {3}
    assert {c["lastTransitionTime"] for c in conds} == {"2025-03-01T12:00:05.000250Z"}
    assert (written["phase"], written["reason"], written["message"]) == (
        "Succeeded",
        "Restarted",
        "2 restarted, 1 skipped",
    )
    assert written["observedGeneration"] == 3
    assert (written["restarted"], written["skipped"], written["failed"]) == (2, 1, 2)
    assert [t["name"] for t in written["targets"]] == ["a", "b", "c", "d", "e"]
    assert written["finishedAt"] == "2025-03-01T12:00:00.000000Z"
    assert written["acknowledgedAt"] == "2025-03-01T12:00:05.000250Z"


def test_final_status_with_ready_adds_it_before_acknowledged() -> None:
    ready = StepResult(ok=False, reason="NotReady", message="1 of 3 ready")
    written = final(outcome(ready=ready))
    assert [(c["type"], c["status"]) for c in written["conditions"]] == [
        ("Saved", "False"),
        ("Restarted", "True"),
        ("Ready", "False"),
        ("Acknowledged", "True"),
    ]
    assert written["conditions"][2]["message"] == "1 of 3 ready"


def test_plan_then_acknowledgement_moves_acknowledged_last_with_a_new_transition() -> None:
    plan = Plan(targets=(_row("a", Outcome.PENDING),), description="Pod/a", matched=1)
    planned = status.planned(plan, started=NOW, attempt=1, request=REQUEST, current=[], now=NOW)
    assert planned["phase"] == "Running"
    assert [(c["type"], c["status"], c["reason"]) for c in planned["conditions"]] == [
        ("Acknowledged", "False", "InProgress")
    ]
    assert planned["conditions"][0]["lastTransitionTime"] == "2025-03-01T12:00:00.000000Z"
    written = final(outcome(), current=list(planned["conditions"]))
    assert [c["type"] for c in written["conditions"]] == ["Saved", "Restarted", "Acknowledged"]
    assert written["conditions"][-1]["lastTransitionTime"] == "2025-03-01T12:00:05.000250Z"


def test_hand_back_keeps_acknowledged_false_since_the_plan() -> None:
    plan = Plan(targets=(_row("a", Outcome.PENDING),), description="Pod/a", matched=1)
    planned = status.planned(plan, started=NOW, attempt=1, request=REQUEST, current=[], now=NOW)
    later = NOW + datetime.timedelta(seconds=30)
    handed, message = status.handed_back(
        [_row("a", Outcome.PENDING)],
        why="operator stopped",
        request=REQUEST,
        current=planned["conditions"],
        now=later,
    )
    assert message.startswith("operator stopped: 0 of 1 targets done, 1 pending")
    assert handed["conditions"][0]["reason"] == "HandedBack"
    assert handed["conditions"][0]["lastTransitionTime"] == "2025-03-01T12:00:00.000000Z"


def test_saved_on_retry_flips_only_saved() -> None:
    written = final(outcome())
    later = NOW + datetime.timedelta(minutes=1)
    flipped = status.saved_on_retry(written["conditions"], request=REQUEST, now=later)
    by_type = {c["type"]: c for c in flipped["conditions"]}
    assert (by_type["Saved"]["status"], by_type["Saved"]["reason"]) == ("True", "SavedOnRetry")
    assert by_type["Saved"]["lastTransitionTime"] == "2025-03-01T12:01:00.000000Z"
    assert by_type["Acknowledged"] == written["conditions"][-1]
    assert status.unsaved(written)
    assert not status.unsaved({**written, **flipped})


@pytest.mark.parametrize("phase", ["Running", "Pending"])
def test_prior_plan_is_read_from_an_unfinished_status(phase: str) -> None:
    raw = {
        "phase": phase,
        "target": "Pod app=web",
        "matched": 3,
        "targets": [
            _row("web-a", Outcome.RESTARTED).to_status(),
            _row("web-b", Outcome.PENDING).to_status(),
        ],
    }
    plan = status.prior_plan(raw, description="ignored")
    assert plan is not None
    assert (plan.description, plan.matched) == ("Pod app=web", 3)
    assert [t.name for t in plan.pending] == ["web-b"]


def test_prior_plan_defaults_description_and_matched() -> None:
    raw = {"phase": "Running", "targets": [_row("web-a", Outcome.PENDING).to_status()]}
    plan = status.prior_plan(raw, description="Pod app=web")
    assert plan is not None
    assert (plan.description, plan.matched) == ("Pod app=web", 1)


@pytest.mark.parametrize(
    "raw",
    [{}, {"phase": "Succeeded", "targets": []}, {"phase": "Running"}],
    ids=["empty", "finished", "no-targets"],
)
def test_no_prior_plan(raw: dict[str, Any]) -> None:
    assert status.prior_plan(raw, description="x") is None


@pytest.mark.parametrize(
    "rows",
    [
        [{"kind": "Pod", "name": "a"}],
        [{"kind": "Gadget", "name": "a", "uid": "u", "outcome": "Pending"}],
        "nonsense",
    ],
    ids=["no-uid", "unknown-kind", "not-a-list"],
)
def test_an_unreadable_prior_plan_is_invalid_status(rows: Any) -> None:
    with pytest.raises(status.InvalidStatus, match=r"status\.targets cannot be read"):
        status.prior_plan({"phase": "Running", "targets": rows}, description="x")


@pytest.mark.parametrize(
    ("conds", "expected"),
    [
        (None, False),
        ([{"type": "Acknowledged", "status": "False"}], False),
        ([{"type": "Saved", "status": "True"}, {"type": "Acknowledged", "status": "True"}], True),
    ],
)
def test_is_acknowledged(conds: list[dict[str, str]] | None, expected: bool) -> None:
    assert status.is_acknowledged({"conditions": conds}) is expected
