"""Fixtures for the leader-election tests: operators that campaign for a Lease of the test's own.

Each test runs its operators on a `solo-*` namespace and puts the Lease
(`mandrill`, the name the HA overlay's Role allows) in that namespace too,
with that Role and RoleBinding copied there from deploy/overlays/ha: the
operators run as deploy/rbac's ServiceAccount, so they can do exactly what
the HA install may, in a namespace nobody else uses. The pure tests here
(the elector over fakes, the fence, the settings) need none of it.
"""

from __future__ import annotations

import json
import pathlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import kube
from tests.deploy.conftest import render
from tests.operator_process import IN_CLUSTER, IN_CLUSTER_SKIP, OperatorProcess

REPO = pathlib.Path(__file__).resolve().parents[2]
LEASE = "mandrill"
ELECTION_OBJECTS = (
    ("Role", "mandrill-leader-election"),
    ("RoleBinding", "mandrill-leader-election"),
)


@pytest.fixture(scope="session")
def leader_crds(cluster: kube.Cluster) -> None:
    """The RestartRequest, RestartSchedule and CrawlJob CRDs, applied as users apply them."""
    for name in ("restartrequest.yaml", "restartschedule.yaml", "crawljob.yaml"):
        cluster.kubectl("apply", "-f", str(REPO / "crds" / name))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/restartrequests.mandrill.dev",
        "crd/restartschedules.mandrill.dev",
        "crd/crawljobs.mandrill.dev",
        "--timeout=60s",
    )


def election_rbac(namespace: str) -> list[dict[str, Any]]:
    """deploy/overlays/ha's Role and RoleBinding for the Lease, moved to `namespace`."""
    docs = render("overlays/ha")
    found = [d for d in docs if (d["kind"], d["metadata"]["name"]) in ELECTION_OBJECTS]
    assert len(found) == 2, "the HA overlay has the election's Role and RoleBinding"
    for doc in found:
        doc["metadata"]["namespace"] = namespace
    return found


def apply(cluster: kube.Cluster, objects: list[dict[str, Any]]) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": objects}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(items))


Electors = Callable[..., OperatorProcess]


@pytest.fixture
def electors(
    cluster: kube.Cluster,
    leader_crds: None,
    operator_kubeconfig: pathlib.Path,
    tmp_path: pathlib.Path,
) -> Iterator[Electors]:
    """Start `mandrill run --leader-election` processes on a namespace; all stopped after.

    The first call for a namespace copies the election's RBAC into it. All share
    one SQLite journal, as replicas share one store."""
    if IN_CLUSTER:
        pytest.skip(IN_CLUSTER_SKIP)
    started: list[OperatorProcess] = []
    prepared: set[str] = set()

    def start(
        namespace: str, name: str, *extra: str, env: dict[str, str] | None = None
    ) -> OperatorProcess:
        if namespace not in prepared:
            apply(cluster, election_rbac(namespace))
            prepared.add(namespace)
        op = OperatorProcess(
            kubeconfig=operator_kubeconfig,
            workdir=tmp_path,
            namespaces=namespace,
            store_url=f"sqlite:///{tmp_path / 'journal.sqlite'}",
            extra_args=(
                "--leader-election",
                "--leader-election-namespace",
                namespace,
                *extra,
            ),
            env={"POD_NAME": name, **(env or {})},
        ).start()
        started.append(op)
        return op

    yield start
    for op in started:
        if op.proc is not None and op.proc.poll() is None:
            op.proc.send_signal(signal.SIGCONT)  #: a stopped process cannot act on SIGTERM
        op.stop()
