"""RestartRequest values: parsing a spec (every InvalidSpec path), minAge durations,
label selectors (matching and the API query syntax), status rows of targets and their
idempotency keys."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from mandrill.domain.restart.models import (
    InvalidSpec,
    Kind,
    LabelSelector,
    Outcome,
    RestartSpec,
    Strategy,
    TargetResult,
    parse_duration,
    target_key,
    unique_by_key,
)

WEB = {"matchLabels": {"app": "web"}}


def test_from_spec_reads_every_field() -> None:
    spec = RestartSpec.from_spec(
        {
            "target": {"kind": "Deployment", "selector": WEB},
            "strategy": "RolloutRestart",
            "percent": 40,
            "maxConcurrent": 2,
            "minAge": "1d12h",
            "gracePeriodSeconds": 10,
            "evictionTimeoutSeconds": 30,
            "dryRun": True,
            "waitForReady": {"enabled": True, "timeoutSeconds": 120},
            "ttlSecondsAfterFinished": 600,
        }
    )
    assert spec == RestartSpec(
        kind=Kind.DEPLOYMENT,
        strategy=Strategy.ROLLOUT_RESTART,
        selector=LabelSelector(match_labels={"app": "web"}),
        percent=40,
        max_concurrent=2,
        min_age=datetime.timedelta(days=1, hours=12),
        grace_period_seconds=10,
        eviction_timeout_seconds=30,
        dry_run=True,
        wait_for_ready=True,
        ready_timeout_seconds=120,
        ttl_seconds_after_finished=600,
    )


def test_from_spec_defaults_match_the_crd() -> None:
    spec = RestartSpec.from_spec({"target": {"name": "web-0"}})
    assert (spec.kind, spec.strategy, spec.name, spec.selector) == (
        Kind.POD,
        Strategy.DELETE,
        "web-0",
        None,
    )
    assert (spec.count, spec.percent, spec.min_age) == (None, None, None)
    assert (spec.max_concurrent, spec.eviction_timeout_seconds) == (5, 60)
    assert (spec.dry_run, spec.wait_for_ready, spec.ready_timeout_seconds) == (False, False, 300)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        pytest.param({"target": {"name": "a", "selector": WEB}}, "exactly one", id="name+selector"),
        pytest.param({"target": {"kind": "Pod"}}, "exactly one", id="neither"),
        pytest.param(
            {"target": {"name": "a"}, "count": 1, "percent": 10}, "mutually exclusive", id="both"
        ),
        pytest.param({"target": {"name": "a"}, "count": 0}, "count", id="count-0"),
        pytest.param({"target": {"name": "a"}, "percent": 0}, "percent", id="percent-0"),
        pytest.param({"target": {"name": "a"}, "percent": 101}, "percent", id="percent-101"),
        pytest.param(
            {"target": {"name": "a"}, "strategy": "RolloutRestart"},
            "RolloutRestart",
            id="rollout-pod",
        ),
        pytest.param({"target": {"kind": "Job", "name": "a"}}, "Job", id="bad-kind"),
        pytest.param({"target": {"name": "a"}, "strategy": "Reboot"}, "Reboot", id="bad-strategy"),
        pytest.param({"target": {"selector": {"matchLabels": {}}}}, "empty", id="empty-selector"),
        pytest.param(
            {"target": {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}},
            "In needs values",
            id="in-without-values",
        ),
        pytest.param(
            {"target": {"selector": {"matchExpressions": [{"key": "app", "operator": "Gt"}]}}},
            "selector operator 'Gt' is not In, NotIn, Exists or DoesNotExist",
            id="unknown-operator",
        ),
        pytest.param({"target": {"name": "a"}, "minAge": "3 days"}, "minAge", id="bad-minAge"),
    ],
)
def test_from_spec_rejects(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidSpec, match=match):
        RestartSpec.from_spec(spec)


def test_rollout_restart_is_accepted_for_a_workload() -> None:
    spec = RestartSpec.from_spec(
        {"target": {"kind": "StatefulSet", "name": "db"}, "strategy": "RolloutRestart"}
    )
    assert (spec.kind, spec.strategy) == (Kind.STATEFULSET, Strategy.ROLLOUT_RESTART)


def test_parse_duration() -> None:
    assert parse_duration("3d") == datetime.timedelta(days=3)
    assert parse_duration("12h30m") == datetime.timedelta(hours=12, minutes=30)
    assert parse_duration("90s") == datetime.timedelta(seconds=90)
    assert parse_duration("1d2h3m4s") == datetime.timedelta(days=1, hours=2, minutes=3, seconds=4)


@pytest.mark.parametrize("text", ["", "3", "3w", "1.5h", "3d "])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidSpec, match="not a duration"):
        parse_duration(text)


def _selector(*expressions: dict[str, Any], **labels: str) -> LabelSelector:
    raw: dict[str, Any] = {"matchExpressions": list(expressions)}
    if labels:
        raw["matchLabels"] = labels
    return LabelSelector.from_spec(raw)


def test_selector_to_query_covers_every_operator() -> None:
    selector = _selector(
        {"key": "env", "operator": "In", "values": ["prod", "stage"]},
        {"key": "tier", "operator": "NotIn", "values": ["db"]},
        {"key": "canary", "operator": "Exists"},
        {"key": "legacy", "operator": "DoesNotExist"},
        zone="b",
        app="web",
    )
    assert selector.to_query() == (
        "app=web,zone=b,env in (prod,stage),tier notin (db),canary,!legacy"
    )


def test_target_result_round_trips_through_status() -> None:
    started = datetime.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
    result = TargetResult(
        kind=Kind.POD,
        name="web-a",
        uid="u1",
        action="Evict",
        outcome=Outcome.BLOCKED,
        message="PDB",
        started=started,
        finished=started + datetime.timedelta(seconds=61),
    )
    row = result.to_status()
    assert row["started"] == "2025-03-01T12:00:00.123456Z"
    assert row["outcome"] == "Blocked"
    assert TargetResult.from_status(row) == result


def test_target_result_without_times_has_no_time_fields() -> None:
    pending = TargetResult(
        kind=Kind.POD, name="a", uid="u", action="Delete", outcome=Outcome.PENDING
    )
    row = pending.to_status()
    assert "started" not in row
    assert "finished" not in row
    assert TargetResult.from_status(row) == pending


def test_target_key_is_kind_and_uid() -> None:
    planned = TargetResult(
        kind=Kind.POD, name="web-a", uid="u1", action="Delete", outcome=Outcome.PENDING
    )
    same_pod_later = TargetResult(
        kind=Kind.POD, name="web-a", uid="u1", action="Delete", outcome=Outcome.RESTARTED
    )
    replacement = TargetResult(
        kind=Kind.POD, name="web-a", uid="u2", action="Delete", outcome=Outcome.PENDING
    )
    assert planned.key == same_pod_later.key == target_key(Kind.POD, "u1")
    assert replacement.key != planned.key
    assert target_key(Kind.DEPLOYMENT, "u1") != target_key(Kind.POD, "u1")


def test_unique_by_key_keeps_the_first_in_order() -> None:
    def row(name: str, uid: str, outcome: Outcome) -> TargetResult:
        return TargetResult(kind=Kind.POD, name=name, uid=uid, action="Delete", outcome=outcome)

    a, b = row("a", "u1", Outcome.PENDING), row("b", "u2", Outcome.PENDING)
    again = row("a-renamed", "u1", Outcome.SKIPPED)
    assert unique_by_key([b, a, again, b]) == (b, a)


def test_describe_target() -> None:
    by_name = RestartSpec.from_spec({"target": {"kind": "Deployment", "name": "web"}})
    by_selector = RestartSpec.from_spec({"target": {"selector": WEB}})
    assert by_name.describe_target() == "Deployment/web"
    assert by_selector.describe_target() == "Pod app=web"
