"""The installation itself: probes that pass for real, JSON logs, a locked-down container.

Covers: the rollout finished because the kubelet's startup and readiness
probes reached /healthz (the pod is Ready, started, never restarted);
`kubectl logs` shows one JSON object a line; `kubectl exec` finds the
process running as UID/GID 10001 with a root filesystem that refuses writes,
and the store's volume writable.
"""

from __future__ import annotations

import json
from typing import Any

from tests.operator_process import InClusterOperator
from tests.restart import rr


def _ready_pod(installed: InClusterOperator) -> dict[str, Any]:
    pods = [p for p in installed.pods() if "deletionTimestamp" not in p["metadata"]]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def test_the_rollout_is_ready_through_its_real_probes(installed: InClusterOperator) -> None:
    pod = _ready_pod(installed)
    container = pod["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    (status,) = pod["status"]["containerStatuses"]
    assert status["started"] is True
    assert status["ready"] is True
    assert "running" in status["state"]
    created = rr.parse_time(pod["metadata"]["creationTimestamp"])
    started = rr.parse_time(status["state"]["running"]["startedAt"])
    ready = rr.parse_time(conditions["Ready"]["lastTransitionTime"])
    print(
        f"\npod created to Ready {(ready - created).total_seconds():.0f}s "
        f"(container started to Ready {(ready - started).total_seconds():.0f}s)"
    )


def test_logs_are_json_lines(installed: InClusterOperator) -> None:
    out = installed.kubectl("logs", f"deployment/{installed.deployment}", "--tail=50").stdout
    lines = out.splitlines()
    assert lines, "the operator logged nothing"
    for line in lines:
        record = json.loads(line)
        assert {"message", "timestamp", "severity"} <= record.keys(), line


def test_runs_as_10001_on_a_read_only_root(installed: InClusterOperator) -> None:
    ids = installed.exec("sh", "-c", "id -u; id -g").stdout.split()
    assert ids == ["10001", "10001"]
    refused = installed.exec("sh", "-c", "echo x > /probe", check=False)
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    written = installed.exec(
        "sh", "-c", "echo x > /var/lib/mandrill/.probe && cat /var/lib/mandrill/.probe && "
        "rm /var/lib/mandrill/.probe",
    )  # fmt: skip
    assert written.stdout.strip() == "x"
