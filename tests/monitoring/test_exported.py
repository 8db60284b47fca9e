"""Every metric the rules and the dashboard name is one the operator exports,
and the two the alerts added behave so in a running operator.

A real `mandrill run` (as the operator's ServiceAccount) handles a
RestartRequest and a CrawlJob of a local site with a dead link, so the
labelled series exist; its /metrics is scraped over HTTP as Prometheus
scrapes it. The names it declares come from its # TYPE lines with the text
format's suffix rules (promql.declared_names), checked against the sample
lines it wrote; the labels the dashboard and the rules group by are on the
samples of the metrics they group, and `promtool check metrics` finds nothing
to say about the exposition (naming, units, suffixes). A request held by an eviction that a
PodDisruptionBudget blocks shows as the oldest unacknowledged one (its
creation time) until it ends Failed, when the gauge goes back to 0 and the
Failed phase and the journal save are counted.
"""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
from collections.abc import Awaitable, Callable

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob import site
from tests.monitoring import promql
from tests.operator_process import OperatorProcess
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]
SCRAPE_LABELS = {"job", "namespace", "pod", "instance", "service", "endpoint", "le"}
"""Labels the scrape adds (or histogram buckets carry), not the operator's own."""
LABELLED = {
    "mandrill_restarts_total": {"strategy", "outcome"},
    "mandrill_restart_requests_acknowledged_total": {"phase"},
    "mandrill_journal_saves_total": {"outcome"},
    "mandrill_crawl_pages_total": {"outcome"},
    "mandrill_crawl_errors_total": {"kind"},
}
"""Series the request and the crawl must have made, with their labels."""


def referenced() -> dict[str, set[str]]:
    """Each PromQL expression of the rules and the dashboard: its metric names."""
    exprs = [rule["expr"] for rule in promql.alerts()]
    exprs += promql.dashboard_queries(promql.dashboard())
    return {expr: promql.metric_names(expr) for expr in exprs}


async def crawl_a_site_with_a_dead_link(api: ApiClient, namespace: str) -> None:
    async with site.serve(size=8) as served:
        body = {
            "apiVersion": "mandrill.dev/v1alpha1",
            "kind": "CrawlJob",
            "metadata": {"name": "monitored"},
            "spec": {"urls": [served.page_url(0)], "maxDepth": 2},
        }
        custom = client.CustomObjectsApi(api)
        await custom.create_namespaced_custom_object(
            "mandrill.dev", "v1alpha1", namespace, "crawljobs", body
        )

        async def get() -> dict[str, object]:
            got: dict[str, object] = await custom.get_namespaced_custom_object(
                "mandrill.dev", "v1alpha1", namespace, "crawljobs", "monitored"
            )
            return got

        def over(job: dict[str, object] | None) -> bool:
            phase = ((job or {}).get("status") or {}).get("phase")  # type: ignore[attr-defined]
            return phase in ("Succeeded", "Failed")

        job = await kube.object_until(get, over, what="CrawlJob monitored finished", within=60)
        assert job["status"]["phase"] == "Succeeded", job["status"]
        assert served.page_requests() > 0, "the crawl reached the site"


async def test_every_metric_named_is_exported(
    api: ApiClient,
    make_namespace: MakeNamespace,
    monitored_operator: OperatorProcess,
    promtool: pathlib.Path,
) -> None:
    ns = await make_namespace("mon-")
    await rr.deploy(api, ns, "web", 1)
    await rr.create_request(api, ns, "monitored", {"target": {"kind": "Deployment", "name": "web"}})
    await rr.finished(api, ns, "monitored")
    await crawl_a_site_with_a_dead_link(api, ns)

    text = monitored_operator.metrics()
    linted = await asyncio.to_thread(
        subprocess.run,
        [str(promtool), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    declared = promql.declared_names(text)
    seen = promql.samples(text)
    # The suffix rules describe what the operator really writes.
    assert set(seen) <= set(declared), sorted(set(seen) - set(declared))
    counters = [name for name, kind in declared.items() if kind == "counter"]
    assert counters
    assert all(name.endswith("_total") for name in counters)

    for name, labels in LABELLED.items():
        assert name in seen, f"{name}: no sample after a RestartRequest and a CrawlJob"
        assert any(labels <= s for s in seen[name]), f"{name}: not labelled {labels}"
    assert any(s == {"kind"} for s in seen["mandrill_crawl_errors_total"])

    missing = {
        expr: sorted(names - set(declared))
        for expr, names in referenced().items()
        if names - set(declared)
    }
    assert not missing, f"names the operator does not export: {missing}"

    # Every label a query groups by is on the samples of the metrics it reads
    # (where the operator wrote samples; some exist only after their events).
    for expr, names in referenced().items():
        wanted = promql.grouping_labels(expr) - SCRAPE_LABELS
        labelled = [s for name in names for s in seen.get(name, [])]
        if wanted and labelled:
            assert any(wanted <= s for s in labelled), f"{expr}: no sample has {wanted}"


def test_the_names_checked_cover_the_rules_and_the_dashboard() -> None:
    names = set().union(*referenced().values())
    assert all(name.startswith("mandrill_") for name in names), names
    # The five alerts' metrics, and the dashboard's histograms by their buckets.
    assert {
        "mandrill_restart_requests_acknowledged_total",
        "mandrill_restart_requests_oldest_unacknowledged_timestamp_seconds",
        "mandrill_leader",
        "mandrill_journal_saves_total",
        "mandrill_crawl_pages_total",
        "mandrill_restart_request_duration_seconds_bucket",
        "mandrill_crawl_fetch_seconds_bucket",
    } <= names


async def test_a_blocked_request_is_the_oldest_unacknowledged_until_it_fails(
    api: ApiClient, make_namespace: MakeNamespace, monitored_operator: OperatorProcess
) -> None:
    ns = await make_namespace("mon-")
    pods = await rr.deploy(api, ns, "web", 1)
    await client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        ns,
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=1, selector=client.V1LabelSelector(match_labels={"app": "web"})
            ),
        ),
    )

    async def budget_ready() -> bool:
        pdb = await client.PolicyV1Api(api).read_namespaced_pod_disruption_budget("web", ns)
        return bool(pdb.status and pdb.status.expected_pods == 1)

    await kube.eventually(budget_ready, what="PDB status computed")
    before = monitored_operator.metrics()
    failed_before = promql.value(
        before, "mandrill_restart_requests_acknowledged_total", phase="Failed"
    )
    saved_before = promql.value(before, "mandrill_journal_saves_total", outcome="saved")
    await rr.create_request(
        api,
        ns,
        "held",
        {
            "target": {"kind": "Pod", "name": pods[0].metadata.name},
            "strategy": "Evict",
            "evictionTimeoutSeconds": 8,
        },
    )
    created = (await rr.get_request(api, ns, "held"))["metadata"]["creationTimestamp"]
    oldest = "mandrill_restart_requests_oldest_unacknowledged_timestamp_seconds"

    async def held() -> float | None:
        seen = promql.value(monitored_operator.metrics(), oldest)
        return seen if seen else None

    assert await kube.eventually(held, what=f"{oldest} set", within=6) == (
        rr.parse_time(created).timestamp()
    )
    body = await rr.finished(api, ns, "held")
    assert body["status"]["phase"] == "Failed"

    async def counted() -> bool:
        # The acknowledgement is patched first, then counted and let go of.
        after = monitored_operator.metrics()
        failed = promql.value(after, "mandrill_restart_requests_acknowledged_total", phase="Failed")
        saved = promql.value(after, "mandrill_journal_saves_total", outcome="saved")
        return (
            promql.value(after, oldest) == 0
            and failed == (failed_before or 0) + 1
            and (saved or 0) >= (saved_before or 0) + 1
        )

    await kube.eventually(counted, what="the gauge back to 0, Failed and the save counted")
