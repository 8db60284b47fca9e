"""RestartSchedule handler: kopf's events, handed to the schedule service.

An event handler, as for RestartRequests: the schedule's status is its
memory, so kopf keeps no bookkeeping on the object. The service starts a
loop for each schedule it has not seen and wakes it when the spec changes;
the events our own status patches cause change nothing. Nothing here may
raise (kopf ignores exceptions from event handlers).
"""

from __future__ import annotations

from typing import Any

import kopf

from mandrill import resources
from mandrill.wiring import Services

RS = (resources.GROUP, resources.VERSION, resources.RESTART_SCHEDULES)


@kopf.on.event(*RS)
async def observe(*, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    services: Services = memo.services
    if type == "DELETED":
        services.schedules.forget(body["metadata"]["uid"])
    else:
        services.schedules.observe(body)
