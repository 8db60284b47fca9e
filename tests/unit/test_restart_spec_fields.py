"""Every RestartRequest spec field in the CRD reaches `RestartSpec`, and the parser
reads no field the CRD lacks.

A field the schema accepts but `RestartSpec.from_spec` ignores is a silent no-op
for the user (the API server stores it, nothing acts on it); a key the parser
reads but the schema lacks is pruned by the API server, so that code is dead.
The field list is walked from crds/restartrequest.yaml, so a field added there
without parser support fails here. (CrawlJob's equivalent is
tests/crawljob/test_schema.py::test_every_crd_field_is_read_by_from_spec.)
"""

from __future__ import annotations

import copy
import functools
import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from mandrill.domain.restart.models import RestartSpec

CRD_PATH = pathlib.Path(__file__).resolve().parents[2] / "crds" / "restartrequest.yaml"

Path = tuple[str, ...]
"""A field below spec: ("target", "selector", "matchExpressions", "[]", "key")."""

ITEM = "[]"


@functools.cache
def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def leaves(schema: Mapping[str, Any], path: Path = ()) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every field below `schema` that has no properties of its own, with its path.

    Arrays of objects are walked into (their item fields are the leaves);
    maps (additionalProperties) and arrays of scalars are leaves themselves."""
    for name, prop in (schema.get("properties") or {}).items():
        here = (*path, name)
        if "properties" in prop:
            yield from leaves(prop, here)
        elif prop.get("type") == "array" and "properties" in prop.get("items", {}):
            yield from leaves(prop["items"], (*here, ITEM))
        else:
            yield here, prop


BY_NAME: dict[str, Any] = {"target": {"name": "web-0"}}
"""The smallest valid spec; the baseline for every field outside target.selector."""

BY_SELECTOR: dict[str, Any] = {
    "target": {
        "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}],
        }
    }
}
"""The baseline for the selector's fields (target.name and target.selector exclude each other)."""

PATTERNED: dict[Path, str] = {("minAge",): "3d"}
"""Valid values for string fields constrained by a pattern."""


def baseline(path: Path) -> dict[str, Any]:
    return BY_SELECTOR if path[:2] == ("target", "selector") else BY_NAME


def get_at(spec: Any, path: Path) -> Any:
    for part in path:
        if spec is None:
            return None
        spec = spec[0] if part == ITEM else spec.get(part)
    return spec


def set_at(spec: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(spec)
    here: Any = changed
    for part in path[:-1]:
        here = here[0] if part == ITEM else here.setdefault(part, {})
    here[path[-1]] = value
    return changed


def other_value(path: Path, schema: Mapping[str, Any], current: Any) -> Any:
    """A value the CRD accepts for this field that differs from `current` and the default."""
    taken = {repr(current), repr(schema.get("default"))}
    kind = schema["type"]
    if "enum" in schema:
        return next(v for v in schema["enum"] if repr(v) not in taken)
    if kind == "boolean":
        return not schema.get("default", False)
    if kind == "integer":
        low = int(schema.get("minimum", 0))
        return next(v for v in (low, low + 1, low + 2) if repr(v) not in taken)
    if kind == "string":
        value = PATTERNED.get(path, "other")
        assert re.fullmatch(schema.get("pattern", ".*"), value), f"{path}: fix PATTERNED"
        return value
    if kind == "array":
        return ["other"]
    if kind == "object" and "additionalProperties" in schema:
        return {"other": "other"}
    raise AssertionError(f"spec.{'.'.join(path)}: no sample value for {schema}")


SPEC_LEAVES = dict(leaves(spec_schema()))


def test_the_walk_finds_nested_and_array_item_fields() -> None:
    assert ("strategy",) in SPEC_LEAVES
    assert ("waitForReady", "timeoutSeconds") in SPEC_LEAVES
    assert ("target", "selector", "matchLabels") in SPEC_LEAVES
    assert ("target", "selector", "matchExpressions", ITEM, "values") in SPEC_LEAVES
    assert len(SPEC_LEAVES) == 17


@pytest.mark.parametrize("path", list(SPEC_LEAVES), ids=".".join)
def test_every_crd_field_changes_the_parsed_spec(path: Path) -> None:
    """Setting one field to another valid value gives another RestartSpec."""
    base = baseline(path)
    value = other_value(path, SPEC_LEAVES[path], get_at(base, path))
    changed = set_at(base, path, value)
    assert RestartSpec.from_spec(changed) != RestartSpec.from_spec(base), (
        f"spec.{'.'.join(path)}={value!r} does not reach RestartSpec"
    )


class Recording(Mapping[str, Any]):
    """A read-only spec that records the path of every key the parser looks up.

    Objects with properties are wrapped (item by item for arrays of them), so a
    lookup of a key the schema lacks is recorded too; maps and scalars are not."""

    def __init__(self, data: Mapping[str, Any], path: Path, seen: set[Path]) -> None:
        self._data, self._path, self._seen = data, path, seen

    def __getitem__(self, key: str) -> Any:
        here = (*self._path, key)
        self._seen.add(here)
        return wrap(self._data[key], here, self._seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def wrap(value: Any, path: Path, seen: set[Path]) -> Any:
    schema: Mapping[str, Any] = spec_schema()
    for part in path:
        schema = schema["items"] if part == ITEM else schema.get("properties", {}).get(part, {})
    if isinstance(value, Mapping) and "properties" in schema:
        return Recording(value, path, seen)
    if isinstance(value, list) and "properties" in schema.get("items", {}):
        return [wrap(v, (*path, ITEM), seen) for v in value]
    return value


FULL = {
    "target": BY_SELECTOR["target"],
    "strategy": "Evict",
    "percent": 40,
    "maxConcurrent": 2,
    "minAge": "1d12h",
    "gracePeriodSeconds": 10,
    "evictionTimeoutSeconds": 30,
    "dryRun": True,
    "waitForReady": {"enabled": True, "timeoutSeconds": 120},
    "ttlSecondsAfterFinished": 600,
}
"""Every field but target.name and count, which exclude target.selector and percent."""

SAMPLES = {
    "by-name": BY_NAME,
    "full": FULL,
    "full-count": {**{k: v for k, v in FULL.items() if k != "percent"}, "count": 3},
}


def lookups(sample: Mapping[str, Any]) -> set[Path]:
    seen: set[Path] = set()
    RestartSpec.from_spec(Recording(sample, (), seen))
    return seen


@pytest.mark.parametrize("sample", list(SAMPLES.values()), ids=list(SAMPLES))
def test_the_parser_reads_only_fields_the_crd_has(sample: dict[str, Any]) -> None:
    """Every key `from_spec` looks up is in the schema (a key the schema lacks is
    pruned by the API server, so reading it is dead code)."""
    seen = lookups(sample)
    assert seen, "the recorder saw no lookups"
    known = set(SPEC_LEAVES) | {p[:i] for p in SPEC_LEAVES for i in range(1, len(p))}
    assert seen - known == set()


def test_between_them_the_samples_look_up_every_crd_field() -> None:
    seen = set().union(*(lookups(s) for s in SAMPLES.values()))
    assert set(SPEC_LEAVES) - seen == set()
