"""Prometheus metrics: what the operator consumed, restarted and crawled, and how fast.

Module-level collectors on prometheus_client's default registry, served on
/metrics by `serve` (a small thread of prometheus_client's own, so a busy
event loop never delays a scrape). The names follow Prometheus conventions:
counters end in _total, durations are in seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import prometheus_client as prom

from mandrill.domain.crawl.models import PageResult

REQUESTS_CONSUMED = prom.Counter(
    "mandrill_restart_requests_consumed_total", "RestartRequests taken up (first attempts)"
)
REQUESTS_ACKNOWLEDGED = prom.Counter(
    "mandrill_restart_requests_acknowledged_total",
    "RestartRequests acknowledged, by final phase",
    ["phase"],
)
REQUESTS_IN_FLIGHT = prom.Gauge(
    "mandrill_restart_requests_in_flight", "RestartRequests being handled right now"
)
REQUEST_DURATION = prom.Histogram(
    "mandrill_restart_request_duration_seconds",
    "From the handler's start to the acknowledgement",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RESTARTS = prom.Counter(
    "mandrill_restarts_total", "Targets handled, by strategy and outcome", ["strategy", "outcome"]
)
REQUEST_ERRORS = prom.Counter(
    "mandrill_restart_request_errors_total",
    "Unexpected errors while handling a RestartRequest (each attempt; InternalError after a few)",
)
REQUESTS_RESYNCED = prom.Counter(
    "mandrill_restart_requests_resynced_total",
    "Unacknowledged RestartRequests the periodic resync found that no event had brought",
)
REQUESTS_QUEUED = prom.Gauge(
    "mandrill_restart_requests_queued", "RestartRequests waiting for a free slot"
)
OLDEST_UNACKNOWLEDGED = prom.Gauge(
    "mandrill_restart_requests_oldest_unacknowledged_timestamp_seconds",
    "Creation time (Unix seconds) of the oldest RestartRequest this process holds "
    "unacknowledged (queued, in flight or backing off); 0 while it holds none",
)
JOURNAL_SAVES = prom.Counter(
    "mandrill_journal_saves_total",
    "Journal writes of RestartRequests, first saves and retries, by outcome: saved, failed",
    ["outcome"],
)
EVENTS_DROPPED = prom.Counter(
    "mandrill_events_dropped_total",
    "Kubernetes Events not posted (queue full, or the Events API refused them)",
)
BACKGROUND_FAILURES = prom.Counter(
    "mandrill_background_task_failures_total",
    "Background tasks (TTL deletions, journal retries, retries) that ended with an error",
    ["group"],
)
CRAWL_PAGES = prom.Counter("mandrill_crawl_pages_total", "Crawled URLs, by outcome", ["outcome"])
CRAWL_LINKS = prom.Counter("mandrill_crawl_links_total", "Links found on crawled pages")
CRAWL_ERRORS = prom.Counter("mandrill_crawl_errors_total", "Crawl failures, by kind", ["kind"])
CRAWL_FETCH = prom.Histogram(
    "mandrill_crawl_fetch_seconds",
    "Time to an outcome per URL, retries included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CRAWLS_RUNNING = prom.Gauge(
    "mandrill_crawls_running",
    "CrawlJobs being crawled right now: in-process crawls holding a slot, and CrawlJobs "
    "followed on worker pods",
)
CRAWLS_QUEUED = prom.Gauge(
    "mandrill_crawls_queued",
    "In-process CrawlJobs waiting for a crawl slot (--max-crawls), phase Pending, reason Queued",
)
CRAWL_SLOTS = prom.Gauge(
    "mandrill_crawl_slots",
    "In-process crawls this operator runs at once (--max-crawls); 0: no limit",
)
CRAWL_WORKER_JOBS = prom.Counter(
    "mandrill_crawl_worker_jobs_total",
    "Worker Jobs of CrawlJobs with spec.workers, by event: created, deleted (with their "
    "CrawlJob, or swept), succeeded, failed",
    ["event"],
)
SCHEDULE_RUNS = prom.Counter(
    "mandrill_schedule_runs_total",
    "RestartSchedule runs decided on, by outcome: created, exists (made before), skipped, "
    "missed (earlier runs missed while the operator was away included), suspended",
    ["outcome"],
)
SCHEDULE_ERRORS = prom.Counter(
    "mandrill_schedule_errors_total",
    "Failed passes of a RestartSchedule's loop (API errors and unexpected ones; retried)",
)
LEADER = prom.Gauge(
    "mandrill_leader",
    "1 while this process holds the leader election's Lease (or runs without an election)",
)
LEADERSHIP_CHANGES = prom.Counter(
    "mandrill_leadership_changes_total",
    "Leadership changes of this process: acquired, lost (renew deadline passed, or another "
    "holder seen), released (after the drain)",
    ["change"],
)


# Series whose labels are known up front exist from the start at 0, so a rate
# over them is 0 rather than no data before the first event (alerting rules).
for _phase in ("Succeeded", "Failed"):
    REQUESTS_ACKNOWLEDGED.labels(_phase)
for _outcome in ("saved", "failed"):
    JOURNAL_SAVES.labels(_outcome)
for _outcome in ("ok", "failed"):
    CRAWL_PAGES.labels(_outcome)


def leadership_changed(change: str) -> None:
    """The elector's `on_change`."""
    LEADER.set(1 if change == "acquired" else 0)
    LEADERSHIP_CHANGES.labels(change).inc()


class RestartObserver:
    """The restart service's `Observer`, on the collectors above."""

    def consumed(self) -> None:
        REQUESTS_CONSUMED.inc()

    def acknowledged(self, phase: str) -> None:
        REQUESTS_ACKNOWLEDGED.labels(phase).inc()

    def restarted(self, strategy: str, outcome: str) -> None:
        RESTARTS.labels(strategy, outcome).inc()

    def internal_error(self) -> None:
        REQUEST_ERRORS.inc()

    def resynced(self, stranded: int) -> None:
        REQUESTS_RESYNCED.inc(stranded)

    def queued(self, waiting: int) -> None:
        REQUESTS_QUEUED.set(waiting)

    def oldest_unacknowledged(self, created: float | None) -> None:
        OLDEST_UNACKNOWLEDGED.set(created if created is not None else 0)

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        with REQUESTS_IN_FLIGHT.track_inprogress(), REQUEST_DURATION.time():
            yield


class ScheduleObserver:
    """The schedule service's `Observer`, on the collectors above."""

    def runs(self, outcome: str, count: int = 1) -> None:
        SCHEDULE_RUNS.labels(outcome).inc(count)

    def failed(self) -> None:
        SCHEDULE_ERRORS.inc()


def journal_saved(outcome: str) -> None:
    """The journal's `on_save`."""
    JOURNAL_SAVES.labels(outcome).inc()


def background_failed(group: str) -> None:
    BACKGROUND_FAILURES.labels(group).inc()


def page_crawled(result: PageResult) -> None:
    """Account for one crawled URL."""
    CRAWL_PAGES.labels("ok" if result.ok else "failed").inc()
    CRAWL_FETCH.observe(result.elapsed)
    if result.error is not None:
        CRAWL_ERRORS.labels(str(result.error)).inc()
    else:
        CRAWL_LINKS.inc(result.links)


def crawl_slots_changed(running: int, queued: int) -> None:
    """The crawl slot queue's `observe`: only the queue length is its own to say;
    mandrill_crawls_running also counts CrawlJobs on worker pods, tracked by the handler."""
    CRAWLS_QUEUED.set(queued)


def serve(port: int) -> None:
    """Serve /metrics on all interfaces (the metrics Service scrapes the pod)."""
    prom.start_http_server(port)
