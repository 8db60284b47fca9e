"""The alerting rules of deploy/monitoring: they pass `promtool check rules` with
every lint, and their PromQL is unit-tested with `promtool test rules` on
synthetic series (rules_test.yaml), each alert both firing and staying silent;
a rule made to never fire, or to always fire, fails those tests (so they test
something). Each alert carries a severity, a summary, a description and a
runbook_url whose entry in docs/monitoring.md says what it means, how to check
and what to do; each selects the job the ServiceMonitor's scrape gives.
promtool is the one deploy/local/build.sh builds from its Go module."""

from __future__ import annotations

import pathlib
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.monitoring import promql
from tests.unit.test_docs import HEADING, anchors

DOCS = promql.REPO / "docs" / "monitoring.md"
ALERTS = [rule["alert"] for rule in promql.alerts()]


def run(promtool: pathlib.Path, *args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    assert ALERTS == [
        "MandrillRestartRequestsFailing",
        "MandrillRestartRequestUnacknowledged",
        "MandrillNoLeader",
        "MandrillJournalSavesFailing",
        "MandrillCrawlErrorRatioHigh",
    ]


def test_the_rules_pass_promtool_check_with_every_lint(
    promtool: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    rules = promql.write_rules(tmp_path / "rules.yaml")
    lint = ("--lint=all", "--lint-fatal")
    checked = run(promtool, "check", "rules", *lint, str(rules), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_promtool_rejects_a_broken_expression(
    promtool: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    groups = promql.rule_groups()
    groups[0]["rules"][0]["expr"] = "sum by (namespace) (rate(x[5m])"
    rules = promql.write_rules(tmp_path / "rules.yaml", groups)
    checked = run(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert checked.returncode != 0


def test_the_unit_tests_pass(promtool: pathlib.Path, tmp_path: pathlib.Path) -> None:
    rules = promql.write_rules(tmp_path / "rules.yaml")
    tests = promql.write_unit_tests(tmp_path / "rules_test.yaml", rules)
    tested = run(promtool, "test", "rules", str(tests), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def cases(alert: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(test group name, its alert_rule_test cases for `alert`), for each group that has any."""
    tests = yaml.safe_load(promql.UNIT_TESTS.read_text())["tests"]
    found = []
    for group in tests:
        mine = [c for c in group.get("alert_rule_test", []) if c["alertname"] == alert]
        if mine:
            found.append((group["name"], mine))
    return found


@pytest.mark.parametrize("alert", ALERTS)
def test_each_alert_is_tested_firing_and_silent(alert: str) -> None:
    groups = cases(alert)
    firing = [name for name, cs in groups if any(c["exp_alerts"] for c in cs)]
    silent = [name for name, cs in groups if all(not c["exp_alerts"] for c in cs)]
    assert firing, f"{alert}: no test where it fires"
    assert silent, f"{alert}: no test where it must stay silent"
    for name, cs in groups:
        if name in firing:
            # Its `for` is tested too: pending first, then firing.
            assert any(not c["exp_alerts"] for c in cs), f"{name}: no check before it fires"


@pytest.mark.parametrize("alert", ALERTS)
@pytest.mark.parametrize(("how", "expr"), [("never", "vector(1) < 0"), ("always", "vector(1)")])
def test_a_rule_that_never_or_always_fires_fails_its_unit_tests(
    promtool: pathlib.Path, tmp_path: pathlib.Path, alert: str, how: str, expr: str
) -> None:
    groups = promql.rule_groups()
    for rule in groups[0]["rules"]:
        if rule["alert"] == alert:
            rule["expr"] = expr
    rules = promql.write_rules(tmp_path / "rules.yaml", groups)
    tests = promql.write_unit_tests(tmp_path / "rules_test.yaml", rules)
    tested = run(promtool, "test", "rules", str(tests), cwd=tmp_path)
    assert tested.returncode != 0, f"{alert} made to fire {how}: its unit tests still pass"
    assert f"alertname: {alert}," in tested.stdout + tested.stderr


def runbook_sections() -> dict[str, str]:
    """docs/monitoring.md's text under each heading, by the heading's anchor."""
    text = DOCS.read_text()
    headings = list(HEADING.finditer(text))
    sections = {}
    for here, after in zip(headings, [*headings[1:], None], strict=True):
        end = after.start() if after is not None else len(text)
        slug = re.sub(r"[^\w\- ]", "", here["title"].lower()).replace(" ", "-")
        sections[slug] = text[here.end() : end]
    return sections


@pytest.mark.parametrize("alert", ALERTS)
def test_each_alert_says_how_bad_what_and_where_its_runbook_is(alert: str) -> None:
    (rule,) = [r for r in promql.alerts() if r["alert"] == alert]
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["for"], "an alert without `for` pages on one bad scrape"
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    assert annotations["runbook_url"] == f"docs/monitoring.md#{alert.lower()}"
    assert alert.lower() in anchors(DOCS)
    section = runbook_sections()[alert.lower()]
    for part in ("**What it means.**", "**How to check.**", "**What to do.**"):
        assert part in section, f"{alert}'s runbook has no {part}"


def test_every_selector_names_the_service_monitors_job() -> None:
    service = yaml.safe_load((promql.REPO / "deploy" / "base" / "service.yaml").read_text())
    assert service["metadata"]["name"] == promql.JOB, "the scrape's job is the Service's name"
    for rule in promql.alerts():
        selectors = re.findall(r"mandrill_[a-z_]+(\{[^}]*\})?", rule["expr"])
        assert selectors, rule["alert"]
        assert all(f'job="{promql.JOB}"' in s for s in selectors), rule["alert"]
