"""An operator process shared by the RestartRequest tests, watching namespaces `rr-*`.

Tests that kill or reconfigure an operator start their own, on namespaces
outside that glob (`solo-*`), so the shared one never sees their requests.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests import kube
from tests.operator_process import OperatorProcess

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
    cluster: kube.Cluster, crds: None, operator_workdir: pathlib.Path
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        workdir=operator_workdir,
        namespaces="rr-*",
        store_url=f"sqlite:///{operator_workdir / 'journal.sqlite'}",
        extra_args=("--deny-namespaces", f"kube-system,{DENIED_NAMESPACE}"),
    ).start()
    yield op
    code = op.stop()
    assert code == 0, f"operator exited {code} on SIGTERM:\n{op.log_tail()}"
