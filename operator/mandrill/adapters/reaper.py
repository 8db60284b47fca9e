"""Deletes finished RestartRequests once their ttlSecondsAfterFinished has passed.

One sleeping task per request in the operator's task registry, scheduled on
acknowledgement and again whenever the request is seen finished (on start-up
and on every resync), so a restart of the operator loses no deadline and
scheduling twice is a no-op. No finalizers are involved: a request can always
be deleted by hand. The deletion carries the request's UID as a precondition,
so a request of the same name made anew is never reaped by mistake.
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
from mandrill.domain import timestamps
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.restart.models import RequestRef
from mandrill.supervision import TaskRegistry

log = logging.getLogger(__name__)


@attrs.define
class Reaper:
    api: ApiClient
    tasks: TaskRegistry

    def schedule(self, request: RequestRef, *, due: datetime.datetime) -> None:
        self.tasks.spawn(f"ttl/{request.uid}", lambda: self._reap(request, due))

    async def _reap(self, request: RequestRef, due: datetime.datetime) -> None:
        delay = (due - timestamps.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        custom = client.CustomObjectsApi(self.api)
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=request.uid))
        ns, name = request.namespace, request.name
        try:
            await kube.call(
                lambda: custom.delete_namespaced_custom_object(
                    resources.GROUP,
                    resources.VERSION,
                    ns,
                    resources.RESTART_REQUESTS,
                    name,
                    body=body,
                ),
                what=f"delete RestartRequest {ns}/{name} after its TTL",
            )
            log.info("deleted RestartRequest %s/%s: ttlSecondsAfterFinished passed", ns, name)
        except ApiException as e:
            if e.status not in (404, 409):  # gone already, or made anew: nothing to reap
                raise
        except (PermanentError, TransientError) as e:
            # The next resync schedules it again.
            log.warning("could not delete %s/%s after its TTL: %s", ns, name, e)
