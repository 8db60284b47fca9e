"""deploy/helm/mandrill rendered by the pinned helm, and compared with kustomize's objects.

The chart and the kustomize overlays are two spellings of one installation:
`rendered_objects` keys each by (kind, namespace, name), `normalise` removes
only what Helm must add (its bookkeeping labels) and what the two must spell
differently (the image tag, the release namespace), and `differences` names
every path where two objects still disagree.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from tests import kube

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "mandrill"
RELEASE, NAMESPACE = "mandrill", "mandrill-system"
"""The release the comparison renders: its names are deploy/base's."""

Manifest = dict[str, Any]
Key = tuple[str, str, str]
"""(kind, namespace or "", name): what identifies an object in a rendering."""


def _version(name: str) -> str:
    for line in (REPO / "deploy" / "local" / "versions.env").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise LookupError(f"{name} is not in deploy/local/versions.env")


def helm_path() -> pathlib.Path:
    """helm as deploy/local/build.sh builds it (HELM_VERSION), else one on PATH."""
    bin_dir = pathlib.Path(os.environ.get("MANDRILL_BIN_DIR", REPO / ".cache" / "bin"))
    pinned = bin_dir / f"helm-{_version('HELM_VERSION')}" / "helm"
    found = str(pinned) if pinned.exists() else shutil.which("helm")
    if found is None:
        raise RuntimeError(f"no helm at {pinned}: run deploy/local/build.sh (make build-cluster)")
    return pathlib.Path(found)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with its state in a folder of its own under $TMPDIR: no developer repos leak in."""
    home = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "mandrill-helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [str(helm_path()), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def set_args(values: Mapping[str, Any]) -> list[str]:
    """`--set-json key=value` for each dotted key, so lists and types arrive as written."""
    return [
        arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]


def template(
    values: Mapping[str, Any] | None = None, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`helm template mandrill deploy/helm/mandrill --namespace mandrill-system --include-crds`."""
    return helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds",
        *set_args(values or {}), check=check,
    )  # fmt: skip


def objects(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm_objects(values: Mapping[str, Any] | None = None) -> list[Manifest]:
    return objects(template(values).stdout)


def kustomize_objects(overlay: str) -> list[Manifest]:
    """`kubectl kustomize deploy/<overlay>`."""
    result = subprocess.run(
        [str(kube.kubectl_path()), "kustomize", str(REPO / "deploy" / overlay)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed: {result.stderr}"
    return objects(result.stdout)


def key(doc: Manifest) -> Key:
    meta = doc["metadata"]
    return (doc["kind"], meta.get("namespace", ""), meta["name"])


def by_key(docs: Iterable[Manifest]) -> dict[Key, Manifest]:
    keyed: dict[Key, Manifest] = {}
    for doc in docs:
        assert key(doc) not in keyed, f"rendered twice: {key(doc)}"
        keyed[key(doc)] = doc
    return keyed


def chart_meta() -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return meta


def helm_labels() -> dict[str, str]:
    """The labels Helm's bookkeeping adds, with the values this release must give them."""
    meta = chart_meta()
    return {
        "helm.sh/chart": f"{meta['name']}-{meta['version']}",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/version": str(meta["appVersion"]),
    }


def _strip_labels(node: Any, labels: Mapping[str, str], parent: str = "") -> None:
    """Drop Helm's labels, where they carry the expected value, from label maps and selectors."""
    if isinstance(node, dict):
        if parent in ("labels", "matchLabels", "selector"):
            for name, value in labels.items():
                if node.get(name) == value:
                    del node[name]
        for child_key, child in node.items():
            _strip_labels(child, labels, child_key)
    elif isinstance(node, list):
        for child in node:
            _strip_labels(child, labels, parent)


def normalise(helm_docs: Iterable[Manifest]) -> list[Manifest]:
    """Helm's objects as kustomize spells them: without Helm's labels, with deploy/base's image.

    The image: the chart's default tag is its appVersion (a released chart
    runs the matching release), deploy/base's is `dev` (set per overlay with
    `kustomize edit set image`). Only exactly `<repository>:<appVersion>`
    becomes `mandrill:dev`, so any other image still shows as a difference.
    """
    docs = copy.deepcopy(list(helm_docs))
    labels = helm_labels()
    released = f"mandrill:{chart_meta()['appVersion']}"
    for doc in docs:
        _strip_labels(doc, labels)
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["image"] == released:
                    container["image"] = "mandrill:dev"
    return docs


def without_namespace(kustomize_docs: Iterable[Manifest]) -> list[Manifest]:
    """kustomize's objects but the Namespace, which Helm cannot own: a release is
    recorded in its namespace before any of its objects is made, so the namespace
    comes from `helm install --create-namespace` (or beforehand), never the chart."""
    return [
        d for d in kustomize_docs if (d["kind"], d["metadata"]["name"]) != ("Namespace", NAMESPACE)
    ]


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every path where `actual` differs from `expected`, one line each."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for name in sorted(expected.keys() | actual.keys()):
            where = f"{path}.{name}"
            if name not in actual:
                found.append(f"{where}: missing (expected {expected[name]!r})")
            elif name not in expected:
                found.append(f"{where}: unexpected {actual[name]!r}")
            else:
                found += differences(expected[name], actual[name], where)
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def diff_renderings(expected: Iterable[Manifest], actual: Iterable[Manifest]) -> list[str]:
    """Objects missing, extra, or different, by (kind, namespace, name) and path."""
    want, got = by_key(expected), by_key(actual)
    found = [f"{k}: missing" for k in sorted(want.keys() - got.keys())]
    found += [f"{k}: unexpected" for k in sorted(got.keys() - want.keys())]
    for k in sorted(want.keys() & got.keys()):
        found += [f"{k} {line}" for line in differences(want[k], got[k])]
    return found


def as_variant(docs: Iterable[Manifest]) -> list[Manifest]:
    """Objects as an overlay and a values file may both spell them, for comparing variants.

    Two spellings differ there without meaning anything: the order of
    environment variables (a strategic-merge patch puts its own first; none
    refers to another, so order is meaningless), and the part-of label, which
    deploy/base's `labels` puts on the base's objects only, not on those an
    overlay adds. The default values are compared without this.
    """
    docs = copy.deepcopy(list(docs))
    for doc in docs:
        doc["metadata"].get("labels", {}).pop("app.kubernetes.io/part-of", None)
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container["env"] = sorted(container.get("env", []), key=lambda e: e["name"])
    return docs
