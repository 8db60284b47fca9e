"""Deletes finished RestartRequests once their ttlSecondsAfterFinished has passed.

One sleeping task per request, scheduled on acknowledgement and again when the
operator starts (resume), so a restart of the operator loses no deadline.
No finalizers are involved: a request can always be deleted by hand.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import kube
from mandrill.domain.errors import PermanentError, TransientError

log = logging.getLogger(__name__)


@attrs.define
class Reaper:
    api: ApiClient
    _tasks: dict[str, asyncio.Task[None]] = attrs.Factory(dict)

    def schedule(self, *, namespace: str, name: str, uid: str, due: datetime.datetime) -> None:
        if uid in self._tasks and not self._tasks[uid].done():
            return
        self._tasks[uid] = asyncio.create_task(self._reap(namespace, name, uid, due))

    async def _reap(self, namespace: str, name: str, uid: str, due: datetime.datetime) -> None:
        delay = (due - datetime.datetime.now(datetime.UTC)).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        custom = client.CustomObjectsApi(self.api)
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            await kube.call(
                lambda: custom.delete_namespaced_custom_object(
                    resources.GROUP,
                    resources.VERSION,
                    namespace,
                    resources.RESTART_REQUESTS,
                    name,
                    body=body,
                ),
                what=f"delete RestartRequest {namespace}/{name} after its TTL",
            )
            log.info(
                "deleted RestartRequest %s/%s: ttlSecondsAfterFinished passed", namespace, name
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise
        except (PermanentError, TransientError) as e:
            log.warning("could not delete %s/%s after its TTL: %s", namespace, name, e)
        finally:
            self._tasks.pop(uid, None)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
