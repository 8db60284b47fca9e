"""RestartRequest handlers: kopf's events, adapted to the restart service.

kopf *event* handlers, not create handlers, on purpose: a request's own status
(the plan, then the Acknowledged condition) is the record of what has been
done, so kopf keeps no bookkeeping of its own on the object, and resuming is
plain: kopf lists every request when it starts, and the service picks each
unacknowledged one up from its recorded plan. The handler only hands the body
over and returns at once; ordering, concurrency, retries, metrics and TTLs
are the service's (mandrill.application.restart). kopf ignores exceptions
from event handlers, so nothing may be left to raise here. A standby (leader
election) lets nothing through: the leader it may become lists every request.
"""

from __future__ import annotations

from typing import Any

import kopf

from mandrill import resources
from mandrill.wiring import Services

RR = (resources.GROUP, resources.VERSION, resources.RESTART_REQUESTS)


def _wanted(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    services: Services = memo.services
    return services.acting and (type == "DELETED" or services.restarts.wants(body))


@kopf.on.event(*RR, when=_wanted)
async def observe(*, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    services: Services = memo.services
    if type == "DELETED":
        services.restarts.forget(body["metadata"]["uid"])
    else:
        services.restarts.observe(body)
