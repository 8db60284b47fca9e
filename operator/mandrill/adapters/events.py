"""The one Event poster: every Event mandrill posts, on its own objects or on targets.

`post` only queues, so posting never blocks the caller and a failing Events
API never fails the work; a sender task writes the queue to the API server
(core/v1 Events, `source.component: mandrill`). Events come second: while
`busy()` (requests in flight) an Event waits, up to `max_delay`, so under a
burst the API server's time goes to restarts and acknowledgements first and
the Events follow a few seconds later. It works from any task
of the process, unlike kopf's poster, which needs context variables that only
kopf's own handler tasks carry. The queue is bounded: under an Event storm the
newest are dropped (and counted), never the operator's memory. On shutdown
what is queued gets a short flush.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill.adapters import kube, metrics
from mandrill.domain import timestamps
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.events import EventType

log = logging.getLogger(__name__)

COMPONENT = "mandrill"
MAX_MESSAGE = 1000
"""The API's limit on an Event's message is 1 kB."""


Create = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""(namespace, core/v1 Event body): writes one Event."""


def _creator(api: ApiClient) -> Create:
    core = client.CoreV1Api(api)

    async def create(namespace: str, event: dict[str, Any]) -> Any:
        return await kube.call_json(
            core.create_namespaced_event, namespace, event, what="post an Event"
        )

    return create


@attrs.define
class EventPoster:
    create: Create
    senders: int = 1
    capacity: int = 10_000
    _queue: asyncio.Queue[tuple[dict[str, Any], float]] = attrs.field(init=False)
    _tasks: list[asyncio.Task[None]] = attrs.Factory(list)
    _instance: str = attrs.Factory(lambda: os.environ.get("HOSTNAME") or os.uname().nodename)
    busy: Callable[[], bool] = lambda: False
    """While true, Events wait (up to `max_delay`): acknowledgements go before Events."""
    max_delay: float = 5.0

    def __attrs_post_init__(self) -> None:
        self._queue = asyncio.Queue(self.capacity)

    def post(self, obj: Mapping[str, Any], type: EventType, reason: str, message: str) -> None:
        """An `EventSink`: queue an Event about `obj` (a body with apiVersion, kind, metadata)."""
        meta = obj.get("metadata") or {}
        now = timestamps.format(timestamps.now())
        event = {
            "metadata": {
                "generateName": f"{meta.get('name', 'object')}.",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._queue.put_nowait((event, time.monotonic()))
        except asyncio.QueueFull:
            metrics.EVENTS_DROPPED.inc()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send(), name=f"events/{i}") for i in range(self.senders)
        ]

    @classmethod
    def over(cls, api: ApiClient) -> EventPoster:
        return cls(create=_creator(api))

    async def _send(self) -> None:
        while True:
            event, queued = await self._queue.get()
            # Polled: "no request in flight" is a state of the restart service, not an event.
            while self.busy() and time.monotonic() - queued < self.max_delay:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            try:
                await self.create(event["metadata"]["namespace"], event)
            except (PermanentError, TransientError, ApiException) as e:
                metrics.EVENTS_DROPPED.inc()
                log.warning("Event %s not posted: %s", event["reason"], e)
            except Exception:  # the sender must outlive any one Event
                metrics.EVENTS_DROPPED.inc()
                log.exception("Event %s not posted", event["reason"])
            finally:
                self._queue.task_done()

    async def close(self, *, flush: float = 2.0) -> None:
        """Give what is queued `flush` seconds to go out, then stop the senders."""
        # join() also waits for the Event a sender holds right now (the last
        # HandedBack of a drain, typically), not only for what is queued.
        if self._tasks:
            try:
                async with asyncio.timeout(flush):
                    await self._queue.join()
            except TimeoutError:
                log.warning("%d Event(s) not posted at shutdown", self._queue.qsize())
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
