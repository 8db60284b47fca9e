"""A CrawlJob crawled by the deployed operator, of a site served by a second real pod.

The site is five pages in a ConfigMap, served by Python's http.server in a
pod of the operator's own image and placement, behind a ClusterIP Service:
the operator's fetches go pod to Service to pod, through kube-proxy (the
e2e overlay sets --crawl-allow-private, since a Service IP is private).

Covers: the crawl Succeeds with exact counters (4 pages, one 404) and
`mandrill results --uid`, run inside the operator's pod with its
store, exports exactly the site's edges.
"""

from __future__ import annotations

import secrets
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob.conftest import MakeNamespace, crawljob, finished, kubectl
from tests.kube import eventually
from tests.operator_process import InClusterOperator

PAGES = {
    "index.html": ["a.html", "b.html", "missing.html"],
    "a.html": ["b.html", "c.html"],
    "b.html": ["index.html"],
    "c.html": [],
}
PORT = 8000


def _html(links: list[str]) -> str:
    anchors = "".join(f'<a href="{link}">{link}</a>\n' for link in links)
    return f"<!doctype html><html><body>\n{anchors}</body></html>\n"


def _site_pod(template: dict[str, Any], name: str) -> dict[str, Any]:
    """http.server over the ConfigMap, in the operator's image, where the operator runs."""
    operator = template["spec"]["containers"][0]
    spec = template["spec"]
    placement = {k: spec[k] for k in ("nodeSelector", "tolerations") if k in spec}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            **placement,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "site",
                    "image": operator["image"],
                    "imagePullPolicy": operator.get("imagePullPolicy", "IfNotPresent"),
                    "command": ["python", "-m", "http.server", str(PORT), "--directory", "/site"],
                    "ports": [{"containerPort": PORT, "name": "http"}],
                    "readinessProbe": {
                        "httpGet": {"path": "/index.html", "port": "http"},
                        "periodSeconds": 1,
                    },
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "site", "mountPath": "/site"}],
                }
            ],
            "volumes": [{"name": "site", "configMap": {"name": name}}],
        },
    }


async def _serve_site(api: ApiClient, ns: str, template: dict[str, Any]) -> str:
    """Start the site; returns its base URL (the Service's cluster IP: pods have no DNS here)."""
    core = client.CoreV1Api(api)
    name = "site"
    data = {page: _html(links) for page, links in PAGES.items()}
    await core.create_namespaced_config_map(ns, {"metadata": {"name": name}, "data": data})
    await core.create_namespaced_pod(ns, _site_pod(template, name))
    service = await core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )

    async def ready() -> bool:
        pod = await core.read_namespaced_pod(name, ns)
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    await eventually(ready, what="the site's pod Ready", within=90)
    return f"http://{service.spec.cluster_ip}"


async def test_crawl_of_a_site_in_a_second_pod(
    cluster: kube.Cluster,
    api: ApiClient,
    installed: InClusterOperator,
    pod_template: dict[str, Any],
    make_namespace: MakeNamespace,
) -> None:
    ns = await make_namespace("cj-")
    base = await _serve_site(api, ns, pod_template)
    name = f"site-{secrets.token_hex(2)}"
    spec = {"urls": [f"{base}/index.html"], "maxDepth": 5, "concurrency": 2}
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob(name, spec))
    body = await finished(api, ns, name, within=120)

    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert status["pagesFetched"] == len(PAGES)
    assert status["pagesFailed"] == 1
    assert status["errorsByKind"] == {"http_status": 1}
    expected = {(f"{base}/{page}", f"{base}/{to}") for page, links in PAGES.items() for to in links}
    assert status["results"]["edges"] == len(expected)
    # --uid: the operator's ServiceAccount may list and watch CrawlJobs, not get one.
    exported = installed.exec("mandrill", "results", "--uid", body["metadata"]["uid"])
    lines = exported.stdout.splitlines()
    assert lines[0] == "source_url\tparsed_url"
    edges = [tuple(line.split("\t")) for line in lines[1:]]
    assert len(edges) == len(set(edges)), "an edge was exported twice"
    assert set(edges) == expected
