"""Saving again, later, the requests whose journal write failed.

A request acknowledged with Saved=False keeps everything a journal row needs
in the cluster: its spec, and its plan in status. So the backlog lives there,
not in memory: whenever the operator sees such a request (its events, the
listing at start-up, every resync) it keeps one task per request in the task
registry that retries the save with backoff until it succeeds, then flips
the condition to Saved=True (reason SavedOnRetry). A crash loses nothing; the
next instance finds the same requests and carries on. The write itself is
idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from mandrill import resources
from mandrill.adapters import kube
from mandrill.domain import timestamps
from mandrill.domain.errors import PermanentError, StoreError, TransientError
from mandrill.domain.restart import status
from mandrill.domain.restart.models import RequestRef
from mandrill.domain.restart.process import Journal, JournalEntry
from mandrill.supervision import TaskRegistry

log = logging.getLogger(__name__)


def entry_from(body: Mapping[str, Any]) -> JournalEntry:
    """Rebuild the journal entry from the request itself; InvalidStatus if unreadable."""
    raw = body.get("status") or {}
    return JournalEntry(
        request=RequestRef.from_body(body),
        spec=dict(body.get("spec") or {}),
        targets=status.targets_of(raw),
        received=timestamps.parse(raw.get("startedAt")) or timestamps.now(),
    )


@attrs.define
class JournalRetrier:
    api: ApiClient
    journal: Journal
    tasks: TaskRegistry
    first_delay: float = 2.0
    max_delay: float = 300.0

    def schedule(self, body: Mapping[str, Any]) -> None:
        uid = body["metadata"]["uid"]
        if not self.tasks.running(f"journal/{uid}"):
            self.tasks.spawn(f"journal/{uid}", lambda: self._retry(body))

    async def _retry(self, body: Mapping[str, Any]) -> None:
        try:
            entry = entry_from(body)
        except status.InvalidStatus as e:
            log.warning("cannot journal %s: %s", body["metadata"].get("name"), e)
            return
        delay = self.first_delay
        while True:
            await asyncio.sleep(delay)
            try:
                await self.journal.save(entry)
            except StoreError as e:
                log.info("journal still unavailable for %s: %s", entry.request.name, e)
                delay = min(delay * 2, self.max_delay)
                continue
            break
        try:
            await self._mark_saved(entry.request, body)
        except (PermanentError, TransientError) as e:
            # Saved in the journal, not yet in status: the next resync saves again
            # (a no-op) and marks it then.
            log.warning("could not mark %s saved: %s", entry.request.name, e)
            return
        log.info("saved %s/%s to the journal on retry", entry.request.namespace, entry.request.name)

    async def _mark_saved(self, request: RequestRef, body: Mapping[str, Any]) -> None:
        patch = status.saved_on_retry(
            (body.get("status") or {}).get("conditions") or (),
            request=request,
            now=timestamps.now(),
        )
        custom = client.CustomObjectsApi(self.api)
        await kube.call(
            lambda: custom.patch_namespaced_custom_object_status(
                resources.GROUP,
                resources.VERSION,
                request.namespace,
                resources.RESTART_REQUESTS,
                request.name,
                {"status": patch},
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
            ),
            what="mark RestartRequest saved",
            passthrough=frozenset(),
        )
