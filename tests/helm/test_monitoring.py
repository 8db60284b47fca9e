"""The chart's monitoring values: deploy/monitoring's objects, from one source, for this release.

Covers: the chart's files/monitoring/ are deploy/monitoring's rules and
dashboard byte for byte; with every monitoring value off (the default)
nothing of it renders; with them on, release "mandrill" renders exactly the
objects `kubectl kustomize deploy/monitoring` does (but Helm's labels),
field for field; another release, namespaces, labels, interval and timeout
land where they say, the ServiceMonitor selects that release's metrics
Service and the rules and the dashboard select that Service's job; `helm
lint --strict` passes with them on; malformed values are refused saying why.

No cluster (test_server_dry_run.py has the server's view of the same objects).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from tests.helm import chart
from tests.helm.chart import CHART, REPO, Manifest

pytestmark = pytest.mark.helm

MONITORING = REPO / "deploy" / "monitoring"
COPIES = CHART / "files" / "monitoring"
SOURCES = ("prometheusrule.yaml", "dashboards/mandrill.json")
"""deploy/monitoring's files the chart reads (its ServiceMonitor is a template:
its names and selector are the release's)."""

MONITORING_VALUES: dict[str, Any] = {
    "metrics.serviceMonitor.enabled": True,
    "metrics.prometheusRule.enabled": True,
    "metrics.dashboard.enabled": True,
}
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


def _monitoring(docs: list[Manifest]) -> dict[str, Manifest]:
    found = {d["kind"]: d for d in docs if d["kind"] in MONITORING_KINDS}
    assert len(found) == len([d for d in docs if d["kind"] in MONITORING_KINDS]), "rendered twice"
    return found


def _render(release: str, namespace: str, values: dict[str, Any]) -> list[Manifest]:
    result = chart.helm(
        "template", release, str(CHART), "--namespace", namespace, *chart.set_args(values)
    )
    return chart.objects(result.stdout)


def _with_job(node: Any, job: str) -> Any:
    """`node` with deploy/monitoring's job="mandrill-metrics" made `job`, in every string."""
    if isinstance(node, dict):
        return {k: _with_job(v, job) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_job(v, job) for v in node]
    if isinstance(node, str):
        return node.replace('job="mandrill-metrics"', f'job="{job}"')
    return node


def test_the_chart_reads_deploy_monitorings_files_byte_for_byte() -> None:
    # Copies, as crds/ are: Helm's .Files reads only inside the chart, and a
    # packaged chart must carry the files themselves.
    copied = sorted(str(p.relative_to(COPIES)) for p in COPIES.rglob("*") if p.is_file())

    assert copied == sorted(SOURCES), "files/monitoring must hold exactly the files the chart reads"
    stale = [s for s in SOURCES if (COPIES / s).read_bytes() != (MONITORING / s).read_bytes()]
    assert not stale, (
        f"stale copies {stale}: cp deploy/monitoring/{{{','.join(SOURCES)}}} into {COPIES}"
    )
    assert not any(p.is_symlink() for p in COPIES.rglob("*"))


def test_nothing_of_it_renders_by_default() -> None:
    docs = chart.helm_objects()

    assert not _monitoring(docs)
    assert not {"ServiceMonitor", "PrometheusRule"} & {d["kind"] for d in docs}


def test_release_mandrill_renders_deploy_monitoring_field_for_field() -> None:
    rendered = _monitoring(chart.helm_objects(MONITORING_VALUES))
    kustomized = {d["kind"]: d for d in chart.kustomize_objects("monitoring")}

    assert set(rendered) == set(kustomized) == MONITORING_KINDS
    # Helm's labels, with this release's values, before they are removed.
    for doc in rendered.values():
        assert chart.helm_labels().items() <= doc["metadata"]["labels"].items(), doc["kind"]
    differing = chart.diff_renderings(kustomized.values(), chart.normalise(rendered.values()))

    assert not differing, "chart and deploy/monitoring differ:\n" + "\n".join(differing)
    assert rendered["ConfigMap"]["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_comparison_notices_a_difference() -> None:
    rendered = _monitoring(
        chart.helm_objects({**MONITORING_VALUES, "metrics.serviceMonitor.interval": "1m"})
    )
    differing = chart.diff_renderings(
        chart.kustomize_objects("monitoring"), chart.normalise(rendered.values())
    )

    assert differing == [
        "('ServiceMonitor', 'mandrill-system', 'mandrill') "
        ".spec.endpoints[0].interval: expected '30s', got '1m'"
    ]


def test_another_release_gets_its_names_namespaces_labels_and_job() -> None:
    docs = _render(
        "blue",
        "ops",
        {
            **MONITORING_VALUES,
            "metrics.serviceMonitor.interval": "15s",
            "metrics.serviceMonitor.scrapeTimeout": "5s",
            "metrics.serviceMonitor.labels": {"release": "prometheus"},
            "metrics.serviceMonitor.namespace": "monitoring",
            "metrics.prometheusRule.labels": {"release": "prometheus", "role": "alert-rules"},
            "metrics.dashboard.labels": {"grafana_dashboard": "true", "team": "ops"},
            "metrics.dashboard.namespace": "grafana",
        },
    )
    found = _monitoring(docs)
    monitor, rule, board = found["ServiceMonitor"], found["PrometheusRule"], found["ConfigMap"]
    [service] = [d for d in docs if d["kind"] == "Service"]
    source = {d["kind"]: d for d in chart.kustomize_objects("monitoring")}

    assert chart.key(monitor) == ("ServiceMonitor", "monitoring", "blue-mandrill")
    assert chart.key(rule) == ("PrometheusRule", "ops", "blue-mandrill")
    assert chart.key(board) == ("ConfigMap", "grafana", "blue-mandrill-dashboard")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["labels"]["role"] == "alert-rules"
    # The default grafana_dashboard label takes the value's value.
    assert {"grafana_dashboard": "true", "team": "ops"}.items() <= board["metadata"][
        "labels"
    ].items()
    for doc in found.values():
        assert doc["metadata"]["labels"]["app.kubernetes.io/component"] == "monitoring"
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "blue"
    # It scrapes this release's metrics Service, wherever the ServiceMonitor lives.
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "blue"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {
        **source["ServiceMonitor"]["spec"]["endpoints"][0],
        "interval": "15s",
        "scrapeTimeout": "5s",
    }
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    # The rules and the dashboard select the job that Service's scrape gets: its name.
    job = service["metadata"]["name"]
    assert job == "blue-mandrill-metrics"
    assert rule["spec"] == _with_job(source["PrometheusRule"]["spec"], job)
    for alert in rule["spec"]["groups"][0]["rules"]:
        assert f'job="{job}"' in alert["expr"], alert["alert"]
    dashboard = json.loads(board["data"]["mandrill.json"])
    assert dashboard == _with_job(json.loads(source["ConfigMap"]["data"]["mandrill.json"]), job)
    assert '"mandrill-metrics' not in json.dumps(dashboard) + yaml.safe_dump(rule)


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint_passes_with_monitoring(strict: bool) -> None:
    result = chart.helm(
        "lint", str(CHART), *(["--strict"] if strict else []), *chart.set_args(MONITORING_VALUES),
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"metrics.serviceMonitor.interval": 30},
            "at '/metrics/serviceMonitor/interval': got number, want string",
        ),
        (
            {"metrics.serviceMonitor.interval": "half a minute"},
            "at '/metrics/serviceMonitor/interval': 'half a minute' does not match pattern",
        ),
        (
            {"metrics.serviceMonitor.scrapeTimeout": "10sec"},
            "at '/metrics/serviceMonitor/scrapeTimeout': '10sec' does not match pattern",
        ),
        (
            {
                "metrics.serviceMonitor.interval": "1m",
                "metrics.serviceMonitor.scrapeTimeout": "61s",
            },
            "metrics.serviceMonitor.scrapeTimeout must not exceed metrics.serviceMonitor.interval",
        ),
        (
            {"metrics.serviceMonitor.interval": "0s"},
            "metrics.serviceMonitor.interval must be longer than 0",
        ),
        (
            {"metrics.serviceMonitor.enabled": True, "metrics.service.enabled": False},
            "metrics.serviceMonitor.enabled needs metrics.enabled and metrics.service.enabled",
        ),
        (
            {"metrics.serviceMonitor.enabled": True, "metrics.enabled": False},
            "metrics.serviceMonitor.enabled needs metrics.enabled and metrics.service.enabled",
        ),
        (
            {"metrics.serviceMonitor.enable": True},
            "at '/metrics/serviceMonitor': additional properties 'enable' not allowed",
        ),
        (
            {"metrics.prometheusRule.labels": {"release": 1}},
            "at '/metrics/prometheusRule/labels/release': got number, want string",
        ),
        (
            {"metrics.dashboard.labels": {"grafana dashboard": "1"}},
            "at '/metrics/dashboard/labels': additional properties 'grafana dashboard' not allowed",
        ),
        (
            {"metrics.serviceMonitor.namespace": "Monitoring"},
            "at '/metrics/serviceMonitor/namespace'",
        ),
        ({"metrics.dashboards.enabled": True}, "additional properties 'dashboards' not allowed"),
    ],
    ids=[
        "interval-number", "interval-words", "timeout-unit", "timeout-over-interval",
        "interval-zero", "no-service", "no-metrics", "typo", "label-number", "label-name",
        "namespace", "typo-dashboards",
    ],
)  # fmt: skip
def test_invalid_monitoring_values_fail_saying_why(values: dict[str, Any], message: str) -> None:
    result = chart.template(values, check=False)

    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr


def test_docs_name_every_new_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    table = pathlib.Path(REPO / "docs" / "helm.md").read_text()
    leaves = [
        f"metrics.{part}.{name}"
        for part in ("serviceMonitor", "prometheusRule", "dashboard")
        for name in values["metrics"][part]
    ]

    assert not [leaf for leaf in leaves if f"`{leaf}`" not in table]
