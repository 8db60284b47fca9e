"""The ServiceMonitor and the PrometheusRule pass `kubectl apply --dry-run=server`
against the prometheus-operator's CRDs applied to the test cluster (from its
Go module's zip, by deploy/local/monitoring-crds.sh, server-side), so their
schemas check every field; a ServiceMonitor with a field its schema lacks,
or a rule whose `for` is no duration, is refused (the check checks)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import yaml

from tests import kube
from tests.monitoring import promql
from tests.monitoring.test_dashboard import rendered


def test_the_crds_come_from_the_pinned_module(monitoring_crds: list[pathlib.Path]) -> None:
    version = promql.pinned("PROMETHEUS_OPERATOR_VERSION")
    assert [p.name for p in monitoring_crds] == [
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
    ]
    for path in monitoring_crds:
        assert f"prometheus-operator@{version}" in str(path)
        crd = yaml.safe_load(path.read_text())
        assert crd["metadata"]["annotations"]["operator.prometheus.io/version"] == version[1:]


def dry_run(cluster: kube.Cluster, docs: list[dict[str, Any]]) -> Any:
    return cluster.kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", "-",
        stdin=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip


def test_the_monitoring_objects_pass_server_dry_run(
    cluster: kube.Cluster, monitoring_crds: list[pathlib.Path], operator_rbac: None
) -> None:
    # operator_rbac: the mandrill-system namespace, as an installation makes it.
    applied = cluster.kubectl("apply", "--dry-run=server", "-k", str(promql.MONITORING))
    assert "servicemonitor.monitoring.coreos.com/mandrill created (server dry run)" in (
        applied.stdout
    ) or "servicemonitor.monitoring.coreos.com/mandrill configured (server dry run)" in (
        applied.stdout
    ), applied.stdout
    assert "prometheusrule.monitoring.coreos.com/mandrill" in applied.stdout
    assert "configmap/mandrill-dashboard" in applied.stdout
    # What the server kept is what was sent: no field pruned as unknown.
    docs = [d for d in rendered() if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    result = dry_run(cluster, docs)
    assert result.returncode == 0, result.stderr
    returned = json.loads(result.stdout)
    items = returned["items"] if returned.get("kind") == "List" else [returned]
    for sent, kept in zip(docs, items, strict=True):
        assert kept["spec"] == sent["spec"], f"{sent['kind']}: the server changed its spec"


def test_a_field_the_schema_lacks_is_refused(
    cluster: kube.Cluster, monitoring_crds: list[pathlib.Path], operator_rbac: None
) -> None:
    (monitor,) = [d for d in rendered() if d["kind"] == "ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["portt"] = "metrics"
    refused = dry_run(cluster, [monitor])
    assert refused.returncode != 0
    assert "portt" in refused.stderr
    (rule,) = [d for d in rendered() if d["kind"] == "PrometheusRule"]
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    refused = dry_run(cluster, [rule])
    assert refused.returncode != 0
