"""The process's long-lived services, made once on start-up and closed on cleanup.

One kubernetes_asyncio ApiClient, one journal connection, one global restart
limiter and one task registry are shared by every request; handlers find the
services in kopf's memo. CrawlJobs share the crawl store (another connection
to the journal's store) and the address policy; each crawl makes its own HTTP
session. This is the composition root: the only place where adapters are
plugged into the ports of the application and the domain.

With leader election, every replica makes the same services, but only the
leader starts them: the handlers ask `acting` and let nothing through on a
standby, and a process that becomes the leader lists every RestartRequest and
RestartSchedule at once, so nothing a standby let pass is lost. The
services' ApiClient is fenced (adapters.kube.fence): each of its writes asks
the elector first, so a leader that lost the Lease (even one that was frozen
and does not know yet) sends nothing more; then it exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from kopf._cogs.structs import references  # kopf's own namespace matching, for the resync
from kubernetes_asyncio.client import ApiClient

from mandrill import resources, runtime
from mandrill.adapters import (
    crawl_jobs,
    events,
    kube,
    lease,
    metrics,
    schedules,
    ssrf,
    worker_jobs,
    worker_progress,
)
from mandrill.adapters.crawl_store import CrawlStore
from mandrill.adapters.journal import StoreJournal
from mandrill.adapters.journal_retry import JournalRetrier
from mandrill.adapters.reaper import Reaper
from mandrill.adapters.request_status import RequestStatus
from mandrill.adapters.restart_requests import KubeRequests
from mandrill.adapters.restart_targets import KubeTargets
from mandrill.application import fencing
from mandrill.application.election import AlwaysLeading, Elector, Leadership
from mandrill.application.restart import RestartService
from mandrill.application.restart_ports import Ports, Waiting
from mandrill.application.schedule import ScheduleService
from mandrill.application.schedule_ports import Ports as SchedulePorts
from mandrill.config import Settings
from mandrill.domain.crawl import job as crawl_job
from mandrill.domain.crawl import worker_run, workers
from mandrill.domain.crawl.slots import CrawlSlots
from mandrill.domain.errors import PermanentError, StoreError, TransientError
from mandrill.domain.leadership import Timing
from mandrill.domain.restart import process
from mandrill.domain.restart.models import RequestRef
from mandrill.store_url import StoreUrl
from mandrill.supervision import TaskRegistry, close_in_order

log = logging.getLogger(__name__)


def namespace_filter(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether kopf, given `patterns` (--namespace), serves a namespace: the resync must
    list exactly what the watches see, globs and exclusions included. No patterns is
    kopf's cluster-wide mode: every namespace."""
    if not patterns:
        return lambda namespace: True

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
    leadership: Leadership = attrs.Factory(AlwaysLeading)
    """Whether this process may act: always without an election, else the elector."""
    elector: Elector | None = None
    election_lease: lease.KubeLease | None = None
    election_api: ApiClient | None = None
    """The elector's own client: renewals never queue behind the services' requests."""
    restarts: RestartService = attrs.field(init=False)
    schedules: ScheduleService = attrs.field(init=False)
    """One loop per RestartSchedule, publishing its runs as RestartRequests."""
    schedule_listing: KubeRequests = attrs.field(init=False)
    crawl_slots: CrawlSlots = attrs.Factory(
        lambda self: CrawlSlots(self.settings.max_crawls, observe=metrics.crawl_slots_changed),
        takes_self=True,
    )
    """The in-process crawls running at once (--max-crawls), and the queue for a slot."""
    worker_namespace: str | None = None
    """Where worker Jobs go: the configured namespace, else the operator's own."""
    _worker_settings: workers.WorkerSettings | None = None
    _draining: asyncio.Event = attrs.Factory(asyncio.Event)

    def __attrs_post_init__(self) -> None:
        metrics.CRAWL_SLOTS.set(self.settings.max_crawls)
        reaper = Reaper(api=self.api, tasks=self.tasks)
        retrier = JournalRetrier(api=self.api, journal=self.fenced_journal, tasks=self.tasks)
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
        self.schedule_listing = KubeRequests(
            api=self.api,
            patterns=patterns,
            serves=namespace_filter(patterns),
            plural=resources.RESTART_SCHEDULES,
        )

    @property
    def fenced_journal(self) -> fencing.FencedJournal:
        """The journal, asking leadership before each save (as every API write does)."""
        return fencing.FencedJournal(self.journal, self.leadership.check)

    @property
    def acting(self) -> bool:
        """Whether the handlers may feed the services: this process leads (or has no election)."""
        return self.leadership.holds()

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
            journal=self.fenced_journal,
            reporter=reporter,
            limiter=lambda: self.limiter,
            denied_namespaces=self.settings.denied_namespaces,
        )
        return ctx if waiting is None else attrs.evolve(ctx, waiting=waiting)

    def crawl_context(self, *, job: crawl_job.JobRef, body: Mapping[str, Any]) -> crawl_job.Context:
        """The ports of one CrawlJob's run."""
        return crawl_job.Context(
            seeds=crawl_jobs.ConfigMapSeeds(api=self.api),
            store=fencing.FencedJobStore(self.crawl_store, self.leadership.check),
            reporter=crawl_jobs.CrawlJobStatus(
                api=self.api, job=job, body=body, events=self.events.post
            ),
            open_fetcher=crawl_jobs.fetcher_factory(self.crawl_policy),
        )

    async def crawl_queued(
        self, *, job: crawl_job.JobRef, body: Mapping[str, Any], message: str, event: bool
    ) -> None:
        """Say in a CrawlJob's status (and an Event) that it waits for a crawl slot."""
        reporter = crawl_jobs.CrawlJobStatus(
            api=self.api, job=job, body=body, events=self.events.post
        )
        await reporter.queued(message, event=event)

    @property
    def worker_jobs(self) -> worker_jobs.KubeWorkerJobs | None:
        if self.worker_namespace is None:
            return None
        return worker_jobs.KubeWorkerJobs(api=self.api, namespace=self.worker_namespace)

    def worker_context(
        self, *, job: crawl_job.JobRef, body: Mapping[str, Any]
    ) -> worker_run.Context:
        """The ports of one CrawlJob run by worker pods."""
        reporter = crawl_jobs.CrawlJobStatus(
            api=self.api, job=job, body=body, events=self.events.post
        )
        return worker_run.Context(
            seeds=crawl_jobs.ConfigMapSeeds(api=self.api),
            store=fencing.FencedJobStore(self.crawl_store, self.leadership.check),
            jobs=self.worker_jobs or _NoWorkerNamespace(),
            progress=worker_progress.StoreProgressReader(self.crawl_store.db),
            reporter=worker_jobs.WorkerReporter(
                status=reporter, events=self.events.post, body=body
            ),
            settings=self.worker_settings,
            shared_store=self.crawl_store.backend == "postgresql",
            interval=self.settings.worker_progress_interval,
        )

    async def worker_settings(self) -> workers.WorkerSettings:
        """The worker Jobs' settings, the image read from this operator's own Pod once
        (else --worker-image); PermanentError when neither says."""
        if self._worker_settings is not None:
            return self._worker_settings
        if self.worker_namespace is None:
            raise PermanentError("NoWorkerNamespace", _NO_NAMESPACE)
        s = self.settings
        own = await worker_jobs.own_image(self.api)
        image, pull = own if own is not None else (s.worker_image, "IfNotPresent")
        if not image:
            raise PermanentError(
                "NoWorkerImage",
                "the operator cannot tell its own image (no POD_NAME and POD_NAMESPACE from "
                "the downward API) and --worker-image (MANDRILL_WORKER_IMAGE) is not set",
            )
        self._worker_settings = workers.WorkerSettings(
            image=image,
            pull_policy=pull,
            namespace=self.worker_namespace,
            store_secret=s.store_secret,
            store_secret_key=s.store_secret_key,
            service_account=s.worker_service_account,
            resources=workers.Resources(
                cpu_request=s.worker_cpu_request,
                memory_request=s.worker_memory_request,
                cpu_limit=s.worker_cpu_limit,
                memory_limit=s.worker_memory_limit,
            ),
            log_format=s.log_format,
            lease_seconds=s.worker_lease_seconds,
            allow_private=s.crawl_allow_private,
            placement=await worker_jobs.own_placement(self.api),
        )
        log.info("worker pods: image %s in namespace %s", image, self.worker_namespace)
        return self._worker_settings

    async def stop_workers(self, job: crawl_job.JobRef) -> None:
        """Delete a CrawlJob's worker Job and pods at once."""
        jobs = self.worker_jobs
        if jobs is not None:
            await jobs.delete(job)

    def start(self, *, draining: asyncio.Event) -> None:
        """Lead at once (no election) or campaign; stop taking work once `draining` is set."""
        self._draining = draining
        self.events.start()

        async def stop_taking() -> None:
            await draining.wait()
            self.restarts.stop_taking()
            self.schedules.stop()

        self.tasks.spawn("drain-signal", stop_taking)
        if self.elector is None:
            self.lead()
        else:
            self.elector.start()

    def lead(self) -> None:
        """Start consuming and the periodic resync; after an election, list everything first."""
        if self._draining.is_set():
            return  # leaving: the Lease is released after the drain, for another to lead
        self.restarts.start()
        interval = self.settings.resync_interval
        self.tasks.spawn("resync", lambda: self.restarts.resync_every(interval))
        jobs = self.worker_jobs
        if jobs is not None:
            serves = namespace_filter(self.settings.namespaces)
            self.tasks.spawn(
                "worker-sweep", lambda: worker_jobs.sweep_every(jobs, serves, interval)
            )
        if self.elector is not None and self.election_lease is not None:
            self.tasks.spawn("take-over", self._take_over)
            self.events.post(
                self.election_lease.involved_object(self.elector.observation.uid),
                "Normal",
                "LeaderElection",
                f"{self.elector.identity} became leader",
            )

    async def _take_over(self) -> None:
        """A new leader lists every RestartRequest and RestartSchedule: the events a
        standby's handlers let pass are not lost. Retried a few times, then left to the
        periodic resync."""
        for attempt in range(5):
            try:
                found = await self.restarts.resync()
                listed = await self.schedule_listing.list_all()
            except (PermanentError, TransientError) as e:
                log.warning("taking over: listing failed (%s), again in %d s", e, 2**attempt)
                await asyncio.sleep(2**attempt)
                continue
            for body in listed:
                self.schedules.observe(body)
            log.info(
                "taking over: %d unacknowledged RestartRequest(s) and %d RestartSchedule(s) found",
                found,
                len(listed),
            )
            return

    async def close(self, *, drain_timeout: float) -> None:
        """Drain the requests in flight, then close in order; one failure skips nothing."""
        closers: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("RestartRequests in flight", lambda: self.restarts.drain(drain_timeout)),
            ("background tasks", self.tasks.close),
            ("Event poster", self.events.close),
        ]
        if self.elector is not None:
            elector = self.elector
            closers.append(("the Lease", lambda: _release(elector)))
        closers += [
            ("crawl store", self.crawl_store.close),
            ("journal", self.journal.close),
            ("API client", self.api.close),
        ]
        if self.election_api is not None:
            closers.append(("election API client", self.election_api.close))
        await close_in_order(closers)


_NO_NAMESPACE = (
    "the operator cannot tell its own namespace for worker Jobs (no POD_NAMESPACE, not in a "
    "pod) and --worker-namespace (MANDRILL_WORKER_NAMESPACE) is not set"
)


@attrs.frozen
class _NoWorkerNamespace:
    """worker_run.WorkerJobs when there is nowhere to put them: every use says why."""

    async def get(self, job: crawl_job.JobRef) -> None:
        raise PermanentError("NoWorkerNamespace", _NO_NAMESPACE)

    async def create(self, manifest: Mapping[str, Any]) -> None:
        raise PermanentError("NoWorkerNamespace", _NO_NAMESPACE)


async def _release(elector: Elector) -> None:
    """After the drain: give the Lease up, so a standby takes over now, not in a lease."""
    await elector.release()


def _lost(why: str) -> None:
    """A leader that lost the Lease leaves at once (exit status 4), as kube-controller-
    manager and controller-runtime's manager do: no drain, no hand-back, nothing written.
    Its pod restarts and campaigns again as a standby."""
    runtime.leave(runtime.LEADERSHIP_LOST, f"lost the Lease: {why}")


def _elector(settings: Settings, api: ApiClient) -> tuple[Elector, lease.KubeLease]:
    timing = Timing(
        lease_duration=settings.leader_election_lease_duration,
        renew_deadline=settings.leader_election_renew_deadline,
        retry_period=settings.leader_election_retry_period,
    )
    store = lease.KubeLease(
        api=api,
        namespace=settings.leader_election_namespace,
        name=settings.leader_election_lease,
        timeout=max(0.5, timing.renew_deadline / 2),
    )
    elector = Elector(
        store=store,
        clock=lease.SystemClock(),
        identity=lease.identity(),
        timing=timing,
        on_lost=_lost,
        on_change=metrics.leadership_changed,
        describe=f"Lease {store.namespace}/{store.name}",
    )
    return elector, store


async def start(settings: Settings, *, draining: asyncio.Event) -> Services:
    api = await kube.make_client()
    store = StoreUrl.parse(settings.store_url)
    log.info("journal and crawl results in %s", store.redacted)
    elector: Elector | None = None
    lease_store: lease.KubeLease | None = None
    election_api: ApiClient | None = None
    if settings.leader_election:
        election_api = await kube.make_client()
        elector, lease_store = _elector(settings, election_api)
        kube.fence(api, elector.check)
        log.info(
            "leader election: campaigning for Lease %s/%s as %s; standing by until then",
            lease_store.namespace,
            lease_store.name,
            elector.identity,
        )
    else:
        metrics.LEADER.set(1)
    journal = StoreJournal.from_url(store, on_save=metrics.journal_saved)
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
        leadership=elector if elector is not None else AlwaysLeading(),
        elector=elector,
        election_lease=lease_store,
        election_api=election_api,
        worker_namespace=settings.worker_namespace or lease.default_namespace(),
    )
    if elector is not None:
        elector.on_started = services.lead
    services.start(draining=draining)
    return services


async def stop(services: Services | None, *, drain_timeout: float) -> None:
    if services is not None:
        await services.close(drain_timeout=drain_timeout)
