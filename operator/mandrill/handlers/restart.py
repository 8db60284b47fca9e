"""RestartRequest handlers: parse, hand to the domain, retry what is transient.

These are kopf *event* handlers, not create handlers, on purpose: a request's
own status (the plan, then the Acknowledged condition) is the record of what
has been done, so kopf needs to keep no bookkeeping of its own on the object.
That saves an API write per request and the work of kopf's change detection,
and it makes resuming plain: every unacknowledged request is handled again
whenever the operator (re)starts, since kopf lists them all on start-up, and
the domain picks up from the recorded plan. Per object, kopf runs handlers
one at a time, event after event; the events our own status patches cause
arrive after the work is done and still show it unfinished, so requests this
process has finished are remembered (until they are deleted) and skipped.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from typing import Any, cast

import kopf

from mandrill import resources
from mandrill.adapters import journal_retry, metrics
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.restart import process
from mandrill.domain.restart.models import (
    InvalidSpec,
    RequestRef,
    RestartSpec,
    parse_timestamp,
)
from mandrill.wiring import Services

RR = (resources.GROUP, resources.VERSION, resources.RESTART_REQUESTS)
MAX_BACKOFF = 60.0


def post_event(obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, obj), type=kind, reason=reason, message=message[:1000])


def _ref(meta: Mapping[str, Any]) -> RequestRef:
    return RequestRef(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
    )


def _pending(
    type: str | None, status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> bool:
    return (
        type != "DELETED"
        and not process.is_acknowledged(status)
        and meta.get("uid") not in memo.services.handled
    )


@kopf.on.event(*RR, when=_pending)
async def consume(
    *,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Consume one request; transient failures are retried here, with backoff."""
    services: Services = memo.services
    if not (body.get("status") or {}).get("attempts"):
        metrics.REQUESTS_CONSUMED.inc()
    with metrics.REQUESTS_IN_FLIGHT.track_inprogress(), metrics.REQUEST_DURATION.time():
        if await _consume_until_done(
            body=body, services=services, draining=memo.draining, logger=logger
        ):
            services.handled.add(body["metadata"]["uid"])


async def _consume_until_done(
    *,
    body: kopf.Body,
    services: Services,
    draining: asyncio.Event,
    logger: kopf.Logger,
) -> bool:
    """True once the request is acknowledged (or gone); False if left to the next instance."""
    current: Mapping[str, Any] = body
    delay = 1.0
    # Shutting down: take no new work, and retry none; the next instance
    # lists every unacknowledged request when it starts.
    while not draining.is_set():
        try:
            await _consume(body=current, services=services, logger=logger)
        except TransientError as e:
            logger.warning("will retry in %.0f s: %s", delay, e)
        else:
            return True
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF)
        try:
            current = await services.read_request(_ref(body["metadata"]))
        except PermanentError:
            return True  # deleted meanwhile: nothing left to do
        except TransientError as e:
            logger.warning("could not re-read the request: %s", e)
            continue
        if process.is_acknowledged(current.get("status") or {}):
            return True
    return False


async def _consume(*, body: Mapping[str, Any], services: Services, logger: kopf.Logger) -> None:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    request = _ref(body["metadata"])
    reporter = services.reporter(
        request=request, body=body, events=post_event, attempts=int(status.get("attempts", 0)) + 1
    )
    ctx = services.restart_context(reporter, post_event)
    try:
        try:
            parsed = RestartSpec.from_spec(spec)
        except InvalidSpec as e:
            await process.reject(reason="InvalidSpec", message=str(e), ctx=ctx)
            metrics.REQUESTS_ACKNOWLEDGED.labels("Failed").inc()
            return
        outcome = await process.consume(
            request=request,
            spec=parsed,
            raw_spec=dict(spec),
            prior=process.prior_plan(status, description=parsed.describe_target()),
            ctx=ctx,
        )
    except PermanentError as e:
        # Typically a 403 on the request itself: its status cannot be written,
        # so the Event is the only place the reason shows.
        logger.warning("abandoned: %s: %s", e.reason, e.message)
        post_event(body, "Warning", e.reason, f"not carried out: {e.message}")
        return
    metrics.REQUESTS_ACKNOWLEDGED.labels(str(outcome.phase)).inc()
    for target in outcome.targets:
        metrics.RESTARTS.labels(str(parsed.strategy), str(target.outcome)).inc()
    if parsed.ttl_seconds_after_finished is not None:
        services.schedule_ttl(
            request=request,
            finished=outcome.finished,
            ttl_seconds=parsed.ttl_seconds_after_finished,
        )


def _finished_with_ttl(type: str | None, spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return (
        type != "DELETED"
        and spec.get("ttlSecondsAfterFinished") is not None
        and process.is_acknowledged(status)
    )


@kopf.on.event(*RR, when=_finished_with_ttl)
async def delete_after_ttl(
    *, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    """Finished requests with a TTL are deleted on time, also after an operator restart
    (kopf lists every request on start-up). Scheduling twice is a no-op."""
    finished = parse_timestamp(status.get("finishedAt")) or datetime.datetime.now(datetime.UTC)
    memo.services.schedule_ttl(
        request=_ref(meta), finished=finished, ttl_seconds=int(spec["ttlSecondsAfterFinished"])
    )


def _unsaved(type: str | None, status: kopf.Status, **_: Any) -> bool:
    return type != "DELETED" and journal_retry.unsaved(status)


@kopf.on.event(*RR, when=_unsaved)
async def save_later(*, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A request acknowledged with Saved=False: keep retrying its journal write.

    Also fires for every such request when the operator starts, so the
    backlog survives restarts (it lives in the requests' status)."""
    memo.services.journal_retrier.schedule(body)


@kopf.on.event(*RR, when=lambda type, **_: type == "DELETED")
async def forget(*, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """A deleted request needs remembering no more."""
    memo.services.handled.discard(meta.get("uid"))
