"""The process's long-lived services, made once on start-up and closed on cleanup.

One kubernetes_asyncio ApiClient, one journal connection and one global
restart limiter are shared by every request; handlers find them in kopf's memo.
CrawlJobs share the crawl store (another connection to the journal's file)
and the address policy; each crawl makes its own HTTP session.
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

from mandrill.adapters import crawl_jobs, kube, request_status, ssrf
from mandrill.adapters.crawl_store import CrawlStore
from mandrill.adapters.journal import SqliteJournal
from mandrill.adapters.journal_retry import JournalRetrier
from mandrill.adapters.reaper import Reaper
from mandrill.adapters.request_status import RequestStatus
from mandrill.adapters.restart_targets import EventSink, KubeTargets
from mandrill.adapters.sqlite import sqlite_path
from mandrill.config import Settings
from mandrill.domain.crawl import job as crawl_job
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
    crawl_store: CrawlStore
    crawl_policy: ssrf.AddressPolicy
    journal_retrier: JournalRetrier
    handled: set[str] = attrs.Factory(set)
    """UIDs of requests this process has seen through (see handlers.restart)."""

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

    async def read_request(self, request: RequestRef) -> dict[str, Any]:
        return await request_status.read_request(self.api, request)

    def schedule_ttl(
        self, *, request: RequestRef, finished: datetime.datetime, ttl_seconds: int
    ) -> None:
        self.reaper.schedule(
            namespace=request.namespace,
            name=request.name,
            uid=request.uid,
            due=finished + datetime.timedelta(seconds=ttl_seconds),
        )

    def crawl_context(
        self, *, job: crawl_job.JobRef, body: Mapping[str, Any], events: crawl_jobs.EventSink
    ) -> crawl_job.Context:
        """The ports of one CrawlJob's run."""
        return crawl_job.Context(
            seeds=crawl_jobs.ConfigMapSeeds(api=self.api),
            store=self.crawl_store,
            reporter=crawl_jobs.CrawlJobStatus(api=self.api, job=job, body=body, events=events),
            open_fetcher=crawl_jobs.fetcher_factory(self.crawl_policy),
        )

    async def close(self) -> None:
        await self.crawl_store.close()
        await self.journal_retrier.close()
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
    crawl_store = CrawlStore.from_url(settings.store_url)
    try:
        await crawl_store.open()
    except StoreError as e:
        # Not fatal either: CrawlJobs started while it is down end Failed (StoreError).
        log.warning("crawl store unavailable at start-up, will retry on each crawl: %s", e)
    return Services(
        settings=settings,
        api=api,
        journal=journal,
        reaper=Reaper(api=api),
        limiter=asyncio.Semaphore(settings.max_concurrent_restarts),
        crawl_store=crawl_store,
        crawl_policy=ssrf.AddressPolicy.from_settings(allow_private=settings.crawl_allow_private),
        journal_retrier=JournalRetrier(api=api, journal=journal),
    )


async def stop(services: Services | None) -> None:
    if services is not None:
        with contextlib.suppress(Exception):
            await services.close()
