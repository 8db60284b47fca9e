"""What the monitoring tests read out of deploy/monitoring: the rules as a plain
rules file, the dashboard's queries, the metric names a PromQL expression uses,
and the metric names a /metrics text declares.

The name extraction is lexical, which PromQL allows: once strings, label
matchers, ranges and grouping clauses are gone, every identifier left is a
function or aggregation (followed by a parenthesis), a keyword, or a metric
name. Its own test (test_names.py) pins that down on the shapes our queries use.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "dashboards" / "mandrill.json"
UNIT_TESTS = pathlib.Path(__file__).resolve().parent / "rules_test.yaml"
JOB = "mandrill-metrics"
"""The job label a ServiceMonitor scrape gives: the metrics Service's name."""


def pinned(name: str) -> str:
    """A version from deploy/local/versions.env."""
    for line in (REPO / "deploy" / "local" / "versions.env").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise KeyError(name)


def promtool_path() -> pathlib.Path:
    """promtool as deploy/local/build.sh builds it (cached by version)."""
    bin_dir = pathlib.Path(os.environ.get("MANDRILL_BIN_DIR", REPO / ".cache" / "bin"))
    return bin_dir / f"promtool-{pinned('PROMETHEUS_VERSION')}" / "promtool"


def rule_groups() -> list[dict[str, Any]]:
    """spec.groups of the PrometheusRule: what Prometheus loads as a rules file."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULE.read_text())["spec"]["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def write_rules(path: pathlib.Path, groups: list[dict[str, Any]] | None = None) -> pathlib.Path:
    """A plain rules file of the PrometheusRule's groups (or of `groups`)."""
    path.write_text(yaml.safe_dump({"groups": groups or rule_groups()}, sort_keys=False))
    return path


def write_unit_tests(path: pathlib.Path, rules: pathlib.Path) -> pathlib.Path:
    """rules_test.yaml with rule_files pointing at `rules`."""
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(rules)]
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return path


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data: rows are containers, their nested panels count."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panels({"panels": panel.get("panels", [])})
        else:
            yield panel


LABEL_VALUES = re.compile(r"^\s*label_values\((?P<expr>.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$")


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target and of every query variable."""
    queries = [t["expr"] for p in panels(board) for t in p.get("targets", []) if "expr" in t]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            # Grafana's label_values(expr, label): the expression is PromQL, the label not.
            match = LABEL_VALUES.match(text)
            queries.append(match["expr"] if match else text)
    return queries


STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
MATCHERS = re.compile(r"\{[^{}]*\}")
RANGES = re.compile(r"\[[^\[\]]*\]")
GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.IGNORECASE)
NUMBER = re.compile(r"(?<![a-zA-Z_:0-9])(?:0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)")
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = STRINGS.sub('""', expr)
    text = MATCHERS.sub(" ", text)
    text = RANGES.sub(" ", text)
    text = GROUPING.sub(" ", text)
    text = OFFSET.sub(" ", text)
    text = NUMBER.sub(" ", text)
    names = set()
    for match in IDENT.finditer(text):
        called = text[match.end() :].lstrip().startswith("(")
        if not called and match[0].lower() not in KEYWORDS:
            names.add(match[0])
    return names


def grouping_labels(expr: str) -> set[str]:
    """Label names of every `by (...)` clause."""
    found = set()
    for clause in re.finditer(r"\bby\s*\((?P<labels>[^()]*)\)", STRINGS.sub('""', expr)):
        found |= {label.strip() for label in clause["labels"].split(",") if label.strip()}
    return found


SUFFIXES = {
    "counter": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
    "untyped": ("",),
}
"""The series names a metric family of each type exposes in the text format
(0.0.4) Prometheus scrapes: a counter's TYPE line names its series, _total
included (prometheus_client writes it so, and test_exported checks every
counter's name ends in _total); a histogram's are _bucket, _sum and _count; a
summary's the name itself (its quantiles), _sum and _count. prometheus_client
writes each _created series as a gauge family of its own."""


def declared_names(text: str) -> dict[str, str]:
    """Every series name a /metrics text declares by its # TYPE lines, with its type."""
    names = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            for suffix in SUFFIXES[kind]:
                names[family + suffix] = kind
    return names


SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+\S+")
LABEL = re.compile(r'(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def samples(text: str) -> dict[str, list[set[str]]]:
    """The label names of each sample line, by series name."""
    found: dict[str, list[set[str]]] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = {m["name"] for m in LABEL.finditer(match["labels"] or "")}
            found.setdefault(match["name"], []).append(labels)
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels`; None if none."""
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match["name"] == name and not line.startswith("#"):
            have = {
                m["name"]: m[0].split("=", 1)[1][1:-1]
                for m in LABEL.finditer(match["labels"] or "")
            }
            if labels.items() <= have.items():
                found.append(float(line.rsplit(" ", 1)[1]))
    assert len(found) <= 1, f"{name} {labels}: {len(found)} samples"
    return found[0] if found else None
