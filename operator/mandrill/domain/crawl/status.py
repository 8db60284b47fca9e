"""The CrawlJob status codec: the one place that reads and builds a CrawlJob's `status`.

Typed as crds/crawljob.yaml declares it. A run writes three kinds of status:
`started` (Running, every counter of an earlier attempt cleared, or carried
on from the store when the attempt resumes an interrupted crawl), `counters`
as pages come in (and once more, with a message, when a shutdown interrupts
the crawl), and `final` (phase, the engine's exact numbers, where the results
are, conditions). Whether a job is finished is read here too.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from mandrill.domain import conditions, timestamps
from mandrill.domain.conditions import Condition

if TYPE_CHECKING:  # job imports this module; the types are for annotations only
    from mandrill.domain.crawl.job import JobRef, Outcome, Tally

FINISHED = frozenset({"Succeeded", "Failed"})


class CrawlProgress(TypedDict):
    done: int
    scheduled: int
    elapsedSeconds: int
    updatedAt: str


class CrawlResults(TypedDict):
    store: str
    jobUID: str
    pages: int
    edges: int
    export: str


class CrawlJobStatus(TypedDict, total=False):
    """`status` of a CrawlJob; None clears a field (merge patch)."""

    phase: str
    reason: str
    message: str
    attempts: int
    seeds: int
    pagesFetched: int
    pagesFailed: int
    linksFound: int
    uniqueLinks: int | None
    bytes: int
    errorsByKind: dict[str, int] | None
    progress: CrawlProgress | None
    startedAt: str
    finishedAt: str | None
    results: CrawlResults | None
    observedGeneration: int
    conditions: list[Condition] | None


def is_finished(status: Mapping[str, Any]) -> bool:
    """A finished job is never crawled again, not even after an operator restart."""
    return status.get("phase") in FINISHED


def started(
    *,
    attempt: int,
    seeds: int,
    when: datetime.datetime,
    job: JobRef,
    resumed: Tally | None = None,
) -> tuple[CrawlJobStatus, str]:
    """Running, with the counters of any earlier attempt cleared (or, resuming, carried on
    from `resumed`); the reason, which is also the Event's, and what to say about it."""
    again = attempt > 1
    if resumed is not None:
        p = resumed.progress
        reason = "Resumed"
        message = (
            f"attempt {attempt}: resumed an interrupted crawl at {p.done} of {p.scheduled} "
            f"URLs done; {p.scheduled - p.done} pending"
        )
    elif again:
        reason = "Restarted"
        message = f"attempt {attempt}: an earlier crawl stored nothing; crawling from scratch"
    else:
        reason = "Crawling"
        message = f"crawling from {seeds} seed URL{'s' if seeds != 1 else ''}"
    status = CrawlJobStatus(
        phase="Running",
        reason=reason,
        message=message,
        attempts=attempt,
        seeds=seeds,
        startedAt=timestamps.format(when),
        finishedAt=None,
        observedGeneration=job.generation,
        pagesFetched=0,
        pagesFailed=0,
        linksFound=0,
        bytes=0,
        errorsByKind=None,
        progress=None,
        results=None,
        uniqueLinks=None,
        conditions=None,
    )
    if resumed is not None:
        status.update(counters(resumed))
    return status, message


def queued(message: str, *, job: JobRef) -> CrawlJobStatus:
    """Pending, reason Queued: waiting for a crawl slot. Nothing else is touched, so an
    interrupted crawl's counters and attempts stay as they were until it resumes."""
    return CrawlJobStatus(
        phase="Pending", reason="Queued", message=message, observedGeneration=job.generation
    )


def counters(tally: Tally) -> CrawlJobStatus:
    """Counters and progress as pages come in."""
    p = tally.progress
    return CrawlJobStatus(
        pagesFetched=tally.pages_ok,
        pagesFailed=tally.pages_failed,
        linksFound=tally.links,
        bytes=tally.bytes,
        errorsByKind=dict(tally.errors),
        progress=CrawlProgress(
            done=p.done,
            scheduled=p.scheduled,
            elapsedSeconds=int(p.elapsed),
            updatedAt=timestamps.format(tally.clock()),
        ),
    )


def interrupted(tally: Tally) -> CrawlJobStatus:
    """The counts at a shutdown, saying what happens next (the job stays unfinished)."""
    status = counters(tally)
    status["message"] = (
        "interrupted by an operator shutdown at the counts shown; "
        "the next operator instance resumes it from the store"
    )
    return status


def final(outcome: Outcome, *, job: JobRef) -> CrawlJobStatus:
    """The finishing status patch: phase, counters, errors by kind, results, conditions."""
    status = CrawlJobStatus(
        phase=str(outcome.phase),
        reason=outcome.reason,
        message=outcome.message,
        observedGeneration=job.generation,
        finishedAt=timestamps.format(outcome.finished),
        seeds=outcome.seeds,
    )
    if outcome.tally is not None:
        status.update(counters(outcome.tally))
    stats = outcome.stats
    if stats is not None:
        # The engine's numbers are authoritative where the tally could only approximate.
        status["pagesFetched"] = stats.pages_ok
        status["pagesFailed"] = stats.pages_failed
        status["linksFound"] = stats.edges
        status["uniqueLinks"] = stats.unique_urls
        status["bytes"] = stats.bytes
        status["errorsByKind"] = dict(stats.failures)
    if outcome.results is not None:
        status["results"] = CrawlResults(
            store=outcome.results.store,
            jobUID=job.uid,
            pages=outcome.results.pages,
            edges=outcome.results.edges,
            export=f"mandrill results {job} --store-url {outcome.results.store}",
        )
    succeeded = str(outcome.phase) == "Succeeded"
    # A run starts with no conditions (`started` clears them), so both are set
    # once, at the end, as a Job's Complete and Failed are.
    made: list[Condition] = []
    for kind, holds in (("Complete", succeeded), ("Failed", not succeeded)):
        made = conditions.set_condition(
            made,
            type=kind,
            status=holds,
            reason=outcome.reason,
            message=outcome.message,
            generation=job.generation,
            now=outcome.finished,
        )
    status["conditions"] = made
    return status
