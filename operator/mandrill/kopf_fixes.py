"""A fix to kopf, applied before it starts: namespaces made while a watch lists.

With namespace globs (`--namespace team-*`), kopf lists the namespaces once,
then starts their watch, which begins with a listing of its own; kopf drops
every event of that second listing, taking the first to have seen the same. A
namespace created between the two (or while the watch lists again after the
API server was away) was never served until something modified it: every
RestartRequest and CrawlJob in it waited, silently. CI caught it as a freshly
started operator idling while a test's request waited for a minute.

Letting the listing through is safe: for namespaces kopf only adds a matching
name to a set (or drops one being deleted), so a name seen twice is a no-op.
kopf 1.45.2 has the gap (pyproject.toml pins exactly that version); if a kopf
upgrade moves this function, `apply` fails at start-up and
tests/unit/test_kopf_fixes.py says so.
"""

from __future__ import annotations

from typing import Any

from kopf._core.reactor import observation

_FIXED = "_mandrill_lists_count"


def apply() -> None:
    """Make kopf's namespace watch count its own initial listing. Idempotent."""
    original = observation.process_discovered_namespace_event
    if getattr(original, _FIXED, False):
        return

    async def process_discovered_namespace_event(*, raw_event: Any, **kwargs: Any) -> None:
        if raw_event["type"] is None:  # a listing, not a change: for a namespace, news all the same
            raw_event = {"type": "ADDED", "object": raw_event["object"]}
        await original(raw_event=raw_event, **kwargs)

    setattr(process_discovered_namespace_event, _FIXED, True)
    observation.process_discovered_namespace_event = process_discovered_namespace_event
