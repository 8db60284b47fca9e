"""Load: 1,000 RestartRequests and 20 CrawlJobs at once, against one operator.

A program that prints a table (not a timed test); it exits non-zero if any
request or job does not finish as it should.

    .venv/bin/python -m tests.bench.load [--requests 1000] [--crawls 20]

Each RestartRequest deletes one named pod of a 1,000-replica Deployment;
each CrawlJob crawls a deterministic local site (served by this program on
127.0.0.1, a separate event loop thread is not needed: aiohttp serves it in
this process) to depth 3. Reported: wall time until all finished, the
operator's CPU seconds and peak RSS (VmHWM), and the creation-to-acknowledge
p50/p99 of the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import pathlib
import platform
import secrets
import statistics
import sys
import tempfile
import time
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.bench.restart_latency import (
    REPO,
    ensure_cluster,
    percentile,
    proc_cpu_seconds,
    proc_peak_rss_mib,
)
from tests.crawljob import site
from tests.operator_process import OperatorProcess
from tests.restart import rr


async def _run(cluster: kube.Cluster, requests: int, crawls: int, workdir: pathlib.Path) -> None:
    api: ApiClient = await cluster.api_client()
    async with api, site.serve(size=200) as served:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        ns = f"bench-load-{secrets.token_hex(3)}"
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        try:
            pods = await rr.deploy(api, ns, "web", requests)
            op = OperatorProcess(
                kubeconfig=cluster.kubeconfig,
                workdir=workdir,
                namespaces=ns,
                store_url=f"sqlite:///{workdir / 'load.sqlite'}",
                extra_args=("--log-level", "WARNING", "--crawl-allow-private", "true"),
            ).start()
            assert op.proc is not None
            cpu0 = proc_cpu_seconds(op.proc.pid)
            created: dict[str, float] = {}
            gate = asyncio.Semaphore(100)

            async def request(i: int, pod: client.V1Pod) -> None:
                async with gate:
                    await rr.create_request(
                        api, ns, f"r{i}", {"target": {"name": pod.metadata.name}}
                    )
                    created[f"r{i}"] = time.time()

            async def crawl(i: int) -> None:
                body = {
                    "apiVersion": "mandrill.dev/v1alpha1",
                    "kind": "CrawlJob",
                    "metadata": {"name": f"c{i}"},
                    "spec": {"urls": [served.page_url(i)], "maxDepth": 3},
                }
                await custom.create_namespaced_custom_object(
                    "mandrill.dev", "v1alpha1", ns, "crawljobs", body
                )

            start = time.time()
            try:
                await asyncio.gather(
                    *(request(i, p) for i, p in enumerate(pods)),
                    *(crawl(i) for i in range(crawls)),
                )
                bodies, jobs = await _finished(custom, ns, requests, crawls)
                wall = time.time() - start
                cpu = proc_cpu_seconds(op.proc.pid) - cpu0
                rss = proc_peak_rss_mib(op.proc.pid)
            finally:
                op.stop()
        finally:
            await core.delete_namespace(ns, propagation_policy="Background")
    failed = [b["metadata"]["name"] for b in bodies if b["status"]["phase"] != "Succeeded"]
    failed += [j["metadata"]["name"] for j in jobs if j["status"]["phase"] != "Succeeded"]
    latencies = [
        rr.parse_time(b["status"]["acknowledgedAt"]).timestamp() - created[b["metadata"]["name"]]
        for b in bodies
    ]
    pages = sum(j["status"].get("pagesFetched", 0) for j in jobs)
    print(
        f"\nLoad: {requests} RestartRequests + {crawls} CrawlJobs at once; {platform.node()}, "
        f"{os.cpu_count()} cores, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(f"  all finished in      {wall:8.1f} s   ({len(failed)} not Succeeded)")
    print(
        f"  requests p50 / p99   {statistics.median(latencies):8.2f} / "
        f"{percentile(latencies, 99):.2f} s (creation -> acknowledged)"
    )
    print(f"  crawl pages fetched  {pages:8d}")
    print(f"  operator CPU         {cpu:8.1f} s")
    print(f"  operator peak RSS    {rss:8.0f} MiB")
    if failed:
        sys.exit(f"not Succeeded: {failed[:10]}")


async def _finished(
    custom: client.CustomObjectsApi, ns: str, requests: int, crawls: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        rrs = (await custom.list_namespaced_custom_object(rr.GROUP, rr.VERSION, ns, rr.PLURAL))[
            "items"
        ]
        cjs = (await custom.list_namespaced_custom_object(rr.GROUP, rr.VERSION, ns, "crawljobs"))[
            "items"
        ]
        acked = [b for b in rrs if rr.acknowledged(b)]
        done = [j for j in cjs if j.get("status", {}).get("phase") in ("Succeeded", "Failed")]
        if len(acked) == requests and len(done) == crawls:
            return acked, done
        await asyncio.sleep(1)
    sys.exit(f"timed out: {len(acked)}/{requests} requests, {len(done)}/{crawls} crawls finished")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--crawls", type=int, default=20)
    args = parser.parse_args()
    with ensure_cluster() as cluster:
        for crd in ("restartrequest", "crawljob"):
            cluster.kubectl("apply", "-f", str(REPO / "crds" / f"{crd}.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(_run(cluster, args.requests, args.crawls, pathlib.Path(tmp)))


if __name__ == "__main__":
    main()
