"""mandrill.kopf_fixes against the kopf installed: the gap is there, and the fix closes it.

The end-to-end proof is tests/restart/test_namespaces.py; these pin down the
mechanism, so a kopf upgrade that fixes the gap itself (the first test fails:
drop the fix) or moves the code (the others fail) is noticed at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from kopf._cogs.structs import references
from kopf._core.reactor import observation

from mandrill import kopf_fixes

PATTERNS = ["team-*"]


def listed(name: str, **metadata: Any) -> dict[str, Any]:
    """A namespace as the watch's initial listing hands it over: an event of type None."""
    return {"type": None, "object": {"metadata": {"name": name, **metadata}}}


async def served_after(*raw_events: dict[str, Any]) -> set[Any]:
    insights = references.Insights()
    for raw_event in raw_events:
        await observation.process_discovered_namespace_event(
            raw_event=raw_event, namespaces=PATTERNS, insights=insights
        )
    return set(insights.namespaces)


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf_fixes applied for this test only."""
    monkeypatch.setattr(
        observation,
        "process_discovered_namespace_event",
        observation.process_discovered_namespace_event,
    )
    kopf_fixes.apply()


async def test_kopf_alone_drops_a_namespace_its_watch_lists() -> None:
    assert await served_after(listed("team-a")) == set()


async def test_fixed_a_listed_namespace_that_matches_is_served(fixed: None) -> None:
    assert await served_after(listed("team-a"), listed("other"), listed("team-b")) == {
        "team-a",
        "team-b",
    }


async def test_fixed_a_listed_namespace_being_deleted_is_not_served(fixed: None) -> None:
    going = listed("team-a", deletionTimestamp="2026-11-25T00:00:00Z")
    going["object"]["status"] = {
        "conditions": [{"type": "NamespaceContentRemaining", "status": "False"}]
    }
    assert await served_after(going) == set()


async def test_fixed_changes_still_count_as_before(fixed: None) -> None:
    added = {"type": "ADDED", "object": {"metadata": {"name": "team-a"}}}
    deleted = {"type": "DELETED", "object": {"metadata": {"name": "team-a"}}}
    assert await served_after(added) == {"team-a"}
    assert await served_after(added, deleted) == set()


def test_apply_twice_wraps_once(fixed: None) -> None:
    once = observation.process_discovered_namespace_event
    kopf_fixes.apply()
    assert observation.process_discovered_namespace_event is once


def test_the_namespace_observer_looks_the_function_up_when_it_runs() -> None:
    """The fix replaces a module attribute; it works only if kopf reads it at run time."""
    assert "process_discovered_namespace_event" in observation.namespace_observer.__code__.co_names
