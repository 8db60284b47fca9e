"""RestartRequest handlers: parse, hand to the domain, map errors to kopf's retry model."""

from __future__ import annotations

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


def post_event(obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, obj), type=kind, reason=reason, message=message[:1000])


def _ref(meta: Mapping[str, Any]) -> RequestRef:
    return RequestRef(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
    )


@kopf.on.create(*RR)
async def consume(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: kopf.Memo,
    retry: int,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    if process.is_acknowledged(status):
        return
    if memo.draining.is_set():
        # Shutting down: take no new work. kopf keeps the handler pending, so the
        # next operator instance consumes this request.
        raise kopf.TemporaryError("operator is shutting down; left for the next instance", delay=5)
    services: Services = memo.services
    if retry == 0:
        metrics.REQUESTS_CONSUMED.inc()
    with metrics.REQUESTS_IN_FLIGHT.track_inprogress(), metrics.REQUEST_DURATION.time():
        await _consume(
            body=body,
            spec=spec,
            status=status,
            meta=meta,
            services=services,
            retry=retry,
            logger=logger,
        )


async def _consume(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    services: Services,
    retry: int,
    logger: kopf.Logger,
) -> None:
    request = _ref(meta)
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
        metrics.REQUESTS_ACKNOWLEDGED.labels(str(outcome.phase)).inc()
        for target in outcome.targets:
            metrics.RESTARTS.labels(str(parsed.strategy), str(target.outcome)).inc()
    except TransientError as e:
        raise kopf.TemporaryError(str(e), delay=min(60, 2 ** min(retry, 6))) from e
    except PermanentError as e:
        logger.warning("abandoned: %s: %s", e.reason, e.message)
        return
    if parsed.ttl_seconds_after_finished is not None:
        services.schedule_ttl(
            request=request,
            finished=outcome.finished,
            ttl_seconds=parsed.ttl_seconds_after_finished,
        )


def _finished_with_ttl(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return spec.get("ttlSecondsAfterFinished") is not None and process.is_acknowledged(status)


@kopf.on.resume(*RR, when=_finished_with_ttl)
async def resume_ttl(
    *, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    """After an operator restart, finished requests still get deleted on time."""
    finished = parse_timestamp(status.get("finishedAt")) or datetime.datetime.now(datetime.UTC)
    memo.services.schedule_ttl(
        request=_ref(meta), finished=finished, ttl_seconds=int(spec["ttlSecondsAfterFinished"])
    )


def _unsaved(status: kopf.Status, **_: Any) -> bool:
    return journal_retry.unsaved(status)


@kopf.on.event(*RR, when=_unsaved)
async def save_later(*, body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A request acknowledged with Saved=False: keep retrying its journal write.

    Also fires for every such request when the operator starts, so the
    backlog survives restarts (it lives in the requests' status)."""
    if type != "DELETED":
        memo.services.journal_retrier.schedule(body)
