"""The PromQL name extraction the metric-name checks rest on, on the shapes the
rules and the dashboard use: aggregations with grouping before and after,
histogram_quantile over buckets, ratios, absent(), time(), `or`, comparisons,
Grafana's variables inside matchers and ranges, offsets and numbers; and the
# TYPE lines' suffix rules on a text a real client library wrote."""

from __future__ import annotations

import prometheus_client as prom

from tests.monitoring import promql


def test_names_in_aggregations_ratios_and_functions() -> None:
    expr = """
      sum by (namespace) (rate(a_total{job="j", phase="Failed"}[15m]))
        / on (namespace) group_left
      sum(rate(b_total{x=~"$namespace"}[$__rate_interval])) by (namespace) > 0.25
    """
    assert promql.metric_names(expr) == {"a_total", "b_total"}


def test_names_in_histogram_quantile_time_absent_and_or() -> None:
    assert promql.metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(d_seconds_bucket{le!="+Inf"}[5m])))'
    ) == {"d_seconds_bucket"}
    assert promql.metric_names("time() - min(ts_seconds > 0) > 9e2") == {"ts_seconds"}
    assert promql.metric_names(
        'max by (namespace) (up_ish{job="j"}) < 1 or absent(up_ish{job="j"})'
    ) == {"up_ish"}
    assert promql.metric_names("x offset 5m unless bool_thing and y @ start()") == {
        "x",
        "bool_thing",
        "y",
    }


def test_a_string_that_looks_like_a_name_is_not_one() -> None:
    assert promql.metric_names('label_replace(m, "dst", "$1", "src", "(not_a_metric)")') == {"m"}


def test_grouping_labels() -> None:
    expr = 'sum by (strategy, outcome) (rate(r_total[5m])) / sum by(le)(x) + y{by="z"}'
    assert promql.grouping_labels(expr) == {"strategy", "outcome", "le"}


def test_dashboard_variables_give_their_expression_not_their_label() -> None:
    board = {
        "panels": [
            {"type": "row", "panels": [{"type": "timeseries", "targets": [{"expr": "a"}]}]},
            {"type": "stat", "targets": [{"expr": "b"}]},
        ],
        "templating": {
            "list": [
                {"type": "query", "query": {"query": 'label_values(c{job="j"}, namespace)'}},
                {"type": "datasource", "query": "prometheus"},
            ]
        },
    }
    assert promql.dashboard_queries(board) == ["a", "b", 'c{job="j"}']


def test_type_lines_give_each_series_name_of_a_family() -> None:
    registry = prom.CollectorRegistry()
    prom.Counter("t_things_total", "c", ["kind"], registry=registry)
    prom.Histogram("t_wait_seconds", "h", registry=registry)
    prom.Summary("t_size_bytes", "s", registry=registry)
    prom.Gauge("t_level", "g", registry=registry)
    text = prom.generate_latest(registry).decode()
    declared = promql.declared_names(text)
    assert {"t_things_total", "t_wait_seconds_bucket", "t_wait_seconds_sum"} <= set(declared)
    assert {"t_wait_seconds_count", "t_size_bytes", "t_size_bytes_count", "t_level"} <= set(
        declared
    )
    assert "t_things" not in declared
    assert "t_wait_seconds" not in declared
    # Every sample line the library wrote is a declared name.
    assert set(promql.samples(text)) <= set(declared)
