"""The real node (deploy/local/node.sh), shared by the modules of tests/node."""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from tests import kube
from tests.operator_process import IN_CLUSTER

NODE_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "local" / "node.sh"
TAINT = "mandrill.dev/real-node"
"""The node's label and taint: pods for it select the one and tolerate the other."""


@pytest.fixture(scope="module")
def node(cluster: kube.Cluster) -> Iterator[dict[str, str]]:
    """The real node joined to the session's cluster; what node.sh wrote in node.env."""
    cluster_dir = cluster.kubeconfig.parent
    if not (cluster_dir / "ports.env").exists():
        pytest.skip("a real node joins only a local cluster (deploy/local/cluster.sh)")
    env = {**os.environ, "MANDRILL_CLUSTER_DIR": str(cluster_dir)}
    check = subprocess.run(
        [NODE_SCRIPT, "check"], env=env, capture_output=True, text=True, check=False
    )
    if check.returncode == 3:
        pytest.skip(check.stdout.strip())
    assert check.returncode == 0, f"node.sh check: {check.stdout}{check.stderr}"
    if not IN_CLUSTER:
        # An installation left by an interrupted in-cluster run (deploy/local/in-cluster.sh)
        # would start its cluster-wide operator on this node and take the session's requests.
        cluster.kubectl(
            "-n", "mandrill-system", "delete", "deployment", "mandrill", "--ignore-not-found"
        )
    status = subprocess.run([NODE_SCRIPT, "status"], env=env, capture_output=True, check=False)
    was_up = status.returncode == 0
    subprocess.run([NODE_SCRIPT, "up"], env=env, check=True, timeout=900)
    try:
        lines = (cluster_dir / "node" / "node.env").read_text().splitlines()
        yield dict(line.split("=", 1) for line in lines if "=" in line)
    finally:
        if not was_up and not os.environ.get("MANDRILL_KEEP_CLUSTER"):
            subprocess.run([NODE_SCRIPT, "down"], env=env, check=False)
