"""What a CrawlJob run by workers is, from its Job's status and the store's counts.

Two witnesses, and neither is enough alone. The Job says whether the workers
are still running and how they ended; only the store says whether the crawl
is done. A Job can complete with work left (every worker exited 0 too soon,
or, on a cluster of fake nodes, without running at all), so Succeeded needs
both: the Job Complete AND the frontier finished (no URL pending, or the
maxPages budget spent). Anything else that ends the Job is Failed, saying how
many URLs were left; never a silent success.

Pure: the adapters read a Job's status (a plain mapping) and the store's
counts into the values below, and `decide` turns them into a Verdict and
the status patches.
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Mapping
from typing import Any, TypedDict

import attrs

from mandrill.domain import conditions, timestamps
from mandrill.domain.crawl import status as crawl_status
from mandrill.domain.crawl.job import JobRef, Outcome, Phase, StoredResults, Tally
from mandrill.domain.crawl.models import Progress


class WorkersStatus(TypedDict):
    """status.workers of a CrawlJob."""

    job: str
    """The Job's namespace/name."""
    desired: int
    active: int
    ready: int
    succeeded: int
    failed: int


@attrs.frozen
class JobState:
    """A worker Job's status, as far as the decision needs it."""

    desired: int
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    """Condition Complete is True: every index succeeded."""
    failure: str | None = None
    """Condition Failed is True: its reason and message."""
    failure_reason: str | None = None
    """That condition's reason alone (DeadlineExceeded, BackoffLimitExceeded, ...)."""

    @classmethod
    def from_job(cls, body: Mapping[str, Any]) -> JobState:
        """From a batch/v1 Job as the API server returns it (spec and status)."""
        spec, status = body.get("spec") or {}, body.get("status") or {}
        found = {str(c.get("type")): c for c in status.get("conditions") or ()}

        def holds(kind: str) -> bool:
            return str(found.get(kind, {}).get("status")) == "True"

        failure = reason = None
        if holds("Failed"):
            c = found["Failed"]
            reason = str(c.get("reason") or "Failed")
            failure = f"{reason}: {c.get('message') or 'no message'}"
        return cls(
            desired=int(spec.get("completions") or 0),
            active=int(status.get("active") or 0),
            ready=int(status.get("ready") or 0),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            complete=holds("Complete"),
            failure=failure,
            failure_reason=reason,
        )

    @property
    def ended(self) -> bool:
        return self.complete or self.failure is not None


@attrs.frozen
class StoreProgress:
    """A crawl's rows in the store, counted (what the workers wrote so far)."""

    pending: int = 0
    """Frontier rows admitted without an outcome yet (leased ones included)."""
    done: int = 0
    """Frontier rows with their outcome stored."""
    pages_ok: int = 0
    failures: Mapping[str, int] = attrs.Factory(dict)
    """crawl_pages rows with an error, by kind."""
    links: int = 0
    bytes: int = 0

    @property
    def scheduled(self) -> int:
        return self.pending + self.done

    @property
    def outcomes(self) -> int:
        return self.pages_ok + sum(self.failures.values())

    def finished(self, *, max_pages: int) -> bool:
        """The crawl is over: the frontier was seeded and nothing is pending, or the
        maxPages budget is spent (what is still pending then is never fetched)."""
        if self.scheduled == 0:
            return False
        return self.pending == 0 or self.outcomes >= max_pages

    def tally(self, *, elapsed: float, clock: Any) -> Tally:
        """The counters in the single-process crawl's shape, for the status codec."""
        failed = sum(self.failures.values())
        return Tally(
            pages_ok=self.pages_ok,
            pages_failed=failed,
            links=self.links,
            bytes=self.bytes,
            errors=collections.Counter(dict(self.failures)),
            progress=Progress(
                done=self.outcomes, scheduled=self.scheduled, failed=failed, elapsed=elapsed
            ),
            clock=clock,
        )


@attrs.frozen
class Verdict:
    """Where the CrawlJob stands: still Running, or how it ended."""

    phase: Phase
    reason: str
    message: str


def decide(
    state: JobState,
    progress: StoreProgress,
    *,
    max_pages: int,
    total_timeout: float | None,
    elapsed: float,
) -> Verdict:
    """The CrawlJob's phase from its Job and its rows.

    A Job still running is Running, whatever the store says (a worker may
    still be flushing). An ended Job is Succeeded only if the store shows the
    crawl finished, or stopped by totalTimeoutSeconds as the single-process
    crawl is (reason TotalTimeout); else Failed, with the count of URLs left. A Job
    Kubernetes ended at its deadline (activeDeadlineSeconds, the total timeout and a
    grace) is that timeout too, once it has passed."""
    left = _left(progress)
    timed_out = total_timeout is not None and elapsed >= total_timeout
    if state.failure_reason == "DeadlineExceeded" and timed_out and progress.scheduled:
        return Verdict(
            Phase.SUCCEEDED,
            "TotalTimeout",
            f"stopped by totalTimeoutSeconds (the Job's deadline ended the workers still "
            f"running): {_summary(state, progress)}; {left}",
        )
    if state.failure is not None:
        return Verdict(
            Phase.FAILED, "WorkersFailed", f"the worker Job failed ({state.failure}); {left}"
        )
    if not state.complete:
        return Verdict(
            Phase.RUNNING,
            "WorkersRunning",
            f"{state.active} of {state.desired} workers running; "
            f"{progress.outcomes} of {progress.scheduled} URLs done",
        )
    summary = _summary(state, progress)
    if progress.finished(max_pages=max_pages):
        return Verdict(Phase.SUCCEEDED, "Completed", summary)
    if timed_out and progress.scheduled:
        return Verdict(
            Phase.SUCCEEDED, "TotalTimeout", f"stopped by totalTimeoutSeconds: {summary}; {left}"
        )
    return Verdict(
        Phase.FAILED,
        "FrontierUnfinished",
        f"all {state.desired} workers exited but the crawl is not finished: {left}",
    )


def _summary(state: JobState, progress: StoreProgress) -> str:
    return (
        f"{progress.pages_ok} pages fetched, {sum(progress.failures.values())} failed, "
        f"{progress.links} links, by {state.desired} workers"
    )


def _left(progress: StoreProgress) -> str:
    if progress.scheduled == 0:
        return "no worker seeded the frontier, every seed URL is left"
    return f"{progress.pending} of {progress.scheduled} URLs left"


def workers(state: JobState | None, *, job: str, desired: int) -> WorkersStatus:
    """status.workers; all zero but `desired` while the Job is not there (yet)."""
    if state is None:
        return WorkersStatus(job=job, desired=desired, active=0, ready=0, succeeded=0, failed=0)
    return WorkersStatus(
        job=job,
        desired=state.desired or desired,
        active=state.active,
        ready=state.ready,
        succeeded=state.succeeded,
        failed=state.failed,
    )


def running(
    verdict: Verdict,
    progress: StoreProgress,
    *,
    workers_status: WorkersStatus,
    elapsed: float,
    now: datetime.datetime,
    job: JobRef,
) -> dict[str, Any]:
    """The progress patch while the workers run."""
    patch: dict[str, Any] = dict(
        crawl_status.counters(progress.tally(elapsed=elapsed, clock=lambda: now))
    )
    patch.update(
        phase=str(Phase.RUNNING),
        reason=verdict.reason,
        message=verdict.message,
        workers=workers_status,
        observedGeneration=job.generation,
    )
    return patch


def outcome(
    verdict: Verdict,
    progress: StoreProgress,
    *,
    seeds: int,
    started: datetime.datetime,
    now: datetime.datetime,
    results: StoredResults | None = None,
) -> Outcome:
    """How the crawl ended, in the single-process crawl's terms (for the store and status)."""
    elapsed = max(0.0, (now - started).total_seconds())
    return Outcome(
        phase=verdict.phase,
        reason=verdict.reason,
        message=verdict.message,
        started=started,
        finished=now,
        seeds=seeds,
        tally=progress.tally(elapsed=elapsed, clock=lambda: now),
        results=results,
    )


def final(
    ended: Outcome,
    *,
    workers_status: WorkersStatus,
    job: JobRef,
    previous: Mapping[str, Any],
    unique_urls: int | None = None,
) -> dict[str, Any]:
    """The finishing patch: the codec's final status, the workers, the distinct URLs met
    (when the store could count them), and the conditions set over what the CrawlJob
    had, so a condition that holds keeps its time."""
    patch: dict[str, Any] = dict(crawl_status.final(ended, job=job))
    if unique_urls is not None:
        patch["uniqueLinks"] = unique_urls
    made: list[conditions.Condition] = [
        conditions.typed(c) for c in previous.get("conditions") or ()
    ]
    succeeded = ended.phase is Phase.SUCCEEDED
    for kind, holds in (("Complete", succeeded), ("Failed", not succeeded)):
        made = conditions.set_condition(
            made,
            type=kind,
            status=holds,
            reason=ended.reason,
            message=ended.message,
            generation=job.generation,
            now=ended.finished,
        )
    patch["conditions"] = made
    patch["workers"] = workers_status
    return patch


def started_at(status: Mapping[str, Any], *, default: datetime.datetime) -> datetime.datetime:
    """When the workers' crawl started, as status says; `default` if it does not."""
    text = status.get("startedAt")
    return (timestamps.parse(str(text)) if text else None) or default
