"""An operator process shared by the RestartRequest tests, watching namespaces `rr-*`.

Tests that kill or reconfigure an operator start their own, on namespaces
outside that glob (`solo-*`), so the shared one never sees their requests.
The operator runs as the ServiceAccount of deploy/rbac (`operator_kubeconfig`),
or is the one deployed in the cluster (MANDRILL_TEST_OPERATOR_IN_CLUSTER=1).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import pytest

from tests import kube
from tests.operator_process import (
    IN_CLUSTER,
    IN_CLUSTER_SKIP,
    InClusterOperator,
    OperatorProcess,
    RunningOperator,
    free_port,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
DENIED_NAMESPACE = "rr-denied-zone"


@pytest.fixture(scope="session")
def crds(cluster: kube.Cluster) -> None:
    """The project's CRDs, applied as users apply them."""
    cluster.kubectl("apply", "-f", str(REPO / "crds" / "restartrequest.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/restartrequests.mandrill.dev", "--timeout=60s"
    )


@pytest.fixture(scope="session")
def operator_workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("operator")


@pytest.fixture(scope="session")
def operator(
    cluster: kube.Cluster,
    crds: None,
    operator_workdir: pathlib.Path,
    operator_kubeconfig: pathlib.Path,
) -> Iterator[RunningOperator]:
    if IN_CLUSTER:
        yield InClusterOperator(cluster)
        return
    op = OperatorProcess(
        kubeconfig=operator_kubeconfig,
        workdir=operator_workdir,
        namespaces="rr-*",
        store_url=f"sqlite:///{operator_workdir / 'journal.sqlite'}",
        extra_args=("--deny-namespaces", f"kube-system,{DENIED_NAMESPACE}"),
    ).start()
    yield op
    code = op.stop()
    assert code == 0, f"operator exited {code} on SIGTERM:\n{op.log_tail()}"


@pytest.fixture
def solo_operators(
    cluster: kube.Cluster, crds: None, tmp_path: pathlib.Path, operator_kubeconfig: pathlib.Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators of the test's own; all stopped afterwards."""
    if IN_CLUSTER:
        pytest.skip(IN_CLUSTER_SKIP)
    started: list[OperatorProcess] = []

    def start(
        namespace: str,
        store_url: str | None = None,
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
    ) -> OperatorProcess:
        op = OperatorProcess(
            kubeconfig=operator_kubeconfig,
            workdir=tmp_path,
            namespaces=namespace,
            store_url=store_url or f"sqlite:///{tmp_path / 'journal.sqlite'}",
            extra_args=extra_args,
            port=port if port is not None else free_port(),
        ).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
