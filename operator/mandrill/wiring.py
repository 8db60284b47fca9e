"""The process's long-lived services, made once on start-up and closed on cleanup.

One kubernetes_asyncio ApiClient, one journal connection, one global restart
limiter and one task registry are shared by every request; handlers find the
services in kopf's memo. CrawlJobs share the crawl store (another connection
to the journal's store) and the address policy; each crawl makes its own HTTP
session. This is the composition root: the only place where adapters are
plugged into the ports of the application and the domain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from kopf._cogs.structs import references  # kopf's own namespace matching, for the resync
from kubernetes_asyncio.client import ApiClient

from mandrill.adapters import crawl_jobs, events, kube, metrics, schedules, ssrf
from mandrill.adapters.crawl_store import CrawlStore
from mandrill.adapters.journal import StoreJournal
from mandrill.adapters.journal_retry import JournalRetrier
from mandrill.adapters.reaper import Reaper
from mandrill.adapters.request_status import RequestStatus
from mandrill.adapters.restart_requests import KubeRequests
from mandrill.adapters.restart_targets import KubeTargets
from mandrill.application.restart import RestartService
from mandrill.application.restart_ports import Ports, Waiting
from mandrill.application.schedule import ScheduleService
from mandrill.application.schedule_ports import Ports as SchedulePorts
from mandrill.config import Settings
from mandrill.domain.crawl import job as crawl_job
from mandrill.domain.errors import StoreError
from mandrill.domain.restart import process
from mandrill.domain.restart.models import RequestRef
from mandrill.store_url import StoreUrl
from mandrill.supervision import TaskRegistry, close_in_order

log = logging.getLogger(__name__)


def namespace_filter(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether kopf, given `patterns` (--namespace), serves a namespace: the resync must
    list exactly what the watches see, globs and exclusions included."""

    def serves(namespace: str) -> bool:
        name = references.NamespaceName(namespace)
        return any(references.match_namespace(name, p) for p in patterns)

    return serves


@attrs.define
class Services:
    settings: Settings
    api: ApiClient
    journal: StoreJournal
    tasks: TaskRegistry
    """Per-request background tasks: TTL deletions, journal retries, retries after backoff."""
    events: events.EventPoster
    limiter: asyncio.Semaphore
    crawl_store: CrawlStore
    crawl_policy: ssrf.AddressPolicy
    restarts: RestartService = attrs.field(init=False)
    schedules: ScheduleService = attrs.field(init=False)
    """One loop per RestartSchedule, publishing its runs as RestartRequests."""

    def __attrs_post_init__(self) -> None:
        reaper = Reaper(api=self.api, tasks=self.tasks)
        retrier = JournalRetrier(api=self.api, journal=self.journal, tasks=self.tasks)
        patterns = self.settings.namespaces
        self.restarts = RestartService(
            ports=Ports(
                requests=KubeRequests(
                    api=self.api, patterns=patterns, serves=namespace_filter(patterns)
                ),
                context=self.restart_context,
                schedule_ttl=lambda request, due: reaper.schedule(request, due=due),
                save_later=retrier.schedule,
                events=self.events.post,
                observer=metrics.RestartObserver(),
                tasks=self.tasks,
            ),
            max_in_flight=self.settings.max_concurrent_requests,
        )
        self.events.busy = lambda: self.restarts.in_flight > 0
        self.schedules = ScheduleService(
            ports=SchedulePorts(
                runs=schedules.KubeRuns(api=self.api),
                status=schedules.ScheduleStatus(api=self.api),
                events=self.events.post,
                clock=schedules.clock(),
                tasks=self.tasks,
                observer=metrics.ScheduleObserver(),
            )
        )

    def restart_context(
        self,
        *,
        request: RequestRef,
        body: Mapping[str, Any],
        attempt: int,
        waiting: Waiting | None,
    ) -> process.Context:
        """The ports of one attempt at one request."""
        reporter = RequestStatus(
            api=self.api, request=request, body=body, events=self.events.post, attempts=attempt
        )
        ctx = process.Context(
            targets=KubeTargets(api=self.api, events=self.events.post),
            journal=self.journal,
            reporter=reporter,
            limiter=lambda: self.limiter,
            denied_namespaces=self.settings.denied_namespaces,
        )
        return ctx if waiting is None else attrs.evolve(ctx, waiting=waiting)

    def crawl_context(self, *, job: crawl_job.JobRef, body: Mapping[str, Any]) -> crawl_job.Context:
        """The ports of one CrawlJob's run."""
        return crawl_job.Context(
            seeds=crawl_jobs.ConfigMapSeeds(api=self.api),
            store=self.crawl_store,
            reporter=crawl_jobs.CrawlJobStatus(
                api=self.api, job=job, body=body, events=self.events.post
            ),
            open_fetcher=crawl_jobs.fetcher_factory(self.crawl_policy),
        )

    def start(self, *, draining: asyncio.Event) -> None:
        """Start consuming, and the periodic resync; stop taking work once `draining` is set."""
        self.events.start()
        self.restarts.start()
        interval = self.settings.resync_interval
        self.tasks.spawn("resync", lambda: self.restarts.resync_every(interval))

        async def stop_taking() -> None:
            await draining.wait()
            self.restarts.stop_taking()
            self.schedules.stop()

        self.tasks.spawn("drain-signal", stop_taking)

    async def close(self, *, drain_timeout: float) -> None:
        """Drain the requests in flight, then close in order; one failure skips nothing."""
        await close_in_order(
            [
                ("RestartRequests in flight", lambda: self.restarts.drain(drain_timeout)),
                ("background tasks", self.tasks.close),
                ("Event poster", self.events.close),
                ("crawl store", self.crawl_store.close),
                ("journal", self.journal.close),
                ("API client", self.api.close),
            ]
        )


async def start(settings: Settings, *, draining: asyncio.Event) -> Services:
    api = await kube.make_client()
    store = StoreUrl.parse(settings.store_url)
    log.info("journal and crawl results in %s", store.redacted)
    journal = StoreJournal.from_url(store)
    try:
        await journal.open()
    except StoreError as e:
        # Not fatal: restarts go on and report Saved=False until the store is back.
        log.warning("journal unavailable at start-up, will retry on each request: %s", e)
    crawl_store = CrawlStore.from_url(store)
    try:
        await crawl_store.open()
    except StoreError as e:
        # Not fatal either: CrawlJobs started while it is down end Failed (StoreError).
        log.warning("crawl store unavailable at start-up, will retry on each crawl: %s", e)
    services = Services(
        settings=settings,
        api=api,
        journal=journal,
        tasks=TaskRegistry("requests", on_failure=metrics.background_failed),
        events=events.EventPoster.over(api),
        limiter=asyncio.Semaphore(settings.max_concurrent_restarts),
        crawl_store=crawl_store,
        crawl_policy=ssrf.AddressPolicy.from_settings(allow_private=settings.crawl_allow_private),
    )
    services.start(draining=draining)
    return services


async def stop(services: Services | None, *, drain_timeout: float) -> None:
    if services is not None:
        await services.close(drain_timeout=drain_timeout)
