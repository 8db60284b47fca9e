"""The operator's RBAC against the real API server's authorizer.

Covers: the ServiceAccount of deploy/rbac may do each thing the operator does
and nothing else that was checked (secrets, creating pods, writing workloads,
other people's custom resources); people with `edit`/`admin` or `view` get
mandrill's resources through aggregation; an operator running as that
ServiceAccount serves every strategy, a TTL deletion and a CrawlJob from a
ConfigMap without one permission problem in its log; and a request that the
operator is not allowed to carry out ends Failed, naming Forbidden, with a
Warning Event, while the operator carries on; with the HA overlay's Role it
may read and write its one Lease in its own namespace, create Leases there
only, and nothing more on Leases.
"""

from __future__ import annotations

import json
import pathlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests import kube
from tests.deploy.conftest import SERVICE_ACCOUNT, can_i, find, render
from tests.kube import eventually
from tests.operator_process import (
    IN_CLUSTER,
    IN_CLUSTER_SKIP,
    OperatorProcess,
    service_account_kubeconfig,
)
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]
RR, CJ = "restartrequests.mandrill.dev", "crawljobs.mandrill.dev"
RS = "restartschedules.mandrill.dev"
APPS = ("deployments.apps", "statefulsets.apps", "daemonsets.apps")

# (verb, resource, extra kubectl args) the operator needs in a watched namespace ...
NAMESPACED_ALLOWED = [
    *((verb, kind, ()) for kind in (RR, CJ, RS) for verb in ("list", "watch", "patch")),
    ("get", RR, ()),
    ("create", RR, ()),  # a RestartSchedule's runs
    ("delete", RR, ()),
    ("patch", RR, ("--subresource=status",)),
    ("patch", CJ, ("--subresource=status",)),
    ("patch", RS, ("--subresource=status",)),
    ("create", "events", ()),
    *((verb, "pods", ()) for verb in ("get", "list", "watch", "delete")),
    ("create", "pods", ("--subresource=eviction",)),
    *((verb, kind, ()) for kind in APPS for verb in ("get", "list", "watch", "patch")),
    ("get", "configmaps", ()),
]
# ... and a sample of what it must not do there.
NAMESPACED_DENIED = [
    ("get", "secrets", ()),
    ("list", "configmaps", ()),
    ("create", "pods", ()),
    ("patch", "pods", ()),
    ("create", "pods", ("--subresource=exec",)),
    ("delete", "deployments.apps", ()),
    ("update", "deployments.apps", ()),
    ("create", "deployments.apps", ()),
    ("get", "replicasets.apps", ()),
    ("update", RR, ()),
    ("create", RS, ()),
    ("update", RS, ()),
    ("delete", RS, ()),
    ("update", RR, ("--subresource=status",)),
    ("delete", CJ, ()),
    ("get", CJ, ()),
    ("patch", "events", ()),
    ("delete", "events", ()),
    ("create", "roles.rbac.authorization.k8s.io", ()),
]
CLUSTER_ALLOWED = [
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "namespaces"),
    ("watch", "namespaces"),
]
CLUSTER_DENIED = [
    ("get", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "namespaces"),
    ("list", "nodes"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
]
PERMISSION_TROUBLE = ("forbidden", "not enough permissions", "failed to post an event")
"""Log phrases of a permission problem: the API's 403, kopf's fallbacks, a lost Event."""


@pytest.fixture
def own_operators(tmp_path: pathlib.Path) -> Iterator[list[OperatorProcess]]:
    """Operators a test starts itself; stopped (SIGTERM) afterwards if still running."""
    if IN_CLUSTER:
        pytest.skip(IN_CLUSTER_SKIP)
    started: list[OperatorProcess] = []
    yield started
    for op in started:
        op.stop()


def start(started: list[OperatorProcess], **kwargs: Any) -> OperatorProcess:
    op = OperatorProcess(**kwargs)
    started.append(op)
    return op.start()


@pytest.mark.usefixtures("operator_rbac", "mandrill_crds")
def test_service_account_may_do_what_the_operator_does_and_no_more(
    cluster: kube.Cluster, namespace: str
) -> None:
    def mismatches(
        checks: list[tuple[str, str, tuple[str, ...]]], where: tuple[str, ...], expected: bool
    ) -> list[str]:
        return [
            f"{verb} {resource} {' '.join(extra)} {' '.join(where)}".strip()
            for verb, resource, extra in checks
            if can_i(cluster, verb, resource, *extra, *where, who=SERVICE_ACCOUNT) != expected
        ]

    in_namespace = ("-n", namespace)
    should_but_cannot = mismatches(NAMESPACED_ALLOWED, in_namespace, expected=True)
    should_but_cannot += mismatches(
        [(v, r, ()) for v, r in CLUSTER_ALLOWED], ("--all-namespaces",), expected=True
    )
    # Cluster-wide installation: the namespaced rights hold in every namespace.
    should_but_cannot += mismatches(
        [(v, r, ()) for r in (RR, CJ, RS) for v in ("list", "watch")], ("--all-namespaces",), True
    )
    can_but_should_not = mismatches(NAMESPACED_DENIED, in_namespace, expected=False)
    can_but_should_not += mismatches(
        [(v, r, ()) for v, r in CLUSTER_DENIED], ("--all-namespaces",), expected=False
    )

    assert should_but_cannot == []
    assert can_but_should_not == []


WORKER_ACCOUNT = "system:serviceaccount:mandrill-system:mandrill-crawl-worker"
# In the operator's own namespace, for CrawlJob workers (deploy/rbac/crawl-workers.yaml) ...
OWN_NAMESPACE_ALLOWED = [
    *((verb, "jobs.batch") for verb in ("get", "list", "create", "delete")),
    ("deletecollection", "pods"),
    ("get", "pods"),
]
# ... and only there; nor may the operator change a Job, nor create pods itself.
OWN_NAMESPACE_DENIED = [
    ("update", "jobs.batch"),
    ("patch", "jobs.batch"),
    ("create", "pods"),
    ("get", "secrets"),
    ("create", "cronjobs.batch"),
]


@pytest.mark.usefixtures("operator_rbac")
def test_operator_runs_workers_in_its_own_namespace_only_and_workers_may_do_nothing(
    cluster: kube.Cluster, namespace: str
) -> None:
    own = ("-n", "mandrill-system")
    assert [
        (v, r)
        for v, r in OWN_NAMESPACE_ALLOWED
        if not can_i(cluster, v, r, *own, who=SERVICE_ACCOUNT)
    ] == []
    assert [
        (v, r) for v, r in OWN_NAMESPACE_DENIED if can_i(cluster, v, r, *own, who=SERVICE_ACCOUNT)
    ] == []
    elsewhere = ("-n", namespace)
    assert not can_i(cluster, "create", "jobs.batch", *elsewhere, who=SERVICE_ACCOUNT)
    assert not can_i(cluster, "deletecollection", "pods", *elsewhere, who=SERVICE_ACCOUNT)
    # The workers' account: not one right, anywhere.
    for verb, resource in (("get", "secrets"), ("list", "pods"), ("get", "crawljobs.mandrill.dev"),
                           ("patch", "crawljobs.mandrill.dev"), ("create", "events"),
                           ("get", "jobs.batch")):  # fmt: skip
        assert not can_i(cluster, verb, resource, *own, who=WORKER_ACCOUNT), (verb, resource)
        assert not can_i(cluster, verb, resource, *elsewhere, who=WORKER_ACCOUNT), (verb, resource)
    account = json.loads(
        cluster.kubectl(
            "-n", "mandrill-system", "get", "sa", "mandrill-crawl-worker", "-o", "json"
        ).stdout
    )
    assert account["automountServiceAccountToken"] is False


@pytest.fixture
def user_roles(cluster: kube.Cluster) -> Iterator[None]:
    """deploy/base's aggregated ClusterRoles for people, applied; removed if made here."""
    roles = [
        d for d in render("base") if d["metadata"]["name"] in ("mandrill-edit", "mandrill-view")
    ]
    assert len(roles) == 2
    existed = cluster.kubectl("get", "clusterrole", "mandrill-edit", check=False).returncode == 0
    cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": roles})
    )
    yield
    if not existed:
        cluster.kubectl("delete", "clusterrole", "mandrill-edit", "mandrill-view", check=False)


@pytest.mark.usefixtures("mandrill_crds", "user_roles")
async def test_people_with_edit_or_view_get_mandrill_rights(
    cluster: kube.Cluster, namespace: str
) -> None:
    for user, role in (("alice", "edit"), ("bob", "view"), ("carol", "admin")):
        cluster.kubectl(
            "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}",
            "-n", namespace,
        )  # fmt: skip

    def may(user: str, verb: str, resource: str, *extra: str) -> bool:
        return can_i(cluster, verb, resource, *extra, "-n", namespace, who=user)

    async def aggregated() -> bool:  # the controller-manager aggregates within moments
        return may("alice", "create", RR) and may("bob", "list", CJ) and may("carol", "create", CJ)

    await eventually(aggregated, what="mandrill roles aggregated into edit, view and admin")

    for kind in (RR, CJ, RS):
        for verb in ("create", "delete", "patch", "get", "list", "watch"):
            assert may("alice", verb, kind), f"edit: {verb} {kind}"
            assert may("carol", verb, kind), f"admin: {verb} {kind}"
        for verb in ("get", "list", "watch"):
            assert may("bob", verb, kind), f"view: {verb} {kind}"
        for verb in ("create", "delete", "patch"):
            assert not may("bob", verb, kind), f"view must not {verb} {kind}"
        # Status is the operator's to write, nobody else's.
        assert not may("alice", "patch", kind, "--subresource=status")
        assert not may("carol", "update", kind, "--subresource=status")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.usefixtures("mandrill_crds")
async def test_operator_as_its_service_account_meets_no_permission_problem(
    api: ApiClient,
    make_namespace: MakeNamespace,
    operator_kubeconfig: pathlib.Path,
    own_operators: list[OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    ns = await make_namespace("rbac-ok-")
    op = start(
        own_operators,
        kubeconfig=operator_kubeconfig,
        workdir=tmp_path,
        namespaces="rbac-ok-*",  # a glob: kopf lists and watches namespaces
        store_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        extra_args=("--crawl-allow-private", "true"),
    )
    [deleted] = await rr.deploy(api, ns, "a", 1)
    [evicted] = await rr.deploy(api, ns, "b", 1)
    await rr.deploy(api, ns, "c", 2)
    requests = {
        "delete": {"target": {"kind": "Pod", "name": deleted.metadata.name}},
        "evict": {"target": {"kind": "Pod", "name": evicted.metadata.name}, "strategy": "Evict"},
        "rollout": {
            "target": {"kind": "Deployment", "name": "c"},
            "strategy": "RolloutRestart",
            "waitForReady": {"enabled": True, "timeoutSeconds": 120},
        },
        "evict-all": {
            "target": {"selector": {"matchLabels": {"app": "a"}}},
            "strategy": "Evict",
            "dryRun": True,
            "ttlSecondsAfterFinished": 1,
        },
    }
    for name, spec in requests.items():
        await rr.create_request(api, ns, name, spec)
    await client.CoreV1Api(api).create_namespaced_config_map(
        ns,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="seeds"),
            data={"urls.txt": f"http://127.0.0.1:{_closed_port()}/\n"},
        ),
    )
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "mandrill.dev",
        "v1alpha1",
        ns,
        "crawljobs",
        {
            "apiVersion": "mandrill.dev/v1alpha1",
            "kind": "CrawlJob",
            "metadata": {"name": "seeds"},
            "spec": {"urlsFrom": {"configMapName": "seeds", "key": "urls.txt"}, "maxDepth": 0},
        },
    )

    for name in ("delete", "evict", "rollout"):
        body = await rr.finished(api, ns, name, within=150)
        assert body["status"]["phase"] == "Succeeded", (name, body["status"])

    async def reaped() -> bool:  # ttlSecondsAfterFinished: the operator deletes it
        try:
            await rr.get_request(api, ns, "evict-all")
        except ApiException as e:
            return e.status == 404
        return False

    await eventually(reaped, what="RestartRequest evict-all deleted after its TTL")

    async def crawled() -> dict[str, Any] | None:
        job = await client.CustomObjectsApi(api).get_namespaced_custom_object(
            "mandrill.dev", "v1alpha1", ns, "crawljobs", "seeds"
        )
        status = job.get("status", {})
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    crawl = await eventually(crawled, what="CrawlJob seeds finished")
    assert crawl["seeds"] == 1, crawl  # the ConfigMap was read
    # Events were posted, on the request and on the restarted workload
    on_request = await rr.events_with(api, ns, "rollout", {"Acknowledged"})
    assert {e.reason for e in on_request} == {"Acknowledged"}
    on_workload = await rr.events_with(api, ns, "c", {"Restarted"}, kind="Deployment")
    assert "Restarted" in {e.reason for e in on_workload}

    assert op.stop() == 0
    log = op.log_path.read_text().lower()
    assert not [p for p in PERMISSION_TROUBLE if p in log], op.log_tail(80)


@pytest.fixture
def narrowed_account(
    cluster: kube.Cluster, operator_rbac: None, namespace: str, tmp_path: pathlib.Path
) -> Iterator[pathlib.Path]:
    """A kubeconfig for a ServiceAccount with the operator's rules in `namespace` minus
    pods/eviction and everything on apps workloads, plus its cluster-wide scan rights.

    The rules are taken from deploy/rbac, so the only difference from the real
    operator is what was taken out.
    """
    operator_role = find(render("rbac"), "ClusterRole", "mandrill-operator")
    rules = []
    for rule in operator_role["rules"]:
        if rule["apiGroups"] == ["apps"]:
            continue
        resources = [r for r in rule["resources"] if r != "pods/eviction"]
        if resources:
            rules.append({**rule, "resources": resources})
    name = f"mandrill-narrowed-{namespace}"
    account = {"kind": "ServiceAccount", "name": "narrowed", "namespace": namespace}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "narrowed", "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "narrowed", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [account],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "mandrill-cluster-scope",
            },
            "subjects": [account],
        },
    ]
    cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    try:
        yield service_account_kubeconfig(
            cluster, namespace=namespace, name="narrowed", path=tmp_path / "narrowed.kubeconfig"
        )
    finally:
        cluster.kubectl("delete", "clusterrolebinding", name, check=False)
        cluster.kubectl("delete", "clusterrole", name, check=False)


@pytest.mark.usefixtures("mandrill_crds")
async def test_request_the_operator_may_not_carry_out_fails_naming_forbidden(
    api: ApiClient,
    namespace: str,
    narrowed_account: pathlib.Path,
    own_operators: list[OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    ns = namespace
    op = start(
        own_operators,
        kubeconfig=narrowed_account,
        workdir=tmp_path,
        namespaces=ns,
        store_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
    )
    [pod] = await rr.deploy(api, ns, "web", 1)
    await rr.create_request(
        api,
        ns,
        "evict",
        {"target": {"kind": "Pod", "name": pod.metadata.name}, "strategy": "Evict"},
    )
    await rr.create_request(
        api,
        ns,
        "rollout",
        {"target": {"kind": "Deployment", "name": "web"}, "strategy": "RolloutRestart"},
    )

    evict = (await rr.finished(api, ns, "evict"))["status"]
    rollout = (await rr.finished(api, ns, "rollout"))["status"]

    # Planned (the pod could be read), then the eviction itself was refused.
    assert evict["phase"] == "Failed"
    assert evict["reason"] == "RestartFailed"
    assert evict["failed"] == 1
    [target] = evict["targets"]
    assert target["outcome"] == "Failed"
    assert target["message"].startswith(f"Forbidden: evict pod {pod.metadata.name}: ")
    assert 'cannot create resource "pods/eviction"' in target["message"]
    assert await rr.pod_exists(api, ns, pod.metadata.name, pod.metadata.uid)
    # Refused while finding the target: nothing was planned or touched.
    assert rollout["phase"] == "Failed"
    assert rollout["reason"] == "Forbidden"
    assert 'cannot get resource "deployments"' in rollout["message"]
    assert rollout.get("targets", []) == []
    deployment = await client.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert "mandrill.dev/restarted-by" not in (deployment.spec.template.metadata.annotations or {})
    for name in ("evict", "rollout"):
        warnings = [
            e.message
            for e in await rr.events_with(api, ns, name, {"Failed"})
            if e.type == "Warning" and e.reason == "Failed"
        ]
        assert warnings, f"no Warning Event Failed on {name}"
    evict_warnings = [
        e.message for e in await rr.events_for(api, ns, "evict") if e.type == "Warning"
    ]
    assert any("Forbidden" in m for m in evict_warnings), evict_warnings
    rollout_warnings = [
        e.message for e in await rr.events_for(api, ns, "rollout") if e.type == "Warning"
    ]
    assert any(m.startswith("Forbidden: ") for m in rollout_warnings), rollout_warnings
    # A refusal is an outcome, not a crash: the operator is still serving.
    assert op.proc is not None
    assert op.proc.poll() is None
    assert op.stop() == 0


@pytest.fixture
def ha_lease_rbac(cluster: kube.Cluster, operator_rbac: None) -> Iterator[None]:
    """The HA overlay's Role and RoleBinding for the Lease, applied; removed afterwards."""
    objects = [
        d
        for d in render("overlays/ha")
        if d["kind"] in ("Role", "RoleBinding")
        and d["metadata"]["name"] == "mandrill-leader-election"
    ]
    assert len(objects) == 2
    cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    yield
    for kind in ("rolebinding", "role"):
        cluster.kubectl(
            "-n", "mandrill-system", "delete", kind, "mandrill-leader-election", check=False
        )


@pytest.mark.usefixtures("ha_lease_rbac")
def test_ha_service_account_may_hold_its_lease_and_no_other(
    cluster: kube.Cluster, namespace: str
) -> None:
    def may(verb: str, what: str, ns: str = "mandrill-system") -> bool:
        return can_i(cluster, verb, what, "-n", ns, who=SERVICE_ACCOUNT)

    assert may("get", "lease/mandrill")
    assert may("update", "lease/mandrill")
    assert may("create", "leases")  # unrestricted by name (RBAC cannot), so confined to here
    assert may("create", "events")
    for verb in ("get", "update"):
        assert not may(verb, "lease/kube-controller-manager")
    for verb in ("list", "watch", "patch", "delete"):
        assert not may(verb, "lease/mandrill")
    for verb in ("get", "create", "update"):
        assert not may(verb, "lease/mandrill", ns=namespace), f"{verb} a Lease elsewhere"
    assert not may("get", "lease/mandrill", ns="kube-system")
