"""tests/workers_node runs in the in-cluster half (MANDRILL_TEST_OPERATOR_IN_CLUSTER=1), on the
real node.

It reuses the fixtures of tests/incluster (the deployed operator) and of
tests/node (the real node: its bridge address, `node.sh expose` and `kill`),
and installs the operator as tests/ha does (deploy/local/ha), on a database
of its own in the session's PostgreSQL: workers need a store they can share.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from tests import kube
from tests.incluster.conftest import installed, pod_template
from tests.node.conftest import NODE_SCRIPT, node
from tests.operator_process import InClusterOperator
from tests.postgres import PostgresServer

__all__ = ["installed", "node", "pod_template", "shared_store"]

REPO = pathlib.Path(__file__).resolve().parents[2]
SWEEP_SECONDS = 10
"""The operator's resync here (60 s installed): a CrawlJob deleted after it finished has
its worker Job deleted by the sweep, and the test waits for that."""


@pytest.fixture
def shared_store(
    cluster: kube.Cluster,
    installed: InClusterOperator,
    node: dict[str, str],
    postgres: PostgresServer,
) -> Iterator[str]:
    """deploy/local/ha rolled out against a database of its own, which worker pods reach
    at the node's bridge address as the operator does; yields that database."""
    env = {**os.environ, "MANDRILL_CLUSTER_DIR": str(cluster.kubeconfig.parent)}
    port = str(postgres.port)
    subprocess.run([NODE_SCRIPT, "expose", port], env=env, check=True)
    database = postgres.create_database("workers")
    url = postgres.url(database).replace("@127.0.0.1:", f"@{node['BRIDGE_IP']}:")
    secret = installed.kubectl(
        "create", "secret", "generic", "mandrill-store", f"--from-literal=url={url}",
        "--dry-run=client", "-o", "json",
    ).stdout  # fmt: skip
    installed.cluster.kubectl("apply", "-f", "-", stdin=secret)
    # The URL is read at a pod's start: an installation already on PostgreSQL (tests/ha's)
    # rolls over too, by the annotation naming the database.
    patch = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"mandrill.dev/test-store": database}},
                "spec": {
                    "containers": [
                        {
                            "name": "operator",
                            "env": [
                                {"name": "MANDRILL_RESYNC_INTERVAL", "value": str(SWEEP_SECONDS)}
                            ],
                        }
                    ]
                },
            }
        }
    }
    try:
        installed.cluster.kubectl("apply", "-k", str(REPO / "deploy" / "local" / "ha"))
        installed.kubectl("patch", f"deployment/{installed.deployment}", "-p", json.dumps(patch))
        installed.rolled_out()
        yield database
    finally:
        subprocess.run([NODE_SCRIPT, "unexpose", port], env=env, check=False)
        installed.kubectl("delete", "secret", "mandrill-store", "--ignore-not-found")


def kill(cluster: kube.Cluster, namespace: str, pod: str) -> None:
    """SIGKILL a pod's processes on the real node (node.sh kill): a crash, not a stop."""
    env = {**os.environ, "MANDRILL_CLUSTER_DIR": str(cluster.kubeconfig.parent)}
    subprocess.run([NODE_SCRIPT, "kill", namespace, pod], env=env, check=True, timeout=30)
