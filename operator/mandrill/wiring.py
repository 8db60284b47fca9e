"""The process's long-lived services, made once on start-up and closed on cleanup.

One kubernetes_asyncio ApiClient, one journal connection and one global
restart limiter are shared by every request; handlers find them in kopf's memo.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import attrs
from kubernetes_asyncio.client import ApiClient

from mandrill.adapters import kube
from mandrill.adapters.journal import SqliteJournal, sqlite_path
from mandrill.adapters.reaper import Reaper
from mandrill.adapters.request_status import RequestStatus
from mandrill.adapters.restart_targets import EventSink, KubeTargets
from mandrill.config import Settings
from mandrill.domain.errors import StoreError
from mandrill.domain.restart.models import RequestRef
from mandrill.domain.restart.process import Context

log = logging.getLogger(__name__)


@attrs.define
class Services:
    settings: Settings
    api: ApiClient
    journal: SqliteJournal
    reaper: Reaper
    limiter: asyncio.Semaphore

    def restart_context(self, reporter: RequestStatus, events: EventSink) -> Context:
        return Context(
            targets=KubeTargets(api=self.api, events=events),
            journal=self.journal,
            reporter=reporter,
            limiter=lambda: self.limiter,
            denied_namespaces=self.settings.denied_namespaces,
        )

    def reporter(
        self, *, request: RequestRef, body: Mapping[str, Any], events: EventSink, attempts: int
    ) -> RequestStatus:
        return RequestStatus(
            api=self.api, request=request, body=body, events=events, attempts=attempts
        )

    def schedule_ttl(
        self, *, request: RequestRef, finished: datetime.datetime, ttl_seconds: int
    ) -> None:
        self.reaper.schedule(
            namespace=request.namespace,
            name=request.name,
            uid=request.uid,
            due=finished + datetime.timedelta(seconds=ttl_seconds),
        )

    async def close(self) -> None:
        await self.reaper.close()
        await self.journal.close()
        await self.api.close()


async def start(settings: Settings) -> Services:
    api = await kube.make_client()
    journal = SqliteJournal(path=sqlite_path(settings.store_url))
    try:
        await journal.open()
    except StoreError as e:
        # Not fatal: restarts go on and report Saved=False until the store is back.
        log.warning("journal unavailable at start-up, will retry on each request: %s", e)
    return Services(
        settings=settings,
        api=api,
        journal=journal,
        reaper=Reaper(api=api),
        limiter=asyncio.Semaphore(settings.max_concurrent_restarts),
    )


async def stop(services: Services | None) -> None:
    if services is not None:
        with contextlib.suppress(Exception):
            await services.close()
