"""Fixtures shared by every test tier.

The real Kubernetes API server is the only Kubernetes the tests know. When
MANDRILL_TEST_KUBECONFIG names a kubeconfig, tests use that cluster (a
developer's, or kind); otherwise the session starts the local control plane
(deploy/local/cluster.sh) in its own folder and on its own ports, so it can
run beside a developer's `make cluster-up`, and stops it at the end if it
started it.

Operators started by the e2e tests authenticate as the operator's own
ServiceAccount (`operator_kubeconfig`), so they can do exactly what the
in-cluster Deployment may do, never more.
"""

from __future__ import annotations

import os
import pathlib
import re
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube, operator_process

pytest_plugins = ("tests.postgres",)  # the session's own PostgreSQL, for the store tests

REPO = pathlib.Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = REPO / "deploy" / "local" / "cluster.sh"
OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = "mandrill-system", "mandrill"
"""Where deploy/rbac puts the operator's ServiceAccount."""


@pytest.fixture(scope="session")
def cluster() -> Iterator[kube.Cluster]:
    """A reachable cluster: the one MANDRILL_TEST_KUBECONFIG names, or a local one."""
    given = os.environ.get("MANDRILL_TEST_KUBECONFIG")
    if given:
        yield kube.Cluster.from_kubeconfig(pathlib.Path(given))
        return
    state = pathlib.Path(os.environ.get("MANDRILL_TEST_CLUSTER_DIR", REPO / ".cache/cluster/test"))
    env = {
        **os.environ,
        "MANDRILL_CLUSTER_DIR": str(state),
        "MANDRILL_CLUSTER_PORT": os.environ.get("MANDRILL_TEST_CLUSTER_PORT", "26443"),
    }
    was_up = (
        subprocess.run(
            [CLUSTER_SCRIPT, "status"], env=env, capture_output=True, check=False
        ).returncode
        == 0
    )
    subprocess.run([CLUSTER_SCRIPT, "up"], env=env, check=True)
    try:
        yield kube.Cluster.from_kubeconfig(state / "kubeconfig")
    finally:
        if not was_up and not os.environ.get("MANDRILL_KEEP_CLUSTER"):
            subprocess.run([CLUSTER_SCRIPT, "down"], env=env, check=False)


@pytest.fixture(scope="session")
def operator_rbac(cluster: kube.Cluster) -> None:
    """deploy/rbac applied as an installation applies it: namespace, ServiceAccount, RBAC."""
    cluster.kubectl("apply", "-k", str(REPO / "deploy" / "rbac"))


@pytest.fixture(scope="session")
def operator_kubeconfig(
    cluster: kube.Cluster, operator_rbac: None, tmp_path_factory: pytest.TempPathFactory
) -> pathlib.Path:
    """The kubeconfig for operators the tests start: a token of deploy/rbac's ServiceAccount.

    MANDRILL_TEST_OPERATOR_AS=admin runs them with the cluster-admin
    kubeconfig instead: for telling an RBAC gap from a bug while debugging,
    never for CI.
    """
    who = os.environ.get("MANDRILL_TEST_OPERATOR_AS", "serviceaccount")
    if who == "admin":
        return cluster.kubeconfig
    if who != "serviceaccount":
        raise pytest.UsageError(
            f"MANDRILL_TEST_OPERATOR_AS={who!r}: expected serviceaccount (default) or admin"
        )
    return operator_process.service_account_kubeconfig(
        cluster,
        namespace=OPERATOR_NAMESPACE,
        name=OPERATOR_ACCOUNT,
        path=tmp_path_factory.mktemp("operator-sa") / "kubeconfig",
    )


collect_ignore = [] if operator_process.IN_CLUSTER else ["incluster", "ha", "workers_node"]
"""tests/incluster, tests/ha and tests/workers_node test the operator deployed in the cluster
(deploy/e2e/run.sh): collected only in that mode, which `make test` runs as
its second half."""

LOG_OFFSETS = pytest.StashKey[dict[int, int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note where each running operator's log stands before this test touches it."""
    item.stash[LOG_OFFSETS] = {id(op): op.log_size() for op in operator_process.STARTED}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report carries what the operators logged while it ran.

    An e2e failure is mostly a wait that timed out; the operator's side of the
    story is the log, which otherwise stays in a temporary folder (and in CI,
    on a machine nobody can look at).
    """
    report: pytest.TestReport = yield
    if report.failed:
        offsets = item.stash.get(LOG_OFFSETS, {})
        for op in operator_process.STARTED:
            offset = offsets.get(id(op), 0)
            if op.running() or op.log_size() > offset:
                title = f"operator log during the test ({op.namespaces}; {op.log_path})"
                report.sections.append((title, op.log_since(offset)))
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a cluster, so `-m "not cluster"` runs the fast tier alone."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
async def api(cluster: kube.Cluster) -> AsyncIterator[ApiClient]:
    """A kubernetes_asyncio client for this test, closed afterwards."""
    api_client = await cluster.api_client()
    async with api_client:
        yield api_client


@pytest.fixture
async def make_namespace(
    api: ApiClient, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Create namespaces named after the test (prefix first); all deleted afterwards."""
    core = client.CoreV1Api(api)
    made: list[str] = []
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")

    async def make(prefix: str = "") -> str:
        name = f"{prefix}{stem}"[:50].strip("-") + f"-{secrets.token_hex(3)}"
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        made.append(name)
        return name

    yield make
    for name in made:
        await core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
async def namespace(make_namespace: Callable[[str], Awaitable[str]]) -> str:
    """A namespace of this test's own, deleted afterwards (with all it holds)."""
    return await make_namespace("")
