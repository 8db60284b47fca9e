"""The chart installed with `helm install` on the local cluster's real node.

Collected only with MANDRILL_TEST_HELM_INSTALL=1, which deploy/local/in-cluster.sh
sets after the e2e suite and after it has removed the kustomize installation
(two operators must never run on one cluster at once). It removes mandrill's
CRDs first, so that the install is the one that makes them: run it only
against a cluster whose RestartRequests and CrawlJobs may go.

The release is named apart from the kustomize installation (its objects
that outlive the e2e suite's uninstall, such as ClusterRole mandrill-operator,
are not Helm's to adopt) and lives in a namespace of its own; the real node's
placement and image come from deploy/local/placement, the store's volume from
deploy/local/install/pv.yaml, so nothing here restates them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import yaml

from tests import kube
from tests.helm import chart

collect_ignore = [] if os.environ.get("MANDRILL_TEST_HELM_INSTALL") == "1" else ["test_install.py"]

RELEASE, NAMESPACE = "helm-mandrill", "mandrill-helm"
"""fullname is the release name (it contains "mandrill"): helm-mandrill, helm-mandrill-store, ..."""
CRDS = ("restartrequests.mandrill.dev", "crawljobs.mandrill.dev", "restartschedules.mandrill.dev")
LOCAL = chart.REPO / "deploy" / "local"


@attrs.frozen
class Release:
    """The installed release, and what the tests compare against afterwards."""

    cluster: kube.Cluster
    crd_uids: dict[str, str]
    """Each CRD's UID right after the install: the same objects must outlive the uninstall."""
    installed_after: str
    """The release namespace's creationTimestamp, made just before the install: the CRDs the
    install makes are no older (RFC 3339 in UTC, so the strings compare as times)."""
    selector: str = f"app.kubernetes.io/instance={RELEASE}"

    def helm(self, *args: str, check: bool = True) -> Any:
        return chart.helm(
            "--kubeconfig", str(self.cluster.kubeconfig), "-n", NAMESPACE, *args, check=check
        )

    def pods(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "-n", NAMESPACE, "get", "pods", "-l", self.selector, "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items


def placement_values() -> dict[str, Any]:
    """deploy/local/placement as chart values: the local image, never pulled, and the real
    node's selector and toleration."""
    component = yaml.safe_load((LOCAL / "placement" / "kustomization.yaml").read_text())
    [image] = component["images"]
    [patch] = component["patches"]
    pod = yaml.safe_load(patch["patch"])["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return {
        "image.repository": image["newName"],
        "image.tag": image["newTag"],
        "image.pullPolicy": container["imagePullPolicy"],
        "nodeSelector": pod["nodeSelector"],
        "tolerations": pod["tolerations"],
    }


def store_volume() -> dict[str, Any]:
    """deploy/local/install/pv.yaml's volume (the real node's folder), for this release's claim."""
    volume: dict[str, Any] = yaml.safe_load((LOCAL / "install" / "pv.yaml").read_text())
    volume["metadata"]["name"] = f"{RELEASE}-store"
    volume["spec"]["claimRef"] = {"namespace": NAMESPACE, "name": f"{RELEASE}-store"}
    return volume


def _remove_crds(cluster: kube.Cluster) -> None:
    """Delete mandrill's CRDs (and so every resource of theirs) so the install makes them.

    A CrawlJob keeps a finalizer while the operator crawls it; with no operator
    left, nobody would remove it and the CRD would never go: drop them first."""
    for crd in CRDS:
        if cluster.kubectl("get", "crd", crd, check=False).returncode != 0:
            continue
        listed = json.loads(cluster.kubectl("get", crd, "-A", "-o", "json").stdout)["items"]
        for item in listed:
            if item["metadata"].get("finalizers"):
                meta = item["metadata"]
                cluster.kubectl(
                    "-n", meta["namespace"], "patch", crd, meta["name"], "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}',
                )  # fmt: skip
        cluster.kubectl("delete", "crd", crd, "--wait=true", "--timeout=120s")


def _no_other_operator(cluster: kube.Cluster) -> None:
    """Wait until no mandrill operator pod exists anywhere (terminating ones included): two
    operators on one cluster would both take the tests' requests."""
    selector = "app.kubernetes.io/name=mandrill,app.kubernetes.io/component=operator"
    deadline = time.monotonic() + 90
    while True:
        out = cluster.kubectl("get", "pods", "-A", "-l", selector, "-o", "name").stdout.split()
        if not out:
            return
        assert time.monotonic() < deadline, f"another mandrill operator still runs: {out}"
        time.sleep(1)


@pytest.fixture(scope="module")
def release(cluster: kube.Cluster) -> Iterator[Release]:
    """`helm install --wait` of deploy/helm/mandrill with the real node's values; uninstalled
    (if a test has not) and its namespace and volume deleted afterwards."""
    _no_other_operator(cluster)
    _remove_crds(cluster)
    cluster.kubectl("wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=120s", check=False)
    cluster.kubectl("create", "namespace", NAMESPACE)
    # What docs/helm.md tells users to do, since Helm does not label the namespace.
    cluster.kubectl(
        "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"
    )
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(store_volume()))
    made = json.loads(cluster.kubectl("get", "namespace", NAMESPACE, "-o", "json").stdout)
    before: str = made["metadata"]["creationTimestamp"]
    helm = Release(cluster=cluster, crd_uids={}, installed_after=before)
    try:
        start = time.monotonic()
        helm.helm(
            "install", RELEASE, str(chart.CHART), *chart.set_args(placement_values()),
            "--wait", "--timeout", "180s",
        )  # fmt: skip
        print(f"\nhelm install --wait to a Ready pod: {time.monotonic() - start:.1f}s")
        uids = {
            crd: json.loads(cluster.kubectl("get", "crd", crd, "-o", "json").stdout)["metadata"][
                "uid"
            ]
            for crd in CRDS
        }
        yield attrs.evolve(helm, crd_uids=uids)
    finally:
        helm.helm(
            "uninstall", RELEASE, "--ignore-not-found", "--wait", "--timeout", "120s", check=False
        )
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", f"{RELEASE}-store", "--wait=false", check=False)
