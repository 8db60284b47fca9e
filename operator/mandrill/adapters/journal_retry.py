"""Saving again, later, the requests whose journal write failed.

A request acknowledged with Saved=False keeps everything a journal row needs
in the cluster: its spec, and its plan in status. So the backlog lives there,
not in memory: the operator watches for such requests (also right after it
starts, when it lists them all), and for each keeps one task that retries the
save with backoff until it succeeds, then flips the condition to
Saved=True (reason SavedOnRetry). A crash loses nothing; the next instance
finds the same requests and carries on. The write itself is idempotent.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from mandrill import resources
from mandrill.adapters import kube
from mandrill.adapters.journal import SqliteJournal
from mandrill.domain.errors import PermanentError, StoreError, TransientError
from mandrill.domain.restart.models import RequestRef, TargetResult, parse_timestamp
from mandrill.domain.restart.process import JournalEntry

log = logging.getLogger(__name__)


def unsaved(status: Mapping[str, Any]) -> bool:
    """Acknowledged, but its journal write failed."""
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
    return conditions.get("Acknowledged") == "True" and conditions.get("Saved") == "False"


def entry_from(body: Mapping[str, Any]) -> JournalEntry:
    """Rebuild the journal entry from the request itself."""
    meta, status = body["metadata"], body.get("status") or {}
    return JournalEntry(
        request=RequestRef(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
        ),
        spec=dict(body.get("spec") or {}),
        targets=tuple(TargetResult.from_status(t) for t in status.get("targets") or ()),
        received=parse_timestamp(status.get("startedAt")) or datetime.datetime.now(datetime.UTC),
    )


@attrs.define
class JournalRetrier:
    api: ApiClient
    journal: SqliteJournal
    first_delay: float = 2.0
    max_delay: float = 300.0
    _tasks: dict[str, asyncio.Task[None]] = attrs.Factory(dict)

    def schedule(self, body: Mapping[str, Any]) -> None:
        uid = body["metadata"]["uid"]
        if uid in self._tasks and not self._tasks[uid].done():
            return
        self._tasks[uid] = asyncio.create_task(self._retry(entry_from(body), body))

    async def _retry(self, entry: JournalEntry, body: Mapping[str, Any]) -> None:
        delay = self.first_delay
        try:
            while True:
                await asyncio.sleep(delay)
                try:
                    await self.journal.save(entry)
                except StoreError as e:
                    log.info("journal still unavailable for %s: %s", entry.request.name, e)
                    delay = min(delay * 2, self.max_delay)
                    continue
                await self._mark_saved(entry.request, body)
                log.info("saved %s/%s to the journal on retry", *_name(entry.request))
                return
        except (PermanentError, TransientError) as e:
            log.warning("could not mark %s saved: %s", entry.request.name, e)
        finally:
            self._tasks.pop(entry.request.uid, None)

    async def _mark_saved(self, request: RequestRef, body: Mapping[str, Any]) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            c
            if c.get("type") != "Saved"
            else {
                **c,
                "status": "True",
                "reason": "SavedOnRetry",
                "message": "written to the journal after the store came back",
                "lastTransitionTime": now,
            }
            for c in (body.get("status") or {}).get("conditions") or ()
        ]
        custom = client.CustomObjectsApi(self.api)
        await kube.call(
            lambda: custom.patch_namespaced_custom_object_status(
                resources.GROUP,
                resources.VERSION,
                request.namespace,
                resources.RESTART_REQUESTS,
                request.name,
                {"status": {"conditions": conditions}},
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
            ),
            what="mark RestartRequest saved",
            passthrough=frozenset(),
        )

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _name(request: RequestRef) -> tuple[str, str]:
    return request.namespace, request.name
