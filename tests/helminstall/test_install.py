"""`helm install` of deploy/helm/mandrill on the real node: a Ready pod that does the work, and
an uninstall that leaves the CRDs.

Covers: `helm install --wait` with the local image and the real node's
placement reaches a Ready pod (through its real probes) on the real node;
the install made the CRDs (from the chart's crds/); the operator it runs
acknowledges a RestartRequest and deletes its target; `helm uninstall`
removes the operator's objects but leaves the CRDs, the very same objects,
and the RestartRequests in them (Helm's convention, README "Install").
The tests run in file order: the last uninstalls.
"""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio.client import ApiClient

from tests.helminstall.conftest import CRDS, NAMESPACE, RELEASE, Release
from tests.kube import eventually
from tests.restart import rr

pytestmark = pytest.mark.helm


def test_install_reaches_a_ready_pod_on_the_real_node(release: Release) -> None:
    status = json.loads(release.helm("status", RELEASE, "-o", "json").stdout)
    [pod] = release.pods()
    node = json.loads(
        release.cluster.kubectl("get", "node", pod["spec"]["nodeName"], "-o", "json").stdout
    )

    assert status["info"]["status"] == "deployed"
    assert node["metadata"]["labels"].get("mandrill.dev/real-node") == "true"
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    [container] = pod["status"]["containerStatuses"]
    assert container["image"].endswith("localhost/mandrill:dev"), container["image"]
    assert container["restartCount"] == 0
    for crd in CRDS:
        got = json.loads(release.cluster.kubectl("get", "crd", crd, "-o", "json").stdout)
        established = {c["type"]: c["status"] for c in got["status"]["conditions"]}
        assert established["Established"] == "True", crd
        # Made by this install (the fixture removed the e2e suite's), not found there.
        assert got["metadata"]["creationTimestamp"] >= release.installed_after, crd


async def test_acknowledges_a_restart_request(
    release: Release, api: ApiClient, namespace: str
) -> None:
    [target] = await rr.deploy(api, namespace, "web", 1)
    await rr.create_request(
        api,
        namespace,
        "restart-web",
        {"target": {"kind": "Pod", "name": target.metadata.name}, "strategy": "Delete"},
    )

    body = await rr.finished(api, namespace, "restart-web")

    assert body["status"]["phase"] == "Succeeded", body["status"]
    assert not await rr.pod_exists(api, namespace, target.metadata.name, target.metadata.uid)
    # The operator the release runs did it (the only one on the cluster): its log names it.
    logs = release.cluster.kubectl("-n", NAMESPACE, "logs", f"deployment/{RELEASE}").stdout
    assert "restart-web" in logs


async def test_uninstall_leaves_the_crds_and_their_resources(
    release: Release, api: ApiClient, namespace: str
) -> None:
    [target] = await rr.deploy(api, namespace, "kept", 1)
    await rr.create_request(
        api,
        namespace,
        "kept",
        {"target": {"kind": "Pod", "name": target.metadata.name}, "dryRun": True},
    )
    await rr.finished(api, namespace, "kept")

    release.helm("uninstall", RELEASE, "--wait", "--timeout", "120s")

    assert release.helm("status", RELEASE, check=False).returncode != 0
    await eventually(lambda: _none(release), what="the operator's pods gone", within=60)
    for kind, name in [
        ("deployment", RELEASE),
        ("serviceaccount", RELEASE),
        ("pvc", f"{RELEASE}-store"),
        ("clusterrole", f"{RELEASE}-operator"),
        ("clusterrolebinding", f"{RELEASE}-cluster-scope"),
    ]:
        got = release.cluster.kubectl("-n", NAMESPACE, "get", kind, name, check=False)
        assert got.returncode != 0, (kind, name)
        assert "NotFound" in got.stderr, (kind, name, got.stderr)
    for crd, uid in release.crd_uids.items():
        got = json.loads(release.cluster.kubectl("get", "crd", crd, "-o", "json").stdout)
        assert got["metadata"]["uid"] == uid, f"{crd} was deleted and made again"
        assert "deletionTimestamp" not in got["metadata"], crd
    kept = await rr.get_request(api, namespace, "kept")
    assert rr.acknowledged(kept)


async def _none(release: Release) -> bool:
    return not release.pods()
