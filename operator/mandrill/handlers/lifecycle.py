"""Operator start-up and clean-up: kopf settings, shared clients, login."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from mandrill import resources, wiring
from mandrill.adapters import metrics
from mandrill.config import Settings


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf and our kubernetes_asyncio client share one set of credentials."""
    return await kopf.login_via_async_client(**kwargs)


@kopf.on.startup()
async def start(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    config: Settings = memo.config
    # Our own prefix for kopf's bookkeeping, in annotations (status.kopf would
    # need a schema of its own).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=resources.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=resources.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{resources.GROUP}/finalizer"
    # Our Events go through our own poster (adapters.events); kopf turns its log
    # lines about an object into Events too, which at INFO would add "Handler
    # succeeded" to every request. Its warnings and errors stay visible.
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 30
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Drain: in-flight handlers get the drain timeout after a stop signal, then
    # are cancelled (and hand their work back); kopf's last-resort SIGKILL comes
    # only well after that, still inside the pod's termination grace period.
    settings.queueing.exit_timeout = config.drain_timeout
    settings.process.ultimate_exiting_timeout = config.drain_timeout + 15
    memo.services = await wiring.start(config, draining=memo.draining)
    if config.metrics_port:
        try:
            metrics.serve(config.metrics_port)
        except OSError as e:
            # Metrics are for watching the operator, not for doing its job.
            logger.warning("metrics not served on port %d: %s", config.metrics_port, e)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Drain the requests in flight (the drain timeout), then close everything in order."""
    config: Settings = memo.config
    await wiring.stop(getattr(memo, "services", None), drain_timeout=config.drain_timeout)
