"""The CrawlJob API contract: what the schema rejects, and what a CrawlJob cannot do.

Covers: invalid CrawlJobs rejected by the API server with a message naming
the field; the spec's immutability; no spec field that could widen the
operator's address guard, and an unknown one rejected (strict kubectl) or
pruned (lenient clients); the CRD's defaults and names agreeing with what
CrawlSpec.from_spec reads. Namespaces here are outside the operator's `cj-*`
glob: nothing is crawled.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import ApiClient

from mandrill.domain.crawl import workers
from mandrill.domain.crawl.models import CrawlSpec
from tests import kube
from tests.crawljob.conftest import CRDS, MakeNamespace, crawljob, get_job, kubectl

SEED = "https://example.com/"


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / "crawljob.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"maxDepth": 1}, "spec", "exactly one of urls or urlsFrom"),
        ({"urls": []}, "spec.urls", "at least 1 items"),
        ({"urls": ["ftp://example.com/file"]}, "spec.urls", "http:// or https://"),
        ({"urls": [SEED], "maxDepth": 99}, "spec.maxDepth", "less than or equal to 20"),
        ({"urls": [SEED], "concurrency": 0}, "spec.concurrency", "greater than or equal to 1"),
        (
            {"urls": [SEED], "urlsFrom": {"configMapName": "seeds", "key": "urls.txt"}},
            "spec",
            "exactly one of urls or urlsFrom",
        ),
        ({"urlsFrom": {"configMapName": "seeds"}}, "spec.urlsFrom.key", "Required value"),
        (
            {"urls": [SEED], "maxResponseBytes": 10**10},
            "spec.maxResponseBytes",
            "less than or equal to",
        ),
    ],
)
async def test_invalid_crawljobs_are_rejected_naming_the_field(
    cluster: kube.Cluster,
    all_crds: None,
    make_namespace: MakeNamespace,
    spec: dict[str, Any],
    field: str,
    message: str,
) -> None:
    ns = await make_namespace("schema-")
    result = await kubectl(
        cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("bad", spec), check=False
    )
    assert result.returncode != 0
    assert f"{field}: " in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


async def test_spec_is_immutable(
    cluster: kube.Cluster, all_crds: None, make_namespace: MakeNamespace
) -> None:
    ns = await make_namespace("schema-")
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("fixed", {"urls": [SEED]}))
    result = await kubectl(
        cluster,
        "patch",
        "crawljob",
        "fixed",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec": {"maxDepth": 3}}',
        check=False,
    )
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr


def test_no_spec_field_can_widen_the_address_guard() -> None:
    spec = crd_spec_schema()
    names: list[str] = []

    def walk(schema: dict[str, Any]) -> None:
        for name, sub in schema.get("properties", {}).items():
            names.append(name)
            walk(sub)
        if "items" in schema:
            walk(schema["items"])

    walk(spec)
    suspicious = [
        n for n in names if re.search(r"private|network|cidr|ssrf|address|proxy", n, re.I)
    ]
    assert suspicious == []
    assert "x-kubernetes-preserve-unknown-fields" not in yaml.safe_dump(spec)


async def test_an_unknown_spec_field_is_rejected_or_pruned(
    cluster: kube.Cluster, api: ApiClient, all_crds: None, make_namespace: MakeNamespace
) -> None:
    ns = await make_namespace("schema-")
    manifest = crawljob("sneaky", {"urls": [SEED], "allowPrivate": True})
    strict = await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=manifest, check=False)
    assert strict.returncode != 0
    assert 'unknown field "spec.allowPrivate"' in strict.stderr

    await kubectl(cluster, "apply", "--validate=false", "-n", ns, "-f", "-", stdin=manifest)
    stored = await get_job(api, ns, "sneaky")
    assert stored is not None
    assert "allowPrivate" not in stored["spec"]
    assert stored["spec"]["urls"] == [SEED]


def test_crd_defaults_match_the_engine_defaults() -> None:
    spec = crd_spec_schema()["properties"]
    defaults = {name: sub["default"] for name, sub in spec.items() if "default" in sub}
    assert CrawlSpec.from_spec(defaults, seeds=[SEED]) == CrawlSpec.create(seeds=[SEED])


def other_value(schema: dict[str, Any]) -> Any:
    """A valid value for a spec field that differs from its default."""
    kind = schema["type"]
    if kind == "boolean":
        return not schema.get("default", False)
    if kind == "array":
        return ["example.org"]
    if kind == "string":
        return "probe-agent/1"
    low = schema.get("minimum", 0)
    return low if schema.get("default") != low else low + 1


def test_every_crd_field_is_read_by_from_spec() -> None:
    """A field the schema accepts but from_spec ignores would be a silent no-op."""
    baseline = CrawlSpec.from_spec({}, seeds=[SEED])
    for name, schema in crd_spec_schema()["properties"].items():
        if name in ("urls", "urlsFrom"):
            continue
        if name == "workers":  # how the crawl is run, not what it crawls: the handler reads it
            assert workers.requested_workers({name: other_value(schema)}) != 1
            continue
        parsed = CrawlSpec.from_spec({name: other_value(schema)}, seeds=[SEED])
        assert parsed != baseline, f"spec.{name} does not reach CrawlSpec"


async def test_kubectl_finds_crawljobs_by_short_name_and_category(
    cluster: kube.Cluster, all_crds: None, make_namespace: MakeNamespace
) -> None:
    ns = await make_namespace("schema-")
    await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("named", {"urls": [SEED]}))
    for resource in ("crawl", "crawljobs", "mandrill"):
        listed = await kubectl(cluster, "get", resource, "-n", ns, "-o", "name")
        assert "crawljob.mandrill.dev/named" in listed.stdout, resource
