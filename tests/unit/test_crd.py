"""The RestartRequest CRD as a document: every property documented and typed (so
`kubectl explain` is useful), names, categories and the status subresource."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

CRD_PATH = pathlib.Path(__file__).resolve().parents[2] / "crds" / "restartrequest.yaml"

TYPE_META = {"apiVersion", "kind", "metadata"}
"""Root fields whose published schema (with descriptions) the API server supplies itself."""


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def properties(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property below `schema`, including those of array items, with its path."""
    for name, prop in (schema.get("properties") or {}).items():
        here = f"{path}.{name}"
        yield here, prop
        yield from properties(prop, here)
        if "items" in prop:
            yield f"{here}[]", prop["items"]
            yield from properties(prop["items"], f"{here}[]")


def test_every_property_has_a_type_and_a_description(crd: dict[str, Any]) -> None:
    (version,) = crd["spec"]["versions"]
    root = version["schema"]["openAPIV3Schema"]
    walked = dict(properties(root, ""))
    assert ".spec.target.selector.matchExpressions[].operator" in walked
    assert ".status.conditions[].lastTransitionTime" in walked
    assert ".status.targets[].outcome" in walked
    untyped = [p for p, s in walked.items() if not s.get("type")]
    undocumented = [
        p
        for p, s in walked.items()
        if not str(s.get("description") or "").strip()
        and not p.endswith("[]")
        and p.lstrip(".") not in TYPE_META
    ]
    assert untyped == []
    assert undocumented == []


def test_names_categories_and_status_subresource(crd: dict[str, Any]) -> None:
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["rr"]
    assert names["categories"] == ["mandrill"]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
