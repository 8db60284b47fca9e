"""The in-cluster manifests (deploy/) and the image (deploy/Dockerfile) as code.

Covers: each overlay is accepted by the real API server (`kubectl apply
--dry-run=server -k`), the operator's pod is admitted under the "restricted"
Pod Security Standard, RBAC has no wildcards and every rule says whether kopf
or mandrill needs it, the settings that must agree do (grace period and drain,
probe and liveness port, metrics port, store path and volume, image user and
pod user), the namespaced overlay binds exactly the namespaces it watches,
every CRD is installed (and nothing else lacks the app label the uninstall
in docs/operations.md selects by), the HA overlay adds only leader election
(two replicas rolled one at a time, the downward API, a PodDisruptionBudget,
the Lease's Role) to the cluster-wide installation, and the kind script parses.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from mandrill import config
from tests import kube
from tests.deploy.conftest import (
    DEPLOY,
    OVERLAYS,
    REPO,
    TEAM_NAMESPACES,
    Manifest,
    container_env,
    find,
    render,
)
from tests.restart.conftest import DENIED_NAMESPACE

RBAC_SOURCES = [
    *sorted((DEPLOY / "rbac").glob("*.yaml")),
    DEPLOY / "base" / "user-roles.yaml",
    DEPLOY / "overlays" / "namespaced" / "rolebindings.yaml",
    DEPLOY / "overlays" / "ha" / "lease-rbac.yaml",
]
ROLE_KINDS = ("ClusterRole", "Role")


@pytest.mark.usefixtures("operator_rbac", "team_namespaces")
@pytest.mark.parametrize(
    "overlay", [f"overlays/{o}" for o in (*OVERLAYS, "ha")] + ["local/install"]
)
def test_overlay_passes_server_side_dry_run(cluster: kube.Cluster, overlay: str) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "-k", str(DEPLOY / overlay), check=False)

    assert result.returncode == 0, result.stderr
    # Admission warnings (PodSecurity, deprecated APIs) arrive on stderr.
    assert "Warning" not in result.stderr, result.stderr
    applied = set(re.findall(r"^(\S+) \S+ \(server dry run\)$", result.stdout, re.MULTILINE))
    expected = {f"{_kubectl_kind(d)}/{d['metadata']['name']}" for d in render(overlay)}
    assert applied == expected


def _kubectl_kind(doc: Manifest) -> str:
    """How kubectl names an object's kind in its output: `deployment.apps`, `namespace`."""
    group = doc["apiVersion"].rpartition("/")[0]
    kind = doc["kind"].lower()
    return f"{kind}.{group}" if group else kind


@pytest.mark.usefixtures("operator_rbac")
def test_operator_pod_is_admitted_under_restricted_pod_security(cluster: kube.Cluster) -> None:
    docs = render("base")
    namespace = find(docs, "Namespace", "mandrill-system")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    template = find(docs, "Deployment", "mandrill")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mandrill-admission-check", "namespace": "mandrill-system"},
        "spec": template["spec"],
    }

    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod), check=False
    )

    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_rbac_has_no_wildcards_and_every_rule_says_who_needs_it() -> None:
    for overlay in (*OVERLAYS, "ha"):
        for doc in render(f"overlays/{overlay}"):
            if doc["kind"] not in ROLE_KINDS:
                continue
            for rule in doc["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), (doc["metadata"]["name"], rule)
    for path in RBAC_SOURCES:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("- apiGroups:"):
                comment = _comment_above(lines, i)
                assert re.match(r"# (framework \(kopf\)|application|users)", comment), (
                    f"{path.relative_to(REPO)}:{i + 1}: rule without a "
                    f"'framework (kopf)' / 'application' / 'users' comment"
                )


def _comment_above(lines: list[str], index: int) -> str:
    """The first line of the comment block right above `lines[index]`."""
    start = index
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    return lines[start] if start < index else ""


def test_deployment_settings_agree_with_each_other() -> None:
    docs = render("base")
    deployment = find(docs, "Deployment", "mandrill")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    env = container_env(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert container["image"] == "mandrill:dev"
    assert pod["serviceAccountName"] == "mandrill"
    # SIGKILL must not come before the drain (and the final patches) are done.
    assert pod["terminationGracePeriodSeconds"] >= float(env["MANDRILL_DRAIN_TIMEOUT"]) + 5
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert ports["health"] == int(env["MANDRILL_LIVENESS_PORT"])
    assert ports["metrics"] == int(env["MANDRILL_METRICS_PORT"])
    service = find(docs, "Service", "mandrill-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    # The store lives on the claim; the only other writable place is /tmp.
    store_dir = str(pathlib.PurePosixPath(env["MANDRILL_STORE_URL"].removeprefix("sqlite:///")))
    assert store_dir.startswith("/var/lib/mandrill/")
    assert volumes[mounts["/var/lib/mandrill"]]["persistentVolumeClaim"] == {
        "claimName": find(docs, "PersistentVolumeClaim", "mandrill-store")["metadata"]["name"]
    }
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert set(mounts) == {"/var/lib/mandrill", "/tmp"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()


def test_dockerfile_agrees_with_the_deployment() -> None:
    lines = _dockerfile_instructions()
    deployment = find(render("base"), "Deployment", "mandrill")
    pod_security = deployment["spec"]["template"]["spec"]["securityContext"]

    [user] = [v for k, v in lines if k == "USER"]
    assert user == f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}"
    [entrypoint] = [v for k, v in lines if k == "ENTRYPOINT"]
    # Exec form (a JSON list), so the operator itself is PID 1 and gets SIGTERM.
    assert json.loads(entrypoint) == ["/opt/mandrill/bin/mandrill", "run"]
    froms = [v for k, v in lines if k == "FROM"]
    assert len(froms) == 2, "a build stage and a runtime stage"
    assert "python:3.11-slim" in (DEPLOY / "Dockerfile").read_text()
    env = " ".join(v for k, v in lines if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert f"MANDRILL_STORE_URL={container_env(deployment)['MANDRILL_STORE_URL']}" in env.split()
    # The build context is an allow-list: everything ignored, then the package let back in.
    ignored = [
        line for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] not in "#"
    ]
    assert ignored[:4] == ["*", "!pyproject.toml", "!README.md", "!operator/"]


def test_constraints_pin_every_dependency_within_pyproject() -> None:
    """deploy/constraints.txt (`make constraints`) is what the image installs: it must
    pin each of pyproject.toml's dependencies (and the build backend) to a version
    pyproject.toml allows, or the image would install something else unpinned."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    wanted = pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in deploy/constraints.txt: make constraints"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"deploy/constraints.txt pins {name}=={pins[name]}, outside {requirement}:"
            " make constraints"
        )


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.strip().partition(" ") for line in joined.splitlines())
        if word
    ]


def test_namespaced_overlay_binds_exactly_the_namespaces_it_watches() -> None:
    docs = render("overlays/namespaced")
    watched = container_env(find(docs, "Deployment", "mandrill"))["MANDRILL_NAMESPACES"]
    # The operator's own namespace has the workers' Role (deploy/rbac/crawl-workers.yaml).
    bindings = [
        d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["kind"] == "ClusterRole"
    ]
    own = [d["metadata"]["name"] for d in docs if d["kind"] == "RoleBinding" and d not in bindings]
    assert own == ["mandrill-crawl-workers"]
    cluster_bindings = {d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"}

    assert tuple(watched.split(",")) == TEAM_NAMESPACES
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(watched.split(","))
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "mandrill-operator",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "mandrill", "namespace": "mandrill-system"}
        ]
    # Cluster-wide, only what kopf must see cluster-wide (CRDs, namespaces).
    assert cluster_bindings == {"mandrill-cluster-scope"}
    scope = find(docs, "ClusterRole", "mandrill-cluster-scope")
    assert {r for rule in scope["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert {v for rule in scope["rules"] for v in rule["verbs"]} == {"list", "watch"}
    assert "MANDRILL_NAMESPACES" not in container_env(
        find(render("overlays/cluster-wide"), "Deployment", "mandrill")
    )


def test_base_installs_every_crd_and_labels_all_else() -> None:
    on_disk = {
        yaml.safe_load(path.read_text())["metadata"]["name"]
        for path in (REPO / "crds").glob("*.yaml")
    }
    rendered = {d["metadata"]["name"] for d in render("base") if d["kind"].endswith("Definition")}

    assert on_disk == {
        "restartrequests.mandrill.dev",
        "crawljobs.mandrill.dev",
        "restartschedules.mandrill.dev",
    }
    assert rendered == on_disk
    # docs/operations.md "Uninstall" removes all but the CRDs by this label: CRDs must not carry it.
    for doc in render("base"):
        labelled = doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "mandrill"
        assert labelled != doc["kind"].endswith("Definition"), doc["metadata"]["name"]


def _template(docs: list[Manifest]) -> Manifest:
    template: Manifest = find(docs, "Deployment", "mandrill")["spec"]["template"]
    return template


def test_local_install_adds_only_image_placement_and_a_volume() -> None:
    base, local = render("overlays/cluster-wide"), render("local/install")
    added = [d for d in local if (d["kind"], d["metadata"]["name"]) not in
             {(b["kind"], b["metadata"]["name"]) for b in base}]  # fmt: skip
    assert [(d["kind"], d["metadata"]["name"]) for d in added] == [
        ("PersistentVolume", "mandrill-store")
    ]
    volume = added[0]["spec"]
    claim = find(local, "PersistentVolumeClaim", "mandrill-store")
    assert volume["claimRef"] == {"namespace": "mandrill-system", "name": "mandrill-store"}
    assert volume["accessModes"] == claim["spec"]["accessModes"]
    assert volume["capacity"]["storage"] == claim["spec"]["resources"]["requests"]["storage"]
    assert volume["local"]["path"] == "/run/mandrill-node/volumes/mandrill-store"  # node.sh's
    spec, base_spec = _template(local)["spec"], _template(base)["spec"]
    assert spec["nodeSelector"] == {"mandrill.dev/real-node": "true"}
    assert spec["tolerations"] == [
        {"key": "mandrill.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ]
    [container], [base_container] = spec["containers"], base_spec["containers"]
    assert (container["image"], container["imagePullPolicy"]) == ("localhost/mandrill:dev", "Never")
    for changed in ("image", "imagePullPolicy"):
        del container[changed], base_container[changed]
    for changed in ("nodeSelector", "tolerations", "containers"):
        spec.pop(changed)
        base_spec.pop(changed, None)
    assert container == base_container
    assert spec == base_spec


def test_kind_and_the_local_node_deploy_the_same_e2e_settings() -> None:
    # deploy/e2e (a Component) on top of each installation, and nothing else.
    for overlay, installation in (
        ("kind", "overlays/cluster-wide"),
        ("local/e2e", "local/install"),
        ("local/ha", "overlays/ha"),
    ):
        docs = render(overlay)
        assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
            (d["kind"], d["metadata"]["name"]) for d in render(installation)
        )
        env = container_env(find(docs, "Deployment", "mandrill"))
        installed = container_env(find(render(installation), "Deployment", "mandrill"))
        changed = {k: v for k, v in env.items() if installed.get(k) != v}
        assert changed == {
            "MANDRILL_DENIED_NAMESPACES": f"kube-system,{DENIED_NAMESPACE}",
            "MANDRILL_CRAWL_ALLOW_PRIVATE": "true",
            "MANDRILL_DRAIN_TIMEOUT": "5",
        }, overlay
        assert "MANDRILL_NAMESPACES" not in env
        grace = _template(docs)["spec"]["terminationGracePeriodSeconds"]
        assert grace >= float(env["MANDRILL_DRAIN_TIMEOUT"]) + 5


SCRIPTS = ("kind/e2e.sh", "e2e/run.sh", "rollout.sh", "local/in-cluster.sh", "local/test.sh")


@pytest.mark.parametrize("script", SCRIPTS)
def test_e2e_scripts_are_valid_bash(script: str) -> None:
    path = DEPLOY / script
    checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert path.stat().st_mode & 0o111, f"{script} must be executable"
    shellcheck = shutil.which("shellcheck")
    if shellcheck:  # optional: the stricter check where the tool is installed
        linted = subprocess.run(
            [shellcheck, "-x", str(path)], capture_output=True, text=True, check=False
        )
        assert linted.returncode == 0, linted.stdout


def _env_of(deployment: Manifest) -> dict[str, Any]:
    """The container's env by name: a value, or a valueFrom (the downward API)."""
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_ha_overlay_adds_leader_election_and_nothing_else() -> None:
    base, ha = render("overlays/cluster-wide"), render("overlays/ha")
    names = {(b["kind"], b["metadata"]["name"]) for b in base}
    added = sorted(
        (d["kind"], d["metadata"]["name"])
        for d in ha
        if (d["kind"], d["metadata"]["name"]) not in names
    )
    assert added == [
        ("PodDisruptionBudget", "mandrill"),
        ("Role", "mandrill-leader-election"),
        ("RoleBinding", "mandrill-leader-election"),
    ]
    deployment = find(ha, "Deployment", "mandrill")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = _env_of(deployment)
    assert env["MANDRILL_LEADER_ELECTION"] == "true"
    assert config.boolean(env["MANDRILL_LEADER_ELECTION"])
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    changed = {
        k for k, v in env.items() if _env_of(find(base, "Deployment", "mandrill")).get(k) != v
    }
    assert changed == {"MANDRILL_LEADER_ELECTION", "MANDRILL_STORE_URL"}
    # PostgreSQL from a Secret, shared by the replicas: no volume claim to share.
    assert env["MANDRILL_STORE_URL"] == {"secretKeyRef": {"name": "mandrill-store", "key": "url"}}
    [container] = spec["template"]["spec"]["containers"]
    store_env = [e for e in container["env"] if e["name"] == "MANDRILL_STORE_URL"]
    assert store_env == [{"name": "MANDRILL_STORE_URL", "valueFrom": env["MANDRILL_STORE_URL"]}]
    assert not [d for d in ha if d["kind"] == "PersistentVolumeClaim"]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["store"]
    assert "persistentVolumeClaim" not in volumes["store"]
    # The drain, then the release, fit in the grace period.
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= float(env["MANDRILL_DRAIN_TIMEOUT"]) + 5
    labels = spec["template"]["metadata"]["labels"]
    pdb = find(ha, "PodDisruptionBudget", "mandrill")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["minAvailable"] < spec["replicas"], "a drain may evict one replica, not both"
    # Spread over nodes where the scheduler can: a lost node leaves a standby.
    [preferred] = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()


def test_leases_role_is_one_lease_in_the_operators_namespace() -> None:
    ha = render("overlays/ha")
    deployment = find(ha, "Deployment", "mandrill")
    role = find(ha, "Role", "mandrill-leader-election")
    binding = find(ha, "RoleBinding", "mandrill-leader-election")
    namespace = deployment["metadata"]["namespace"]

    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    lease_rules = [r for r in role["rules"] if r["apiGroups"] == ["coordination.k8s.io"]]
    assert sorted((tuple(r["verbs"]), tuple(r.get("resourceNames", ()))) for r in lease_rules) == [
        (("create",), ()),  # RBAC cannot restrict create by name: the namespace does
        (("get", "update"), (config.Settings().leader_election_lease,)),
    ]
    assert {r["resources"][0] for r in role["rules"]} == {"leases", "events"}
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "mandrill-leader-election",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mandrill", "namespace": namespace}
    ]
