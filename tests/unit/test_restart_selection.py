"""Choosing the targets of a request: all / count / percent (rounded up), a choice that
depends only on the seed, and the skipped ones (deny-listed namespace, protected,
younger than minAge) listed with their reason."""

from __future__ import annotations

import datetime
import random
from collections.abc import Collection, Sequence

import pytest

from mandrill.domain.restart import selection
from mandrill.domain.restart.models import Candidate, Outcome, Plan, RestartSpec
from tests.unit.fakes import NOW, candidate, restart_spec


def pods(n: int) -> list[Candidate]:
    return [candidate(f"web-{i:02d}") for i in range(n)]


def make_plan(
    spec: RestartSpec,
    candidates: Sequence[Candidate],
    *,
    seed: str = "req-uid-1",
    namespace: str = "shop",
    denied: Collection[str] = ("kube-system",),
) -> Plan:
    return selection.plan(
        spec=spec,
        candidates=candidates,
        namespace=namespace,
        denied_namespaces=denied,
        now=NOW,
        seed=seed,
    )


def chosen(plan: Plan) -> list[str]:
    return [t.name for t in plan.targets if t.outcome is Outcome.PENDING]


def test_all_mode_plans_every_match_pending_in_name_order() -> None:
    plan = make_plan(restart_spec(strategy="Evict"), [candidate("b"), candidate("a")])
    assert chosen(plan) == ["a", "b"]
    assert {t.action for t in plan.targets} == {"Evict"}
    assert plan.matched == 2
    assert plan.description == "Pod app=web"


def test_count_picks_that_many() -> None:
    plan = make_plan(restart_spec(count=3), pods(10))
    assert len(chosen(plan)) == 3
    assert len(plan.targets) == 3
    assert plan.matched == 10


def test_count_larger_than_the_matches_picks_them_all() -> None:
    plan = make_plan(restart_spec(count=50), pods(4))
    assert chosen(plan) == [f"web-{i:02d}" for i in range(4)]


@pytest.mark.parametrize(
    ("percent", "matches", "expected"),
    [(30, 5, 2), (1, 3, 1), (10, 30, 3), (100, 7, 7)],
)
def test_percent_rounds_up(percent: int, matches: int, expected: int) -> None:
    plan = make_plan(restart_spec(percent=percent), pods(matches))
    assert len(chosen(plan)) == expected


def test_same_seed_same_choice_and_other_seeds_differ() -> None:
    spec = restart_spec(count=5)
    first = chosen(make_plan(spec, pods(20), seed="uid-x"))
    assert chosen(make_plan(spec, pods(20), seed="uid-x")) == first
    others = {tuple(chosen(make_plan(spec, pods(20), seed=f"uid-{i}"))) for i in range(5)}
    # C(20, 5) = 15504 subsets: five seeds all picking `first` would be a broken seed.
    assert others != {tuple(first)}
    assert len(others) > 1


def test_choice_does_not_depend_on_the_order_candidates_come_in() -> None:
    spec = restart_spec(percent=40, minAge="1h")
    candidates = [*pods(12), candidate("young", age=datetime.timedelta(minutes=5))]
    shuffled = list(candidates)
    random.Random(7).shuffle(shuffled)
    assert make_plan(spec, shuffled) == make_plan(spec, candidates)


def test_deny_listed_namespace_skips_everything() -> None:
    plan = make_plan(restart_spec(), pods(3), namespace="kube-system")
    assert chosen(plan) == []
    assert [t.outcome for t in plan.targets] == [Outcome.SKIPPED] * 3
    assert all("kube-system" in t.message and "deny list" in t.message for t in plan.targets)
    assert plan.matched == 3


def test_protected_targets_are_skipped_and_not_counted_towards_count() -> None:
    candidates = [candidate("a", protected=True), candidate("b"), candidate("c")]
    plan = make_plan(restart_spec(count=2), candidates)
    assert chosen(plan) == ["b", "c"]
    skipped = [t for t in plan.targets if t.outcome is Outcome.SKIPPED]
    assert [(t.name, t.message) for t in skipped] == [
        ("a", "annotated mandrill.dev/protected=true")
    ]
    assert plan.matched == 3


def test_min_age_skips_younger_but_not_exactly_min_age_old() -> None:
    candidates = [
        candidate("young", age=datetime.timedelta(hours=2, minutes=59, seconds=59)),
        candidate("exact", age=datetime.timedelta(hours=3)),
        candidate("old", age=datetime.timedelta(days=2)),
    ]
    plan = make_plan(restart_spec(minAge="3h"), candidates)
    assert chosen(plan) == ["exact", "old"]
    (young,) = (t for t in plan.targets if t.outcome is Outcome.SKIPPED)
    assert young.name == "young"
    assert young.message.startswith("younger than minAge")
    assert "3.0h" in young.message
    assert plan.matched == 3


def test_percent_applies_to_the_eligible_ones() -> None:
    candidates = [*pods(4), *(candidate(f"p{i}", protected=True) for i in range(6))]
    plan = make_plan(restart_spec(percent=50), candidates)
    assert len(chosen(plan)) == 2
    assert len(plan.targets) == 8
    assert plan.matched == 10
