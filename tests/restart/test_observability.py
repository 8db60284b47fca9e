"""Observability: Prometheus metrics scraped from a running operator, JSON log lines.

The metrics are read over HTTP the way Prometheus would: from the operator
process's port, or through the metrics Service of the operator deployed in the
cluster; the JSON lines from its own output, the way a log shipper would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

from kubernetes_asyncio.client import ApiClient

from tests.kube import eventually
from tests.operator_process import OperatorProcess, RunningOperator
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]


def scrape(operator: RunningOperator) -> dict[str, float]:
    """Samples of the mandrill_* metrics, keyed by name and labels as exposed."""
    text = operator.metrics()
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(mandrill_[^ ]+) ([0-9.e+-]+)", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


async def test_metrics_count_what_the_operator_did(
    api: ApiClient, make_namespace: MakeNamespace, operator: RunningOperator
) -> None:
    before = scrape(operator)
    ns = await make_namespace("rr-")
    await rr.deploy(api, ns, "web", 2)
    await rr.create_request(api, ns, "counted", {"target": {"kind": "Deployment", "name": "web"}})
    await rr.finished(api, ns, "counted")

    def grew(name: str, by: float) -> bool:
        return scrape(operator).get(name, 0.0) - before.get(name, 0.0) >= by

    async def counted() -> bool:
        return grew('mandrill_restart_requests_acknowledged_total{phase="Succeeded"}', 1) and grew(
            'mandrill_restarts_total{outcome="Restarted",strategy="Delete"}', 2
        )

    await eventually(counted, what="metrics counting the request and its two restarts", within=10)
    after = scrape(operator)
    assert after["mandrill_restart_requests_in_flight"] >= 0
    assert after["mandrill_restart_request_duration_seconds_count"] >= 1


async def test_json_log_lines_name_the_request(
    api: ApiClient, make_namespace: MakeNamespace, solo_operators: Callable[..., OperatorProcess]
) -> None:
    ns = await make_namespace("solo-")
    await rr.deploy(api, ns, "web", 1)
    op = solo_operators(ns, extra_args=("--log-format", "json"))
    uid = await rr.create_request(
        api, ns, "logged", {"target": {"kind": "Deployment", "name": "web"}}
    )
    await rr.finished(api, ns, "logged")

    lines = [line for line in op.log_path.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    about = [r for r in records if r.get("object", {}).get("uid") == uid]
    assert about, "no JSON log line names the request"
    assert all(r["object"]["namespace"] == ns and r["object"]["name"] == "logged" for r in about)
    assert all({"message", "timestamp", "severity"} <= r.keys() for r in records)
