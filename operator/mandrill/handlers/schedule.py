"""RestartSchedule handlers: kopf's events, handed to the schedule service.

Event handlers, as for RestartRequests: the schedule's status is its
memory, so kopf keeps no bookkeeping on the object. The service starts a
loop for each schedule it has not seen and wakes it when the spec changes;
the events our own status patches cause change nothing. A second handler
watches the schedules' runs (RestartRequests labelled with a schedule's UID)
and wakes their schedule when one is acknowledged, so `active`, Forbid and
the history limits see a run's end at once. Nothing here may raise (kopf
ignores exceptions from event handlers). A standby (leader election) lets
nothing through: the leader it may become lists every schedule.
"""

from __future__ import annotations

from typing import Any

import kopf

from mandrill import resources
from mandrill.domain import conditions
from mandrill.wiring import Services

RS = (resources.GROUP, resources.VERSION, resources.RESTART_SCHEDULES)
RR = (resources.GROUP, resources.VERSION, resources.RESTART_REQUESTS)


def _acting(memo: kopf.Memo, **_: Any) -> bool:
    services: Services = memo.services
    return services.acting


@kopf.on.event(*RS, when=_acting)
async def observe(*, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    services: Services = memo.services
    if type == "DELETED":
        services.schedules.forget(body["metadata"]["uid"])
    else:
        services.schedules.observe(body)


def _finished_run(body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    st = body.get("status") or {}
    return _acting(memo) and conditions.is_true(st.get("conditions"), "Acknowledged")


@kopf.on.event(*RR, labels={resources.SCHEDULE_UID_LABEL: kopf.PRESENT}, when=_finished_run)
async def run_finished(*, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    services: Services = memo.services
    services.schedules.poke(body["metadata"]["labels"][resources.SCHEDULE_UID_LABEL])
