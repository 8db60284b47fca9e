"""CrawlJob handler: one kopf daemon per unfinished CrawlJob, running its crawl.

A daemon, not a create handler, because a crawl is long and must stop when
its CrawlJob goes. kopf sets the daemon's `stopped` flag when the job is
deleted or the operator exits; the daemon then cancels its crawl at once (the
cancellation runs down through the engine's TaskGroup and closes the crawl's
HTTP session) and returns. kopf keeps a finalizer on the job while its daemon
runs, so the object goes only once the crawl has stopped; `cancellation_*`
bound how long kopf waits before it cancels the daemon itself.

The `when` filter keeps finished jobs (Succeeded or Failed) from ever getting
a daemon again, so an operator restart crawls only the unfinished ones, each
resumed from its frontier in the store (see mandrill.domain.crawl.job_run).
The filter also trips on the job's own final status patch; that stop is not a
reason to cancel, since the run is only posting its last Events.

With leader election, a standby's daemons wait (kopf starts one per
unfinished job in every replica) and crawl only once this process leads.

An in-process crawl first takes one of --max-crawls slots
(mandrill.domain.crawl.slots), after leading, so only the leader's crawls
count. One that must wait says so (Pending, Queued, one Event) and starts
when a slot frees, oldest job first. Waiting is part of the crawl's task, so
a deletion or a shutdown stops a queued job exactly as it stops a running
one: it leaves the queue at once, having taken nothing.

A job with `spec.workers` of 2 or more is crawled by worker pods instead
(mandrill.domain.crawl.worker_run): the daemon creates their Job and follows
it into the status. Deleting the CrawlJob stops the daemon as above, and the
daemon then deletes the Job and its pods at once; an operator that is only
leaving leaves the workers running, for the next leader to follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from mandrill import resources
from mandrill.adapters import metrics
from mandrill.application import election
from mandrill.domain.crawl import job, job_run, slots, worker_run, workers
from mandrill.domain.crawl import status as crawl_status
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.wiring import Services

CJ = (resources.GROUP, resources.VERSION, resources.CRAWL_JOBS)
CANCELLATION_BACKOFF = 0.5
"""Seconds kopf lets the daemon stop its crawl itself before cancelling the daemon."""
CANCELLATION_TIMEOUT = 10.0
"""Seconds a cancelled daemon may take to unwind before kopf gives up on it."""
_STOP_CRAWL = (
    kopf.DaemonStoppingReason.RESOURCE_DELETED
    | kopf.DaemonStoppingReason.OPERATOR_EXITING
    | kopf.DaemonStoppingReason.OPERATOR_PAUSING
)


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return not crawl_status.is_finished(status)


@kopf.daemon(
    *CJ,
    when=_unfinished,
    cancellation_backoff=CANCELLATION_BACKOFF,
    cancellation_timeout=CANCELLATION_TIMEOUT,
)
async def crawl(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: kopf.Memo,
    retry: int,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    if crawl_status.is_finished(status):
        return
    services: Services = memo.services
    if not await election.until_leading(services.leadership, stopped.wait):
        logger.debug("not crawled: stopped before this process became the leader")
        return
    ref = job.JobRef(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
    )
    on_workers = workers.requested_workers(spec) > 1
    if on_workers:
        work = asyncio.create_task(
            _tracked(
                lambda: worker_run.run(
                    ref,
                    raw_spec=dict(spec),
                    status=dict(status),
                    ctx=services.worker_context(job=ref, body=body),
                )
            )
        )
    else:
        work = asyncio.create_task(
            _in_a_slot(services, ref, body=body, meta=meta, spec=spec, status=status, logger=logger)
        )
    try:
        outcome = await _unless_stopped(work, stopped)
    except TransientError as e:
        raise kopf.TemporaryError(str(e), delay=min(60, 2 ** min(retry + 1, 6))) from e
    except PermanentError as e:
        logger.warning("crawl abandoned: %s: %s", e.reason, e.message)
        return
    if outcome is None:
        logger.info("crawl stopped: %s", stopped.reason)
        deleted = stopped.reason is not None and stopped.reason & _DELETED
        if on_workers and deleted:
            # Shielded: kopf cancels a daemon that outstays its backoff; the deletion must
            # go on regardless (and the sweep would find the Job if even this failed).
            await asyncio.shield(asyncio.ensure_future(_stop_workers(services, ref, logger)))
    else:
        logger.info("crawl %s: %s: %s", outcome.phase, outcome.reason, outcome.message)
        if on_workers:
            metrics.CRAWL_WORKER_JOBS.labels(str(outcome.phase).lower()).inc()


_DELETED = kopf.DaemonStoppingReason.RESOURCE_DELETED


async def _tracked(run: Callable[[], Awaitable[job.Outcome]]) -> job.Outcome:
    """`run()`, counted in mandrill_crawls_running while it runs."""
    with metrics.CRAWLS_RUNNING.track_inprogress():
        return await run()


async def _in_a_slot(
    services: Services,
    ref: job.JobRef,
    *,
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    logger: kopf.Logger,
) -> job.Outcome:
    """The in-process crawl, once it holds a crawl slot (--max-crawls), oldest job first.

    Waiting counts no attempt and touches nothing but phase, reason and message,
    so the attempt that follows resumes from the store as it would have."""
    was_queued = status.get("reason") == "Queued"

    async def queued(usage: slots.Usage) -> None:
        logger.info("queued: %s", usage.message)
        try:
            await services.crawl_queued(
                job=ref, body=body, message=usage.message, event=not was_queued
            )
        except TransientError as e:  # waiting goes on; the crawl's own writes follow
            logger.warning("Queued status not written: %s", e)

    order = (str(meta.get("creationTimestamp") or ""), ref.namespace, ref.name)
    async with services.crawl_slots.held(order, on_queued=queued):
        attempt = int(status.get("attempts") or 0) + 1
        ctx = services.crawl_context(job=ref, body=body)
        return await _tracked(
            lambda: job_run.run(ref, raw_spec=dict(spec), attempt=attempt, ctx=ctx)
        )


async def _stop_workers(services: Services, ref: job.JobRef, logger: kopf.Logger) -> None:
    """The CrawlJob is going: its worker Job and pods go with it, now."""
    try:
        await services.stop_workers(ref)
    except (PermanentError, TransientError) as e:
        logger.warning("workers not deleted (%s); the sweep deletes them later", e)
    else:
        logger.info("workers stopped: their Job and pods deleted")


async def _unless_stopped(
    work: asyncio.Task[job.Outcome], stopped: kopf.DaemonStopped
) -> job.Outcome | None:
    """`work`'s outcome; None if the job was deleted or the operator is leaving first."""

    async def flagged() -> None:
        await stopped.wait()

    stop = asyncio.create_task(flagged())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done() and stopped.reason is not None and stopped.reason & _STOP_CRAWL:
            work.cancel()
            await asyncio.wait([work])
            return None
        return await work
    finally:
        stop.cancel()
        if not work.done():  # we were cancelled ourselves: take the crawl down with us
            work.cancel()
            await asyncio.wait([work])
