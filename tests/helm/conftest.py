"""Fixtures for the chart's tests against the API server."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from tests import kube
from tests.helm.chart import REPO


@pytest.fixture(scope="session")
def watched_namespaces(cluster: kube.Cluster) -> Iterator[list[str]]:
    """Two namespaces of this session's own, for watchNamespaces' RoleBindings; deleted after.

    Named afresh each session: a namespace deleted by the last one can take
    minutes to go, and one still terminating refuses new objects."""
    names = [f"helm-watched-{secrets.token_hex(3)}" for _ in range(2)]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def monitoring_crds(cluster: kube.Cluster) -> None:
    """The prometheus-operator's ServiceMonitor and PrometheusRule CRDs, Established,
    applied as README says (deploy/local/monitoring-crds.sh, as tests/monitoring does):
    the chart's monitoring objects have no kind to be checked against without them."""
    applied = subprocess.run(
        [REPO / "deploy" / "local" / "monitoring-crds.sh", "apply"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            **os.environ,
            "KUBECTL": str(cluster.kubectl_path),
            "KUBECONFIG": str(cluster.kubeconfig),
        },
    )
    assert applied.returncode == 0, applied.stderr
