"""The real node (deploy/local/node.sh), shared by the modules of tests/node."""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from tests import kube

NODE_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "local" / "node.sh"
TAINT = "mandrill.dev/real-node"
"""The node's label and taint: pods for it select the one and tolerate the other."""


@pytest.fixture(scope="module")
def node(cluster: kube.Cluster) -> Iterator[dict[str, str]]:
    """The real node joined to the session's cluster; what node.sh wrote in node.env."""
    if os.environ.get("MANDRILL_TEST_KUBECONFIG"):
        pytest.skip("a real node joins only the local cluster (deploy/local/cluster.sh)")
    cluster_dir = cluster.kubeconfig.parent
    env = {**os.environ, "MANDRILL_CLUSTER_DIR": str(cluster_dir)}
    check = subprocess.run(
        [NODE_SCRIPT, "check"], env=env, capture_output=True, text=True, check=False
    )
    if check.returncode == 3:
        pytest.skip(check.stdout.strip())
    assert check.returncode == 0, f"node.sh check: {check.stdout}{check.stderr}"
    status = subprocess.run([NODE_SCRIPT, "status"], env=env, capture_output=True, check=False)
    was_up = status.returncode == 0
    subprocess.run([NODE_SCRIPT, "up"], env=env, check=True, timeout=900)
    try:
        lines = (cluster_dir / "node" / "node.env").read_text().splitlines()
        yield dict(line.split("=", 1) for line in lines if "=" in line)
    finally:
        if not was_up and not os.environ.get("MANDRILL_KEEP_CLUSTER"):
            subprocess.run([NODE_SCRIPT, "down"], env=env, check=False)
