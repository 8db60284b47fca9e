"""Fixtures for the deployment tests: the manifests as kustomize renders them.

Rendering needs only kubectl (kustomize is built into it), not a cluster, so
the static checks run in the fast tier; the server-side checks use `cluster`.
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import kube

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("cluster-wide", "namespaced")
TEAM_NAMESPACES = ("team-a", "team-b")
"""The example namespaces of overlays/namespaced."""
SERVICE_ACCOUNT = "system:serviceaccount:mandrill-system:mandrill"

Manifest = dict[str, Any]


@functools.cache
def _render(path: pathlib.Path) -> tuple[Manifest, ...]:
    result = subprocess.run(
        [str(kube.kubectl_path()), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(relative: str) -> list[Manifest]:
    """`kubectl kustomize deploy/<relative>`, one dict per object (a fresh copy each call)."""
    return [yaml.safe_load(yaml.safe_dump(doc)) for doc in _render(DEPLOY / relative)]


def find(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container_env(deployment: Manifest) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="session")
def team_namespaces(cluster: kube.Cluster) -> Iterator[tuple[str, ...]]:
    """overlays/namespaced's namespaces, made if missing (RoleBindings need them); those
    made here are deleted at the end of the session."""
    made = []
    for name in TEAM_NAMESPACES:
        # One still terminating (from an earlier run) refuses new content: let it go first.
        cluster.kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=120s", check=False)
        if cluster.kubectl("get", "namespace", name, check=False).returncode != 0:
            cluster.kubectl("create", "namespace", name)
            made.append(name)
    yield TEAM_NAMESPACES
    for name in made:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def mandrill_crds(cluster: kube.Cluster) -> None:
    """Every CRD, applied the way deploy/base applies them (crds/kustomization.yml)."""
    cluster.kubectl("apply", "-k", str(REPO / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/restartrequests.mandrill.dev",
        "crd/crawljobs.mandrill.dev",
        "--timeout=60s",
    )


def can_i(cluster: kube.Cluster, verb: str, resource: str, *where: str, who: str) -> bool:
    """`kubectl auth can-i` as `who`, answered by the API server's authorizer."""
    result = cluster.kubectl("auth", "can-i", verb, resource, *where, f"--as={who}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {verb} {resource}: {answer!r} {result.stderr}"
    return answer == "yes"
