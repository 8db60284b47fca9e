"""Fixtures for the monitoring tests: promtool, and (for the cluster tests) an
operator of their own on namespaces `mon-*`, the CRDs it serves, and the
prometheus-operator CRDs the ServiceMonitor and PrometheusRule need.

promtool is built by deploy/local/build.sh (`make test` builds it before
pytest starts, as it does the control plane): a missing one fails the tests
with the command that builds it, since a cold build must not run inside a
test's timeout.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests import kube
from tests.monitoring import promql
from tests.operator_process import IN_CLUSTER, IN_CLUSTER_SKIP, OperatorProcess

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def promtool() -> pathlib.Path:
    path = promql.promtool_path()
    if not path.exists():
        pytest.fail(f"no promtool at {path}: run `deploy/local/build.sh promtool` first")
    return path


@pytest.fixture(scope="session")
def mandrill_crds(cluster: kube.Cluster) -> None:
    """Every CRD in crds/, applied as users apply them, and Established."""
    for path in sorted((REPO / "crds").glob("*.yaml")):
        cluster.kubectl("apply", "-f", str(path))
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="session")
def monitoring_crds(cluster: kube.Cluster) -> list[pathlib.Path]:
    """The ServiceMonitor and PrometheusRule CRDs, from the prometheus-operator's
    module zip, applied the way README says (deploy/local/monitoring-crds.sh)."""
    script = REPO / "deploy" / "local" / "monitoring-crds.sh"
    env = {"KUBECTL": str(cluster.kubectl_path), "KUBECONFIG": str(cluster.kubeconfig)}
    listed = subprocess.run(
        [script], capture_output=True, text=True, check=True, timeout=300, env=_with_path(env)
    )
    applied = subprocess.run(
        [script, "apply"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_with_path(env),
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    return [pathlib.Path(line) for line in listed.stdout.splitlines()]


def _with_path(env: dict[str, str]) -> dict[str, str]:
    """This process's environment (PATH, Go's settings) plus `env`."""
    return {**os.environ, **env}


@pytest.fixture(scope="session")
def monitored_operator(
    cluster: kube.Cluster,
    mandrill_crds: None,
    tmp_path_factory: pytest.TempPathFactory,
    operator_kubeconfig: pathlib.Path,
) -> Iterator[OperatorProcess]:
    """`mandrill run` on `mon-*`, allowed to crawl the test site on 127.0.0.1."""
    if IN_CLUSTER:
        pytest.skip(IN_CLUSTER_SKIP)
    workdir = tmp_path_factory.mktemp("monitored-operator")
    op = OperatorProcess(
        kubeconfig=operator_kubeconfig,
        workdir=workdir,
        namespaces="mon-*",
        store_url=f"sqlite:///{workdir / 'store.sqlite'}",
        extra_args=("--crawl-allow-private", "true"),
    ).start()
    yield op
    code = op.stop()
    assert code == 0, f"operator exited {code} on SIGTERM:\n{op.log_tail()}"
