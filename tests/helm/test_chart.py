"""deploy/helm/mandrill: linted, the same installation as kustomize's, and honest about its values.

Covers: `helm lint` and `helm lint --strict` pass (default and HA values);
the chart's crds/ are crds/*.yaml byte for byte and its appVersion is the
operator's version; with default values `helm template` renders exactly the
objects `kubectl kustomize deploy/overlays/cluster-wide` does (but the
Namespace, Helm's labels and the image tag: tests/helm/chart.py says why),
with watchNamespaces those of overlays/namespaced, with replicas 2 those of
overlays/ha; postgres, the deny list, metrics off and extraEnv render what
they claim; values the chart cannot honour fail, saying why.

Needs helm (deploy/local/build.sh builds it) and kubectl for `kubectl
kustomize`, no cluster: these run in the fast tier.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

import mandrill
from mandrill import config
from tests.helm import chart
from tests.helm.chart import CHART, NAMESPACE, REPO, Manifest

pytestmark = pytest.mark.helm

HA_VALUES = {"replicas": 2, "leaderElection.enabled": True, "store.type": "postgres"}


def _deployment(docs: list[Manifest]) -> Manifest:
    [found] = [d for d in docs if d["kind"] == "Deployment"]
    return found


def _env(docs: list[Manifest]) -> dict[str, Any]:
    [container] = _deployment(docs)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _kinds(docs: list[Manifest]) -> set[str]:
    return {d["kind"] for d in docs}


@pytest.mark.parametrize("values", [{}, HA_VALUES], ids=["default", "ha"])
@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint_passes(values: dict[str, Any], strict: bool) -> None:
    result = chart.helm(
        "lint", str(CHART), *(["--strict"] if strict else []), *chart.set_args(values), check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[ERROR]" not in result.stdout
    assert "[WARNING]" not in result.stdout


def test_chart_crds_are_the_repository_crds_byte_for_byte() -> None:
    # Copies, not symlinks: a packaged chart (helm package, an OCI push) must
    # carry the files themselves, and crds/ holds samples and a kustomization
    # that must not become part of the chart's CRDs.
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    copied = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}

    assert sorted(copied) == sorted(source), "chart crds/ must hold exactly crds/*.yaml"
    stale = [name for name in source if copied[name] != source[name]]
    assert not stale, f"stale copies {stale}: cp crds/*.yaml deploy/helm/mandrill/crds/"
    assert not any(p.is_symlink() for p in (CHART / "crds").iterdir())


def test_app_version_is_the_operators_version() -> None:
    assert chart.chart_meta()["appVersion"] == mandrill.__version__


def test_default_values_render_the_cluster_wide_overlay() -> None:
    kustomized = chart.kustomize_objects("overlays/cluster-wide")
    rendered = chart.helm_objects()

    # The only object left out on purpose, and what it carries.
    [namespace] = [d for d in kustomized if d["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == NAMESPACE
    assert "Namespace" not in _kinds(rendered)
    # Helm's labels are there, with this release's values, before they are removed.
    labels = chart.helm_labels()
    for doc in rendered:
        if not doc["kind"].endswith("Definition"):  # crds/ are installed as they are
            assert labels.items() <= doc["metadata"]["labels"].items(), chart.key(doc)
    differing = chart.diff_renderings(
        chart.without_namespace(kustomized), chart.normalise(rendered)
    )

    assert not differing, "helm template differs from kubectl kustomize:\n" + "\n".join(differing)
    assert len(rendered) == len(kustomized) - 1


def test_the_comparison_notices_a_difference() -> None:
    # The comparison itself can fail: a value that changes one field shows as that path.
    differing = chart.diff_renderings(
        chart.without_namespace(chart.kustomize_objects("overlays/cluster-wide")),
        chart.normalise(chart.helm_objects({"store.sqlite.size": "2Gi", "drainTimeout": 25})),
    )

    assert sorted(differing) == sorted(
        [
            "('PersistentVolumeClaim', 'mandrill-system', 'mandrill-store') "
            ".spec.resources.requests.storage: expected '1Gi', got '2Gi'",
            "('Deployment', 'mandrill-system', 'mandrill') "
            ".spec.template.spec.containers[0].env[1].value: expected '20', got '25'",
            "('Deployment', 'mandrill-system', 'mandrill') "
            ".spec.template.spec.terminationGracePeriodSeconds: expected 30, got 35",
        ]
    )


def test_watch_namespaces_render_the_namespaced_overlay() -> None:
    rendered = chart.helm_objects({"watchNamespaces": ["team-a", "team-b"]})
    differing = chart.diff_renderings(
        chart.as_variant(chart.without_namespace(chart.kustomize_objects("overlays/namespaced"))),
        chart.as_variant(chart.normalise(rendered)),
    )

    assert not differing, "\n".join(differing)
    bindings = {chart.key(d) for d in rendered if d["kind"].endswith("RoleBinding")}
    assert bindings == {
        ("RoleBinding", "team-a", "mandrill-operator"),
        ("RoleBinding", "team-b", "mandrill-operator"),
        ("ClusterRoleBinding", "", "mandrill-cluster-scope"),
        # The CrawlJob workers' rights, in the operator's namespace either way.
        ("RoleBinding", "mandrill-system", "mandrill-crawl-workers"),
    }
    assert _env(rendered)["MANDRILL_NAMESPACES"] == "team-a,team-b"


def test_two_replicas_render_the_ha_overlay() -> None:
    rendered = chart.normalise(chart.helm_objects(HA_VALUES))
    # The chart names the Lease after the release; for release "mandrill" that
    # is the operator's default, which the overlay leaves unsaid.
    [container] = _deployment(rendered)["spec"]["template"]["spec"]["containers"]
    [lease] = [e for e in container["env"] if e["name"] == "MANDRILL_LEADER_ELECTION_LEASE"]
    assert lease["value"] == config.Settings().leader_election_lease
    container["env"].remove(lease)
    differing = chart.diff_renderings(
        chart.as_variant(chart.without_namespace(chart.kustomize_objects("overlays/ha"))),
        chart.as_variant(rendered),
    )

    assert not differing, "\n".join(differing)
    assert {"PodDisruptionBudget", "Role"} <= _kinds(rendered)
    assert "PersistentVolumeClaim" not in _kinds(rendered)
    assert _deployment(rendered)["spec"]["strategy"]["type"] == "RollingUpdate"


def test_lease_and_names_follow_the_release() -> None:
    result = chart.helm(
        "template", "blue", str(CHART), "--namespace", "ops", *chart.set_args(HA_VALUES)
    )
    docs = chart.objects(result.stdout)

    assert _env(docs)["MANDRILL_LEADER_ELECTION_LEASE"] == "blue-mandrill"
    [role] = [d for d in docs if d["kind"] == "Role" and "leader-election" in d["metadata"]["name"]]
    assert role["metadata"] == {
        **role["metadata"],
        "name": "blue-mandrill-leader-election",
        "namespace": "ops",
    }
    assert ["blue-mandrill"] in [rule.get("resourceNames") for rule in role["rules"]]
    names = {d["metadata"]["name"] for d in docs}
    assert names >= {
        "blue-mandrill",
        "blue-mandrill-operator",
        "blue-mandrill-edit",
        "blue-mandrill-crawl-worker",
        "blue-mandrill-crawl-workers",
    }
    # The operator is told its workers' ServiceAccount, which the release names.
    assert _env(docs)["MANDRILL_WORKER_SERVICE_ACCOUNT"] == "blue-mandrill-crawl-worker"
    for doc in docs:
        for subject in doc.get("subjects", []):
            assert subject == {
                "kind": "ServiceAccount",
                "name": "blue-mandrill",
                "namespace": "ops",
            }


def test_postgres_takes_the_url_from_the_secret_and_makes_no_claim() -> None:
    docs = chart.helm_objects(
        {
            "store.type": "postgres",
            "store.postgres.existingSecret": "db",
            "store.postgres.key": "dsn",
        }
    )

    assert _env(docs)["MANDRILL_STORE_URL"] == {"secretKeyRef": {"name": "db", "key": "dsn"}}
    # CrawlJob workers take the URL from the same Secret.
    assert (_env(docs)["MANDRILL_STORE_SECRET"], _env(docs)["MANDRILL_STORE_SECRET_KEY"]) == (
        "db",
        "dsn",
    )
    assert "PersistentVolumeClaim" not in _kinds(docs)
    volumes = {v["name"]: v for v in _deployment(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["store"] == {"name": "store", "emptyDir": {"sizeLimit": "16Mi"}}
    assert _deployment(docs)["spec"]["strategy"] == {"type": "Recreate"}


def test_existing_claim_is_mounted_and_no_claim_is_made() -> None:
    default = chart.helm_objects()
    docs = chart.helm_objects({"store.sqlite.existingClaim": "mandrill-data"})
    volumes = {v["name"]: v for v in _deployment(docs)["spec"]["template"]["spec"]["volumes"]}

    assert "PersistentVolumeClaim" not in _kinds(docs)
    assert volumes["store"] == {
        "name": "store",
        "persistentVolumeClaim": {"claimName": "mandrill-data"},
    }
    assert _env(docs)["MANDRILL_STORE_URL"] == "sqlite:////var/lib/mandrill/mandrill.sqlite"
    # Nothing else changes: the claim the chart would have made, and its name.
    assert chart.diff_renderings(default, docs) == [
        "('PersistentVolumeClaim', 'mandrill-system', 'mandrill-store'): missing",
        "('Deployment', 'mandrill-system', 'mandrill') .spec.template.spec.volumes[0]"
        ".persistentVolumeClaim.claimName: expected 'mandrill-store', got 'mandrill-data'",
    ]


@pytest.mark.parametrize(("storage_class", "expected"), [(None, None), ("", ""), ("fast", "fast")])
def test_storage_class(storage_class: str | None, expected: str | None) -> None:
    docs = chart.helm_objects({"store.sqlite.storageClass": storage_class})
    [claim] = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]

    assert claim["spec"].get("storageClassName", None) == expected
    assert ("storageClassName" in claim["spec"]) == (storage_class is not None)


def test_deny_list_metrics_off_extra_env_and_placement() -> None:
    toleration = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    docs = chart.helm_objects(
        {
            "deniedNamespaces": ["kube-system", "payments"],
            "metrics.enabled": False,
            "extraEnv": [{"name": "MANDRILL_CRAWL_ALLOW_PRIVATE", "value": "true"}],
            "nodeSelector": {"pool": "ops"},
            "tolerations": [toleration],
            "image.digest": "sha256:" + "ab" * 32,
            "image.pullPolicy": "Always",
        }
    )
    env = _env(docs)
    pod = _deployment(docs)["spec"]["template"]["spec"]
    [container] = pod["containers"]

    assert env["MANDRILL_DENIED_NAMESPACES"] == "kube-system,payments"
    assert env["MANDRILL_METRICS_PORT"] == "0"
    assert env["MANDRILL_CRAWL_ALLOW_PRIVATE"] == "true"
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert "Service" not in _kinds(docs)
    assert pod["nodeSelector"] == {"pool": "ops"}
    assert pod["tolerations"] == [toleration]
    assert container["image"] == "mandrill@sha256:" + "ab" * 32
    assert container["imagePullPolicy"] == "Always"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2}, "replicas > 1 needs leaderElection.enabled=true"),
        (
            {"replicas": 2, "leaderElection.enabled": True},
            "replicas > 1 needs store.type=postgres",
        ),
        ({"store.type": "mysql"}, "at '/store/type': value must be one of 'sqlite', 'postgres'"),
        ({"watchNamespaces": ["team-*"]}, "at '/watchNamespaces/0': 'team-*' does not match"),
        ({"replicass": 2}, "additional properties 'replicass' not allowed"),
        ({"replicas": 0}, "at '/replicas': minimum"),
        ({"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy': value must be one of"),
        ({"drainTimeout": "20s"}, "at '/drainTimeout': got string, want integer"),
        (
            {"store.type": "postgres", "store.sqlite.existingClaim": "mandrill-data"},
            "store.sqlite.existingClaim needs store.type=sqlite",
        ),
        (
            {"store.sqlite.existingClaim": "Mandrill_Data"},
            "at '/store/sqlite/existingClaim': 'Mandrill_Data' does not match pattern",
        ),
        ({"store.sqlite.existingclaim": "x"}, "additional properties 'existingclaim' not allowed"),
    ],
    ids=[
        "replicas-no-lease",
        "replicas-sqlite",
        "store",
        "glob",
        "typo",
        "zero",
        "pull",
        "drain",
        "claim-postgres",
        "claim-name",
        "claim-typo",
    ],
)
def test_invalid_values_fail_saying_why(values: dict[str, Any], message: str) -> None:
    result = chart.template(values, check=False)

    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr


def test_values_file_documents_every_top_level_value() -> None:
    # docs/helm.md's table and values.yaml's comments are what users read.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    table = pathlib.Path(REPO / "docs" / "helm.md").read_text()
    undocumented = [name for name in values if f"`{name}" not in table]

    assert not undocumented, f"docs/helm.md lacks {undocumented}"
