"""The Grafana dashboard and the kustomization that ships it: the JSON loads,
has the panels the issue asks for, every panel has a query and reads the
data-source variable, every query is PromQL promtool parses (Grafana's
variables filled in), ids and positions are sane, and `kubectl kustomize
deploy/monitoring` turns the JSON into the ConfigMap Grafana's sidecar loads
(label grafana_dashboard: "1", a stable name, the JSON unchanged) beside the
ServiceMonitor and the PrometheusRule. No cluster."""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import yaml

from tests import kube
from tests.monitoring import promql

ASKED_FOR = {
    "Request rate",
    "Acknowledgement latency",
    "Restarts by strategy and outcome",
    "In flight",
    "Crawl pages/s",
    "Crawl errors by kind",
}
"""The panels issue 15 names: request rate, acknowledgement latency histogram,
restarts by strategy and outcome, in-flight, crawl pages/s and errors by kind."""


def test_the_dashboard_has_the_panels_asked_for() -> None:
    board = promql.dashboard()
    titles = {p["title"] for p in promql.panels(board)}
    assert titles >= ASKED_FOR
    (latency,) = [p for p in promql.panels(board) if p["title"] == "Acknowledgement latency"]
    assert latency["type"] == "heatmap"
    assert latency["targets"][0]["format"] == "heatmap"
    assert "_bucket" in latency["targets"][0]["expr"]


def test_every_panel_has_a_query_on_the_chosen_data_source() -> None:
    board = promql.dashboard()
    shown = list(promql.panels(board))
    assert len(shown) >= len(ASKED_FOR)
    for panel in shown:
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no query"
        for target in targets:
            assert target["expr"].strip(), f"panel {panel['title']!r}: an empty query"
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert promql.metric_names(target["expr"]), f"{panel['title']!r} reads no metric"
        assert f'job="{promql.JOB}"' in " ".join(t["expr"] for t in targets), panel["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".+"}
"""What Grafana puts in for its variables before the query reaches Prometheus."""


def as_recording_rules(queries: list[str]) -> dict[str, Any]:
    """A rules file with one recording rule per query, so promtool parses each."""
    rules = []
    for i, query in enumerate(queries):
        filled = query
        for variable, value in GRAFANA_VARIABLES.items():
            filled = filled.replace(variable, value)
        assert "$" not in filled, f"a Grafana variable left in {query!r}"
        rules.append({"record": f"dashboard:query_{i}:value", "expr": filled})
    return {"groups": [{"name": "dashboard", "rules": rules}]}


def check(promtool: pathlib.Path, rules: dict[str, Any], tmp_path: pathlib.Path) -> Any:
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run(
        [str(promtool), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_dashboard_query_is_promql_promtool_parses(
    promtool: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    queries = promql.dashboard_queries(promql.dashboard())
    checked = check(promtool, as_recording_rules(queries), tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout
    broken = check(promtool, as_recording_rules([*queries, "sum by (le) (rate(x[1m])"]), tmp_path)
    assert broken.returncode != 0


def test_panel_ids_are_unique_and_the_grid_holds_them() -> None:
    board = promql.dashboard()
    everything: list[dict[str, Any]] = list(board["panels"])
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids))
    assert board["uid"] == "mandrill-operator"
    assert board["title"]
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    # No two panels overlap.
    cells: dict[tuple[int, int], str] = {}
    for panel in everything:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def rendered() -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(kube.kubectl_path()), "kustomize", str(promql.MONITORING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_kustomize_ships_the_dashboard_as_a_sidecar_configmap() -> None:
    docs = rendered()
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [
        ("ConfigMap", "mandrill-dashboard"),
        ("PrometheusRule", "mandrill"),
        ("ServiceMonitor", "mandrill"),
    ]
    assert {d["metadata"]["namespace"] for d in docs} == {"mandrill-system"}
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["mandrill.json"]) == promql.dashboard()
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mandrill"


def test_the_service_monitor_selects_the_metrics_service_and_its_port() -> None:
    service = yaml.safe_load((promql.REPO / "deploy" / "base" / "service.yaml").read_text())
    (monitor,) = [d for d in rendered() if d["kind"] == "ServiceMonitor"]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    assert wanted.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in ports
    # No other Service of the installation carries the labels the monitor selects.
    base = subprocess.run(
        [str(kube.kubectl_path()), "kustomize", str(promql.REPO / "deploy" / "overlays" / "ha")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    services = [
        d
        for d in yaml.safe_load_all(base.stdout)
        if d and d["kind"] == "Service" and wanted.items() <= d["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in services] == [promql.JOB]
