"""CrawlJob `spec.workers: 3` end to end: worker pods the operator makes, on the real node.

The operator runs as deploy/local/ha installs it (PostgreSQL, the session's
server reached through `node.sh expose`). The site is 10,000 pages on three
host names (site.py): one pod of the operator's image behind three ClusterIP
Services, whose IPs are the host names (pods have no DNS here). A CrawlJob
with workers: 3, concurrency 2 and perHostConcurrency 2 (one host per
worker) makes the operator create its Indexed Job; its three pods crawl on
the real node. When the store shows 30% of the pages done, one worker that
holds a host is killed with SIGKILL from the host (`node.sh kill`: no
SIGTERM, so it hands nothing back); the Job starts a new pod for its index,
and the dead worker's URLs wait for their leases (30 s) to run out.

Covers: the worker pods run on the real node, and the killed one ended by
SIGKILL (exit 137); the CrawlJob Succeeded with every page fetched, none
failed, the status's workers (3 desired, 3 succeeded, the 1 killed failed)
and counters; the edges `mandrill results` exports in the operator's pod
equal the generator's (what a one-process crawl of the site finds); at the
server, every page fetched, and fetched twice only if the killed worker had
fetched it and not yet stored its outcome (exactly those: the leases make
that the only way, and a test of the count); never more than 2 requests in
flight at a host, measured at the server; the store's password in no
worker's log; deleting the CrawlJob removes the Job and its pods. Prints the
crawl's figures.
"""

from __future__ import annotations

import asyncio
import collections
import json
import pathlib
import secrets
import time
from typing import Any

import attrs
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob.conftest import MakeNamespace, crawljob, finished, get_job, kubectl
from tests.kube import eventually
from tests.operator_process import InClusterOperator
from tests.postgres import PostgresServer
from tests.workers_node import conftest, site

HOSTS = 3
WORKERS = 3
PORT = 8000
KILL_AT = 0.3
"""The share of the pages done in the store when a worker is killed."""
MAX_DEPTH = 20
"""The schema's most: the site's pages are 9 hops from /p/0 at most; a crawl that meets a
page by a longer path first must still reach what lies behind it."""
UID_LABEL = "mandrill.dev/crawljob-uid"
SITE_SCRIPT = pathlib.Path(site.__file__)


def _site_pod(template: dict[str, Any], hosts: list[str]) -> dict[str, Any]:
    """site.py from its ConfigMap, in the operator's image, where the operator runs."""
    operator = template["spec"]["containers"][0]
    spec = template["spec"]
    placement = {k: spec[k] for k in ("nodeSelector", "tolerations") if k in spec}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "site", "labels": {"app": "site"}},
        "spec": {
            **placement,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "site",
                    "image": operator["image"],
                    "imagePullPolicy": operator.get("imagePullPolicy", "IfNotPresent"),
                    "command": ["python", "/site/site.py", "--hosts", ",".join(hosts)],
                    "ports": [{"containerPort": PORT, "name": "http"}],
                    "readinessProbe": {"httpGet": {"path": "/_stats", "port": "http"}},
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "site", "mountPath": "/site"}],
                }
            ],
            "volumes": [{"name": "site", "configMap": {"name": "site"}}],
        },
    }


async def _serve_site(api: ApiClient, ns: str, template: dict[str, Any]) -> list[str]:
    """The site's pod behind HOSTS Services; returns their cluster IPs, the host names."""
    core = client.CoreV1Api(api)
    hosts = []
    for h in range(HOSTS):
        service = await core.create_namespaced_service(
            ns,
            {
                "metadata": {"name": f"site-{h}"},
                "spec": {"selector": {"app": "site"}, "ports": [{"port": 80, "targetPort": PORT}]},
            },
        )
        hosts.append(service.spec.cluster_ip)
    script = await asyncio.to_thread(SITE_SCRIPT.read_text)
    config = {"metadata": {"name": "site"}, "data": {"site.py": script}}
    await core.create_namespaced_config_map(ns, config)
    await core.create_namespaced_pod(ns, _site_pod(template, hosts))

    async def ready() -> bool:
        pod = await core.read_namespaced_pod("site", ns)
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    await eventually(ready, what="the site's pod Ready", within=90)
    return hosts


def _stats(cluster: kube.Cluster, ns: str) -> dict[str, Any]:
    """The site's counts, through the API server's service proxy."""
    path = f"/api/v1/namespaces/{ns}/services/site-0:80/proxy/_stats"
    stats: dict[str, Any] = json.loads(cluster.kubectl("get", "--raw", path).stdout)
    return stats


def _fetched(stats: dict[str, Any]) -> collections.Counter[str]:
    """Requests per absolute URL, robots.txt left out."""
    counts: collections.Counter[str] = collections.Counter()
    for host, paths in stats["asked"].items():
        for path, n in paths.items():
            if path != "/robots.txt":
                counts[f"http://{host}{path}"] += n
    return counts


@attrs.frozen
class Frontier:
    """The crawl's rows in the shared store, read as the test's own psql."""

    postgres: PostgresServer
    database: str
    uid: str

    def _rows(self, sql: str) -> list[list[str]]:
        out = self.postgres.psql(sql.replace("$uid", f"'{self.uid}'"), self.database)
        return [line.split("|") for line in out.splitlines() if line]

    def done(self) -> int:
        sql = "SELECT count(*) FROM crawl_frontier WHERE job_uid = $uid AND state = 'done'"
        return int(self._rows(sql)[0][0])

    def busiest(self) -> str:
        """Of the workers holding a host now, one with the most URLs leased."""
        sql = (
            "SELECT h.holder FROM crawl_host_leases h LEFT JOIN crawl_frontier f"
            " ON f.job_uid = h.job_uid AND f.leased_by = h.holder AND f.state = 'pending'"
            " WHERE h.job_uid = $uid AND h.holder IS NOT NULL"
            " GROUP BY h.holder ORDER BY count(f.url) DESC, h.holder LIMIT 1"
        )
        rows = self._rows(sql)
        assert rows, "no worker holds a host"
        return rows[0][0]

    def hosts(self, holder: str) -> set[str]:
        """The hosts `holder` has leased."""
        sql = f"SELECT host FROM crawl_host_leases WHERE job_uid = $uid AND holder = '{holder}'"
        return {row[0] for row in self._rows(sql)}

    def leased(self, holder: str) -> set[str]:
        """The URLs `holder` leased and has no outcome stored for."""
        sql = (
            "SELECT url FROM crawl_frontier WHERE job_uid = $uid AND state = 'pending'"
            f" AND leased_by = '{holder}'"
        )
        return {row[0] for row in self._rows(sql)}


def _worker_pods(installed: InClusterOperator, uid: str) -> list[dict[str, Any]]:
    out = installed.kubectl("get", "pods", "-l", f"{UID_LABEL}={uid}", "-o", "json")
    pods: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return pods


def _summary(installed: InClusterOperator, pod: str) -> dict[str, Any]:
    """A finished worker's JSON summary, its last line on stdout (`kubectl logs` has its
    stderr's log lines too, in the order they came)."""
    out = installed.kubectl("logs", pod, "--tail=20")
    for line in reversed(out.stdout.splitlines()):
        if line.startswith('{"status"'):
            summary: dict[str, Any] = json.loads(line)
            return summary
    raise AssertionError(f"no summary in the log of {pod}: {out.stdout}")


def _exit_code(pod: dict[str, Any]) -> int | None:
    for status in pod["status"].get("containerStatuses") or ():
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return int(terminated["exitCode"])
    return None


@attrs.frozen
class Kill:
    """One worker SIGKILLed mid-crawl, and what it left."""

    pod: str
    holder: str
    hosts: set[str]
    """The hosts it held: no one else crawls them until its leases run out."""
    leased: set[str]
    """The URLs it had leased and stored no outcome for."""
    unstored: set[str]
    """Those of them it had fetched (the server counted them) and not stored."""
    after: float
    """Seconds from the CrawlJob's apply."""
    rate: float
    """Requests per second at the server from the first to the kill: three workers'."""


async def _kill_a_worker(
    cluster: kube.Cluster, installed: InClusterOperator, frontier: Frontier, ns: str
) -> Kill:
    """SIGKILL a worker that holds a host, once KILL_AT of the pages are done."""

    async def far_enough() -> bool:
        return await asyncio.to_thread(frontier.done) >= KILL_AT * site.PAGES

    await eventually(far_enough, what=f"{KILL_AT:.0%} of the pages done", within=120, interval=0.5)
    holder = await asyncio.to_thread(frontier.busiest)
    # Its pod by its hostname (`<job>-<index>`), the worker id before the holder's `/`.
    running = {p["spec"].get("hostname"): p for p in _worker_pods(installed, frontier.uid)}
    pod = running[holder.split("/", 1)[0]]["metadata"]["name"]
    await asyncio.to_thread(conftest.kill, cluster, installed.namespace, pod)
    killed = time.monotonic()
    # What its session had sent is committed (or not) a moment later.
    await asyncio.sleep(1.0)
    hosts = await asyncio.to_thread(frontier.hosts, holder)
    leased = await asyncio.to_thread(frontier.leased, holder)
    # No one else may fetch these before their leases run out, so the server's count of
    # them now is the dead worker's: fetched, never stored. (It may hold none at the
    # instant of the kill, between a batch's outcomes and the next lease; its host it holds
    # throughout, and the others must take that over.)
    stats = await asyncio.to_thread(_stats, cluster, ns)
    then = _fetched(stats)
    assert hosts, f"{pod} held no host when it was killed"
    return Kill(
        pod=pod,
        holder=holder,
        hosts=hosts,
        leased=leased,
        unstored={u for u in leased if then[u] > 0},
        after=killed,
        rate=then.total() / (stats["last"] - stats["first"]),
    )


async def test_three_worker_pods_crawl_10000_pages_and_one_is_killed(
    cluster: kube.Cluster,
    api: ApiClient,
    installed: InClusterOperator,
    shared_store: str,
    node: dict[str, str],
    pod_template: dict[str, Any],
    postgres: PostgresServer,
    make_namespace: MakeNamespace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ns = await make_namespace("cjw-")
    hosts = await _serve_site(api, ns, pod_template)
    expected = site.edges(hosts)
    assert max(site.depths()) < MAX_DEPTH  # every page is within reach
    name = f"site-{secrets.token_hex(2)}"
    spec = {
        "urls": [site.url(hosts, 0)],
        "workers": WORKERS,
        "maxDepth": MAX_DEPTH,
        "concurrency": 2,
        "perHostConcurrency": 2,
    }
    start = time.monotonic()
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob(name, spec))
    body = await kube.object_until(
        lambda: get_job(api, ns, name), lambda b: b is not None, what="the CrawlJob"
    )
    uid = body["metadata"]["uid"]
    kill = await _kill_a_worker(cluster, installed, Frontier(postgres, shared_store, uid), ns)
    body = await finished(api, ns, name, within=300)
    elapsed = time.monotonic() - start
    stats = await asyncio.to_thread(_stats, cluster, ns)
    fetched = _fetched(stats)

    status = body["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["pagesFetched"], status["pagesFailed"]) == (site.PAGES, 0)
    assert status["results"]["edges"] == len(expected)
    workers = status["workers"]
    assert (workers["desired"], workers["succeeded"], workers["failed"]) == (WORKERS, WORKERS, 1)
    pods = _worker_pods(installed, uid)
    assert {p["spec"]["nodeName"] for p in pods} == {node["NODE_NAME"]}
    assert len(pods) == WORKERS + 1  # the killed one and its index's replacement
    codes = {p["metadata"]["name"]: _exit_code(p) for p in pods}
    assert codes.pop(kill.pod) == 137, "the worker did not die of SIGKILL"
    assert set(codes.values()) == {0}, codes
    summaries = {p: await asyncio.to_thread(_summary, installed, p) for p in codes}
    for pod in [kill.pod, *codes]:
        log = await asyncio.to_thread(installed.kubectl, "logs", pod)
        assert postgres.password not in log.stdout, f"the store's password in {pod}'s log"
    exported = await asyncio.to_thread(installed.exec, "mandrill", "results", "--uid", uid)
    lines = exported.stdout.splitlines()
    assert lines[0] == "source_url\tparsed_url"
    edges = [tuple(line.split("\t")) for line in lines[1:]]
    assert len(edges) == len(set(edges)), "an edge was exported twice"
    assert set(edges) == expected
    assert set(fetched) == {site.url(hosts, i) for i in range(site.PAGES)}  # 0 lost
    twice = {u for u, n in fetched.items() if n > 1}
    assert max(fetched.values()) <= 2
    assert twice == kill.unstored, (sorted(twice - kill.unstored), sorted(kill.unstored - twice))
    assert max(stats["mostInFlight"].values()) <= 2, stats["mostInFlight"]

    served = stats["last"] - stats["first"]
    stored = sum(s["stored"] for s in summaries.values())
    with capsys.disabled():
        print(
            f"\n[workers_node] {site.PAGES} pages, {len(expected)} edges, {WORKERS} worker pods:"
            f" {elapsed:.1f} s from apply to Succeeded ({site.PAGES / elapsed:.0f} pages/s),"
            f" {served:.1f} s from the first request to the last at the server"
            f" ({fetched.total() / served:.0f} requests/s; {kill.rate:.0f}/s before the kill);"
            f" the kill at {kill.after - start:.1f} s ({KILL_AT:.0%} done): {kill.pod} held"
            f" {len(kill.hosts)} host(s) and {len(kill.leased)} URLs, {len(kill.unstored)}"
            " fetched and not stored, so fetched"
            f" twice; most requests in flight per host {sorted(stats['mostInFlight'].values())};"
            f" outcomes stored by the others {sorted(s['stored'] for s in summaries.values())},"
            f" {sum(s['transactions'] for s in summaries.values()) / stored:.2f}"
            " store transactions per outcome they stored"
        )

    await kubectl(cluster, "delete", "-n", ns, "crawljob", name, "--wait=false")

    def gone() -> bool:
        jobs = installed.kubectl("get", "jobs", "-l", f"{UID_LABEL}={uid}", "-o", "name")
        return not jobs.stdout.strip() and not _worker_pods(installed, uid)

    await eventually(
        lambda: asyncio.to_thread(gone),
        what="the worker Job and pods gone",
        within=conftest.SWEEP_SECONDS * 4,
        interval=1.0,
    )
