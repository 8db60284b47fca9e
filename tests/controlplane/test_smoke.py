"""Smoke tests of the local control plane: the behaviours mandrill relies on are real.

Covers: scheduling onto kwok's fake nodes and readiness; the ReplicaSet
controller replacing a deleted pod; `kubectl rollout restart`; the Eviction
API honouring a PodDisruptionBudget; CRD schema and CEL validation; RBAC
denying a user without rights. Each test runs in a namespace of its own.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests import kube
from tests.kube import eventually


def _deployment(name: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image="registry.invalid/app:1")]
                ),
            ),
        ),
    )


def _running_and_ready(pod: client.V1Pod) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


async def _ready_pods(api: ApiClient, namespace: str, app: str, count: int) -> list[client.V1Pod]:
    """Wait until exactly `count` pods of `app` are Running and Ready; return them."""
    core = client.CoreV1Api(api)

    async def probe() -> list[client.V1Pod] | None:
        pods = (await core.list_namespaced_pod(namespace, label_selector=f"app={app}")).items
        ready = [p for p in pods if _running_and_ready(p)]
        return ready if len(ready) == count and len(pods) == count else None

    return await eventually(probe, what=f"{count} Running+Ready pods of {app}")


async def test_deployment_pods_run_ready_on_fake_nodes(api: ApiClient, namespace: str) -> None:
    await client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("web", 3))

    pods = await _ready_pods(api, namespace, "web", 3)

    nodes = (await client.CoreV1Api(api).list_node(label_selector="type=kwok")).items
    fake_nodes = {n.metadata.name for n in nodes}
    assert len(fake_nodes) >= 2
    assert {p.spec.node_name for p in pods} <= fake_nodes
    assert all(p.status.pod_ip for p in pods), "kwok assigns pod IPs"


async def test_deleted_pod_is_replaced_with_new_uid(api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    await client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("web", 3))
    before = await _ready_pods(api, namespace, "web", 3)
    victim = before[0]

    await core.delete_namespaced_pod(victim.metadata.name, namespace, grace_period_seconds=0)

    async def replaced() -> set[str] | None:
        pods = (await core.list_namespaced_pod(namespace, label_selector="app=web")).items
        uids = {p.metadata.uid for p in pods if _running_and_ready(p)}
        return uids if len(uids) == 3 and victim.metadata.uid not in uids else None

    after = await eventually(replaced, what="a Running replacement for the deleted pod")
    old = {p.metadata.uid for p in before}
    assert len(after - old) == 1, "exactly one new pod replaces the deleted one"


async def test_rollout_restart_rolls_a_new_replicaset(
    api: ApiClient, namespace: str, cluster: kube.Cluster
) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(namespace, _deployment("web", 2))
    await _ready_pods(api, namespace, "web", 2)
    first = (await apps.list_namespaced_replica_set(namespace, label_selector="app=web")).items
    assert len(first) == 1

    cluster.kubectl("-n", namespace, "rollout", "restart", "deployment/web")
    cluster.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s")

    replica_sets = (
        await apps.list_namespaced_replica_set(namespace, label_selector="app=web")
    ).items
    assert len(replica_sets) == 2
    new = next(rs for rs in replica_sets if rs.metadata.uid != first[0].metadata.uid)
    annotations = new.spec.template.metadata.annotations or {}
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert new.status.ready_replicas == 2
    pods = await _ready_pods(api, namespace, "web", 2)
    owners = {ref.uid for p in pods for ref in p.metadata.owner_references}
    assert owners == {new.metadata.uid}, "every running pod belongs to the new ReplicaSet"


async def _disruptions_allowed(api: ApiClient, namespace: str, name: str, want: int) -> None:
    policy = client.PolicyV1Api(api)

    async def probe() -> bool:
        pdb = await policy.read_namespaced_pod_disruption_budget(name, namespace)
        status = pdb.status
        return bool(
            status is not None
            and status.observed_generation == pdb.metadata.generation
            and status.disruptions_allowed == want
        )

    await eventually(probe, what=f"PDB {name} to allow {want} disruptions")


async def test_eviction_respects_pod_disruption_budget(api: ApiClient, namespace: str) -> None:
    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    await client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("web", 3))
    pods = await _ready_pods(api, namespace, "web", 3)
    pdb = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1PodDisruptionBudgetSpec(
            min_available=3, selector=client.V1LabelSelector(match_labels={"app": "web"})
        ),
    )
    await policy.create_namespaced_pod_disruption_budget(namespace, pdb)
    await _disruptions_allowed(api, namespace, "web", 0)
    victim = pods[0].metadata.name

    def eviction() -> client.V1Eviction:
        return client.V1Eviction(metadata=client.V1ObjectMeta(name=victim, namespace=namespace))

    with pytest.raises(ApiException) as blocked:
        await core.create_namespaced_pod_eviction(victim, namespace, eviction())
    assert blocked.value.status == 429
    assert "disruption budget" in json.loads(blocked.value.body)["message"]

    await policy.patch_namespaced_pod_disruption_budget(
        "web", namespace, {"spec": {"minAvailable": 2}}
    )
    await _disruptions_allowed(api, namespace, "web", 1)
    await core.create_namespaced_pod_eviction(victim, namespace, eviction())

    async def gone() -> bool:
        try:
            pod = await core.read_namespaced_pod(victim, namespace)
        except ApiException as e:
            return e.status == 404
        return pod.metadata.deletion_timestamp is not None

    await eventually(gone, what=f"evicted pod {victim} to be deleted")


def _widget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["min", "max"],
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.min <= self.max",
                                            "message": "min must not exceed max",
                                            "fieldPath": ".min",
                                        }
                                    ],
                                    "properties": {
                                        "min": {"type": "integer", "minimum": 0},
                                        "max": {"type": "integer"},
                                        "colour": {"type": "string", "enum": ["red", "blue"]},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def widget_crd(cluster: kube.Cluster) -> Any:
    group = f"smoke-{secrets.token_hex(3)}.mandrill.dev"
    crd = _widget_crd(group)
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(crd))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")
    yield group
    cluster.kubectl("delete", f"crd/widgets.{group}", "--wait=false")


def test_crd_schema_and_cel_reject_bad_objects(
    cluster: kube.Cluster, namespace: str, widget_crd: str
) -> None:
    def apply(spec: dict[str, Any]) -> Any:
        body = {
            "apiVersion": f"{widget_crd}/v1",
            "kind": "Widget",
            "metadata": {"name": f"w-{secrets.token_hex(2)}"},
            "spec": spec,
        }
        return cluster.kubectl(
            "-n", namespace, "apply", "-f", "-", stdin=json.dumps(body), check=False
        )

    ok = apply({"min": 1, "max": 2, "colour": "red"})
    assert ok.returncode == 0, ok.stderr

    cel = apply({"min": 5, "max": 2})
    assert cel.returncode != 0
    assert "spec.min" in cel.stderr
    assert "min must not exceed max" in cel.stderr

    enum = apply({"min": 1, "max": 2, "colour": "green"})
    assert enum.returncode != 0
    assert "spec.colour" in enum.stderr
    assert "supported values" in enum.stderr.lower()

    minimum = apply({"min": -1, "max": 2})
    assert minimum.returncode != 0
    assert "spec.min" in minimum.stderr


def test_rbac_denies_a_user_without_rights(cluster: kube.Cluster, namespace: str) -> None:
    denied = cluster.kubectl("--as=mallory", "-n", namespace, "get", "pods", check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert 'User "mallory" cannot list resource "pods"' in denied.stderr

    # The same user with a Role bound is let in: RBAC decides, not a blanket deny.
    cluster.kubectl(
        "-n", namespace, "create", "role", "pod-reader", "--verb=get,list", "--resource=pods"
    )
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "mallory-reads",
        "--role=pod-reader",
        "--user=mallory",
    )
    allowed = cluster.kubectl("--as=mallory", "-n", namespace, "get", "pods", check=False)
    assert allowed.returncode == 0, allowed.stderr
    still_denied = cluster.kubectl(
        "--as=mallory", "-n", namespace, "create", "configmap", "nope", check=False
    )
    assert still_denied.returncode != 0
    assert 'cannot create resource "configmaps"' in still_denied.stderr
