"""The HA installation rolled over with requests flowing: nothing lost, nothing doubled.

deploy/local/ha (two replicas, leader election on Lease mandrill, PostgreSQL
from Secret mandrill-store) replaces the e2e installation on the real node.
The store is the session's own PostgreSQL server (tests/postgres.py) on this
machine's loopback, which pods reach through `node.sh expose`. While
RestartRequests keep arriving, one for each of 30 pods, `kubectl rollout
restart` replaces both replicas one at a time (RollingUpdate, maxUnavailable
0): each old pod drains, a leader releases the Lease, a standby takes it.
A watch of the test's own counts the pods deleted.

Runs last in `make test`'s in-cluster half (deploy/local/in-cluster.sh), which
removes the installation afterwards; only on the local real node (the relay).

Covers: every request acknowledged Succeeded; every target deleted exactly
once and no replacement pod at all; one journal row per request, in
PostgreSQL; the Lease changed hands; the password in no pod's log.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob.conftest import MakeNamespace
from tests.node.conftest import NODE_SCRIPT
from tests.operator_process import InClusterOperator
from tests.postgres import PostgresServer
from tests.restart import rr

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGETS = 30


@pytest.fixture
def ha(
    cluster: kube.Cluster,
    installed: InClusterOperator,
    node: dict[str, str],
    postgres: PostgresServer,
) -> Iterator[str]:
    """deploy/local/ha rolled out against a database of its own; yields that database."""
    env = {**os.environ, "MANDRILL_CLUSTER_DIR": str(cluster.kubeconfig.parent)}
    port = str(postgres.port)
    subprocess.run([NODE_SCRIPT, "expose", port], env=env, check=True)
    database = postgres.create_database("ha")
    url = postgres.url(database).replace("@127.0.0.1:", f"@{node['BRIDGE_IP']}:")
    # Applied, not created: a Secret of an interrupted earlier run may be left.
    secret = installed.kubectl(
        "create", "secret", "generic", "mandrill-store", f"--from-literal=url={url}",
        "--dry-run=client", "-o", "json",
    ).stdout  # fmt: skip
    installed.cluster.kubectl("apply", "-f", "-", stdin=secret)
    try:
        installed.cluster.kubectl("apply", "-k", str(REPO / "deploy" / "local" / "ha"))
        installed.rolled_out()
        yield database
    finally:
        subprocess.run([NODE_SCRIPT, "unexpose", port], env=env, check=False)
        installed.kubectl("delete", "secret", "mandrill-store", "--ignore-not-found")


def _holder(installed: InClusterOperator) -> str:
    out = installed.kubectl("get", "lease", "mandrill", "-o", "jsonpath={.spec.holderIdentity}")
    return out.stdout.strip()


async def test_rolling_update_with_requests_flowing_loses_and_doubles_nothing(
    api: ApiClient,
    installed: InClusterOperator,
    postgres: PostgresServer,
    make_namespace: MakeNamespace,
    ha: str,
) -> None:
    ns = await make_namespace("rr-")
    pods = await rr.deploy(api, ns, "fleet", TARGETS)
    targets = {p.metadata.uid for p in pods}
    first_holder = _holder(installed)
    assert first_holder, "no replica holds the Lease"

    async def publish() -> list[str]:
        uids = []
        for i, pod in enumerate(pods):
            spec: dict[str, Any] = {"target": {"kind": "Pod", "name": pod.metadata.name}}
            uids.append(await rr.create_request(api, ns, f"r{i:02d}", spec))
            await asyncio.sleep(0.5)
        return uids

    async with kube.deletions(installed.cluster, ns) as deleted:
        publishing = asyncio.create_task(publish())
        await asyncio.sleep(3)
        installed.kubectl("rollout", "restart", f"deployment/{installed.deployment}")
        await asyncio.to_thread(installed.rolled_out)
        uids = await publishing
        bodies = [await rr.finished(api, ns, f"r{i:02d}", within=120) for i in range(TARGETS)]

    assert [b["status"]["phase"] for b in bodies] == ["Succeeded"] * TARGETS
    counted = collections.Counter(deleted)
    assert set(counted) == targets, "a pod other than the targets was deleted"
    assert all(n == 1 for n in counted.values()), counted
    rows = postgres.psql(
        "SELECT request_uid, count(*) FROM restart_journal GROUP BY request_uid", ha
    ).split()
    journal = dict(row.split("|") for row in rows)
    assert journal.keys() == set(uids)
    assert set(journal.values()) == {"1"}
    assert _holder(installed) not in ("", first_holder), "the Lease never changed hands"
    for pod in installed.pods():
        log = installed.kubectl("logs", pod["metadata"]["name"], check=False).stdout
        assert postgres.password not in log
