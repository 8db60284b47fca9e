"""The RestartSchedule CRD: its template is the RestartRequest spec schema (generated, never
drifting), every field is documented, names do not collide, and the real API server
rejects bad schedules naming the field while the template stays editable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import kube
from tests.schedule import crd as generated

TYPE_META = {"apiVersion", "kind", "metadata"}


def schedule_crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(generated.SCHEDULE.read_text())
    return loaded


def root(doc: dict[str, Any]) -> dict[str, Any]:
    [version] = doc["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def properties(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in (schema.get("properties") or {}).items():
        here = f"{path}.{name}"
        yield here, prop
        yield from properties(prop, here)
        if "items" in prop:
            yield f"{here}[]", prop["items"]
            yield from properties(prop["items"], f"{here}[]")


def test_template_region_is_generated_from_the_request_schema() -> None:
    text = generated.SCHEDULE.read_text()

    assert generated.render(text) == text, "stale: run `python -m tests.schedule.crd`"
    template = root(schedule_crd())["properties"]["spec"]["properties"]["template"]
    request = generated.request_spec_schema()
    assert template["properties"] == request["properties"]
    assert template["required"] == request["required"]
    # Only the immutability rule is left out: a template may change, a request may not.
    rules = [r["rule"] for r in request["x-kubernetes-validations"]]
    assert [r["rule"] for r in template["x-kubernetes-validations"]] == [
        r for r in rules if r != "self == oldSelf"
    ]
    assert "self == oldSelf" in rules


def test_a_changed_request_schema_makes_the_template_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift check above can fail: a field added to the request changes the render."""
    real = generated.request_spec_schema()
    changed = {**real, "properties": {**real["properties"], "newField": {"type": "string"}}}
    monkeypatch.setattr(generated, "request_spec_schema", lambda: changed)
    text = generated.SCHEDULE.read_text()

    assert generated.render(text) != text


def test_every_property_has_a_type_and_a_description() -> None:
    walked = dict(properties(root(schedule_crd()), ""))
    assert ".spec.windows[].end" in walked
    assert ".spec.template.target.selector.matchLabels" in walked
    assert ".status.conditions[].lastTransitionTime" in walked

    untyped = [p for p, s in walked.items() if not s.get("type")]
    undocumented = [
        p
        for p, s in walked.items()
        if not str(s.get("description") or "").strip()
        and not p.endswith("[]")
        and p.lstrip(".") not in TYPE_META
    ]
    assert untyped == []
    assert undocumented == []


def test_names_columns_and_status_subresource() -> None:
    doc = schedule_crd()
    names = doc["spec"]["names"]
    [version] = doc["spec"]["versions"]

    assert names["shortNames"] == ["rsched"]
    assert names["categories"] == ["mandrill"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Schedule", "Zone", "Suspended", "Active", "Last", "Next", "Age"]


def test_short_name_collides_with_nothing_on_the_server(
    cluster: kube.Cluster, schedule_crds: None
) -> None:
    listed = cluster.kubectl("api-resources", "--no-headers").stdout.splitlines()
    short_names = [
        name
        for line in listed
        if len(fields := line.split()) == 5  # NAME SHORTNAMES APIVERSION NAMESPACED KIND
        for name in fields[1].split(",")
    ]

    assert short_names.count("rsched") == 1
    assert "rs" in short_names  # ReplicaSet's: why not rs


def _apply(cluster: kube.Cluster, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    body = {
        "apiVersion": "mandrill.dev/v1alpha1",
        "kind": "RestartSchedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body), check=False)


TEMPLATE = {"target": {"kind": "Deployment", "name": "web"}, "strategy": "RolloutRestart"}
OK = {"schedule": "0 3 * * SUN", "timeZone": "Europe/Berlin", "template": TEMPLATE}


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"schedule": "every sunday"}, "spec.schedule", "should match"),
        ({"schedule": "0 3 * *"}, "spec.schedule", "should match"),
        ({"schedule": "@reboot"}, "spec.schedule", "should match"),
        ({"timeZone": "../../etc/passwd"}, "spec.timeZone", "should match"),
        ({"timeZone": "Europe Berlin"}, "spec.timeZone", "should match"),
        ({"windows": [{"start": "24:00", "end": "04:00"}]}, "spec.windows[0].start",
         "should match"),
        ({"windows": [{"start": "04:00", "end": "04:00"}]}, "spec.windows[0]", "must differ"),
        ({"windows": [{"days": ["Funday"], "start": "01:00", "end": "02:00"}]},
         "spec.windows[0].days[0]", "Unsupported value"),
        ({"exclusions": [{"start": "12-18", "end": "2026-12-31"}]}, "spec.exclusions[0]",
         "both ends"),
        ({"exclusions": [{"start": "2026-12-31", "end": "2026-12-01"}]}, "spec.exclusions[0]",
         "must not end before it starts"),
        ({"exclusions": [{"start": "13-01"}]}, "spec.exclusions[0].start", "should match"),
        ({"concurrencyPolicy": "Replace"}, "spec.concurrencyPolicy", "Unsupported value"),
        ({"startingDeadlineSeconds": 0}, "spec.startingDeadlineSeconds", "greater than or equal"),
        ({"template": {**TEMPLATE, "count": 1, "percent": 5}}, "spec.template.count",
         "mutually exclusive"),
        ({"template": {"target": {"kind": "Pod", "name": "p"}, "strategy": "RolloutRestart"}},
         "spec.template.strategy", "RolloutRestart needs a workload kind"),
        ({"template": None}, "spec.template", "Required value"),
    ],
)  # fmt: skip
def test_invalid_schedule_is_rejected_naming_the_field(
    cluster: kube.Cluster,
    schedule_crds: None,
    namespace: str,
    change: dict[str, Any],
    field: str,
    words: str,
) -> None:
    spec = {k: v for k, v in {**OK, **change}.items() if v is not None}

    result = _apply(cluster, namespace, "bad", spec)

    assert result.returncode != 0, "the API server accepted an invalid RestartSchedule"
    assert field in result.stderr, result.stderr
    assert words in result.stderr, result.stderr


def test_valid_ones_are_accepted_with_defaults_and_the_template_may_change(
    cluster: kube.Cluster, schedule_crds: None, namespace: str
) -> None:
    nightly = {
        **OK,
        "schedule": "@daily",
        "windows": [{"days": ["Fri", "Sat"], "start": "22:00", "end": "04:00"}],
        "exclusions": [{"start": "12-20", "end": "01-06"}, {"start": "2027-04-01"}],
    }
    assert _apply(cluster, namespace, "nightly", nightly).returncode == 0
    changed = {**nightly, "template": {**TEMPLATE, "dryRun": True}}

    again = _apply(cluster, namespace, "nightly", changed)

    assert again.returncode == 0, again.stderr
    got = json.loads(
        cluster.kubectl("-n", namespace, "get", "rsched", "nightly", "-o", "json").stdout
    )
    spec = got["spec"]
    assert spec["template"]["dryRun"] is True
    assert spec["template"]["maxConcurrent"] == 5  # the request schema's defaults, too
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is False
    assert (spec["successfulRunsHistoryLimit"], spec["failedRunsHistoryLimit"]) == (3, 1)
    every_five = {"schedule": "*/5 * * * *", "template": TEMPLATE}
    assert _apply(cluster, namespace, "utc", every_five).returncode == 0
    utc = json.loads(cluster.kubectl("-n", namespace, "get", "rsched", "utc", "-o", "json").stdout)
    assert utc["spec"]["timeZone"] == "UTC"


def test_kubectl_explain_teaches_the_api(cluster: kube.Cluster, schedule_crds: None) -> None:
    schedule = cluster.kubectl("explain", "rsched.spec.schedule").stdout
    windows = cluster.kubectl("explain", "rsched.spec.windows.end").stdout
    template = cluster.kubectl("explain", "rsched.spec.template.target").stdout

    assert "five-field cron expression" in schedule
    assert "Debian cron" in schedule
    assert "closes the next day" in windows
    assert "exactly one of name or selector" in template
