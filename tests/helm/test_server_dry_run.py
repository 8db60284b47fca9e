"""The chart's objects as the real API server takes them: admitted, schema-valid, no warnings.

Covers: for default, namespaced, HA and existingClaim values, everything
`helm template --include-crds` renders passes `kubectl apply --dry-run=server`
(so the API server's validation, the "restricted" Pod Security admission of
mandrill-system, and the CRDs' schemas all accept it) without a warning; so
does every monitoring value on, against the prometheus-operator's CRDs, with
the ServiceMonitor and the dashboard in namespaces of their own, and the
server keeps the ServiceMonitor's and the PrometheusRule's specs as sent (no
field pruned as unknown).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests import kube
from tests.helm import chart
from tests.helm.test_chart import HA_VALUES
from tests.helm.test_monitoring import MONITORING_VALUES

pytestmark = pytest.mark.helm


@pytest.mark.usefixtures("operator_rbac")
@pytest.mark.parametrize("variant", ["default", "namespaced", "ha", "existing-claim"])
def test_rendering_passes_server_side_dry_run(
    cluster: kube.Cluster, watched_namespaces: list[str], variant: str
) -> None:
    values: dict[str, Any] = {
        "default": {},
        "namespaced": {"watchNamespaces": watched_namespaces},
        "ha": HA_VALUES,
        "existing-claim": {"store.sqlite.existingClaim": "mandrill-data"},
    }[variant]
    rendered = chart.template(values).stdout

    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered, check=False)

    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.count("(server dry run)") == len(chart.objects(rendered))


@pytest.mark.usefixtures("operator_rbac", "monitoring_crds")
def test_monitoring_passes_server_side_dry_run_as_rendered(
    cluster: kube.Cluster, watched_namespaces: list[str]
) -> None:
    monitor_namespace, grafana_namespace = watched_namespaces
    rendered = chart.template(
        {
            **MONITORING_VALUES,
            "metrics.serviceMonitor.interval": "1m",
            "metrics.serviceMonitor.scrapeTimeout": "15s",
            "metrics.serviceMonitor.labels": {"release": "prometheus"},
            "metrics.serviceMonitor.namespace": monitor_namespace,
            "metrics.prometheusRule.labels": {"release": "prometheus"},
            "metrics.dashboard.namespace": grafana_namespace,
        }
    ).stdout
    docs = chart.objects(rendered)

    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered, check=False)

    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)
    for line in (
        "servicemonitor.monitoring.coreos.com/mandrill",
        "prometheusrule.monitoring.coreos.com/mandrill",
        "configmap/mandrill-dashboard",
    ):
        assert line in result.stdout, result.stdout
    # What the server kept is what was sent: no field pruned as unknown.
    sent = [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    kept = cluster.kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=yaml.safe_dump_all(sent)
    )
    returned = json.loads(kept.stdout)
    items = returned["items"] if returned.get("kind") == "List" else [returned]
    kept_by_kind = {i["kind"]: i for i in items}
    assert {k: i["metadata"]["namespace"] for k, i in kept_by_kind.items()} == {
        "ServiceMonitor": monitor_namespace,
        "PrometheusRule": chart.NAMESPACE,
    }
    for want in sent:
        got = kept_by_kind[want["kind"]]
        assert got["spec"] == want["spec"], f"{want['kind']}: the server changed its spec"


@pytest.mark.usefixtures("operator_rbac", "monitoring_crds")
def test_the_server_refuses_what_the_crds_refuse(cluster: kube.Cluster) -> None:
    # The check checks: a ServiceMonitor the CRD's schema refuses is refused.
    [monitor] = [d for d in chart.helm_objects(MONITORING_VALUES) if d["kind"] == "ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"

    refused = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(monitor), check=False
    )

    assert refused.returncode != 0
    assert "scheme" in refused.stderr, refused.stderr
