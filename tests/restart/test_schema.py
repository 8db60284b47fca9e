"""The RestartRequest CRD rejects bad requests, naming the field; `kubectl explain` teaches it.

These go through kubectl, as users do, against the real API server's schema
and CEL validation; no operator is involved.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import kube


def _apply(cluster: kube.Cluster, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    body = {
        "apiVersion": "mandrill.dev/v1alpha1",
        "kind": "RestartRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body), check=False)


BY_NAME = {"kind": "Pod", "name": "web-0"}
BY_SELECTOR = {"selector": {"matchLabels": {"app": "web"}}}


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"target": {**BY_NAME, **BY_SELECTOR}},
            "spec.target",
            "exactly one of target.name or target.selector",
        ),
        ({"target": {"kind": "Pod"}}, "spec.target", "exactly one of target.name"),
        ({"target": BY_SELECTOR, "count": 1, "percent": 50}, "spec.count", "mutually exclusive"),
        ({"target": BY_SELECTOR, "percent": 101}, "spec.percent", "less than or equal to 100"),
        ({"target": BY_SELECTOR, "percent": 0}, "spec.percent", "greater than or equal to 1"),
        (
            {"target": BY_NAME, "strategy": "RolloutRestart"},
            "spec.strategy",
            "RolloutRestart needs a workload kind",
        ),
        ({"target": BY_NAME, "strategy": "Nuke"}, "spec.strategy", "Unsupported value"),
        ({"target": BY_NAME, "minAge": "3 days"}, "spec.minAge", "should match"),
        ({"target": BY_NAME, "maxConcurrent": 0}, "spec.maxConcurrent", "greater than or equal"),
        ({"target": {"kind": "Job", "name": "x"}}, "spec.target.kind", "Unsupported value"),
        ({"target": {"selector": {}}}, "spec.target.selector", "empty selector"),
        (
            {"target": {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}},
            "spec.target.selector.matchExpressions[0]",
            "In and NotIn need values",
        ),
        ({}, "spec.target", "Required value"),
    ],
)
def test_invalid_request_is_rejected_naming_the_field(
    cluster: kube.Cluster,
    crds: None,
    namespace: str,
    spec: dict[str, Any],
    field: str,
    words: str,
) -> None:
    result = _apply(cluster, namespace, "bad", spec)

    assert result.returncode != 0, "the API server accepted an invalid RestartRequest"
    assert field in result.stderr, result.stderr
    assert words in result.stderr, result.stderr


def test_spec_is_immutable(cluster: kube.Cluster, crds: None, namespace: str) -> None:
    assert _apply(cluster, namespace, "msg", {"target": BY_NAME}).returncode == 0

    changed = _apply(cluster, namespace, "msg", {"target": BY_NAME, "dryRun": True})

    assert changed.returncode != 0
    assert "spec is immutable" in changed.stderr


def test_defaults_are_filled_in(cluster: kube.Cluster, crds: None, namespace: str) -> None:
    assert _apply(cluster, namespace, "defaults", {"target": {"name": "web-0"}}).returncode == 0

    got = json.loads(cluster.kubectl("-n", namespace, "get", "rr", "defaults", "-o", "json").stdout)

    spec = got["spec"]
    assert spec["target"]["kind"] == "Pod"
    assert spec["strategy"] == "Delete"
    assert spec["maxConcurrent"] == 5
    assert spec["dryRun"] is False
    assert spec["evictionTimeoutSeconds"] == 60


def test_kubectl_explain_teaches_the_api(cluster: kube.Cluster, crds: None) -> None:
    explained = cluster.kubectl("explain", "rr.spec.target").stdout

    assert "exactly one of name or selector" in explained
    assert "selector" in explained
    assert "Pod, or a workload" in explained
    listed = cluster.kubectl("get", "mandrill", "-A").returncode
    assert listed == 0, "the mandrill category lists RestartRequests"
