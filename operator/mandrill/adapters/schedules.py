"""A RestartSchedule's runs and status on the API server, and the wall clock.

Runs are RestartRequests in the schedule's namespace, each with the
schedule as its controller owner (so the garbage collector deletes them with
it), labelled with the schedule's UID (to list them) and annotated with the
run's time (which its name is made from). Creating one that exists is a 409,
which means done: that is what makes publishing exactly-once whoever creates
it. Deletions beyond the history limits carry the run's UID as a
precondition, so a run of the same name made anew is never deleted by
mistake. The status is merge-patched, without a resourceVersion.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import Mapping
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import kube
from mandrill.domain import conditions, timestamps
from mandrill.domain.schedule.models import Run, RunPhase, ScheduleRef

TEST_CLOCK = "MANDRILL_TEST_CLOCK"
"""`ANCHOR:SPEED` (a Unix time and a factor): the end-to-end tests' clock seam, see `clock`."""
MAX_SLEEP = 300.0
"""Seconds a schedule sleeps at most before it looks at the clock again (clock jumps)."""


def _custom(api: ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def run_from_body(body: Mapping[str, Any]) -> Run | None:
    """A listed RestartRequest as a run; None if it lacks the run's time (not ours)."""
    meta = body.get("metadata") or {}
    scheduled = timestamps.parse(
        (meta.get("annotations") or {}).get(resources.SCHEDULED_TIME_ANNOTATION)
    )
    if scheduled is None:
        return None
    st = body.get("status") or {}
    phase = RunPhase.ACTIVE
    if conditions.is_true(st.get("conditions"), "Acknowledged"):
        phase = RunPhase.SUCCEEDED if st.get("phase") == "Succeeded" else RunPhase.FAILED
    return Run(
        name=meta["name"],
        uid=meta["uid"],
        scheduled=scheduled,
        phase=phase,
    )


def run_body(
    schedule: ScheduleRef, *, name: str, scheduled: datetime.datetime, template: Mapping[str, Any]
) -> dict[str, Any]:
    """The RestartRequest of one run."""
    return {
        "apiVersion": resources.API_VERSION,
        "kind": resources.RESTART_REQUEST_KIND,
        "metadata": {
            "name": name,
            "namespace": schedule.namespace,
            "labels": {resources.SCHEDULE_UID_LABEL: schedule.uid},
            "annotations": {resources.SCHEDULED_TIME_ANNOTATION: timestamps.format(scheduled)},
            "ownerReferences": [
                {
                    "apiVersion": resources.API_VERSION,
                    "kind": resources.RESTART_SCHEDULE_KIND,
                    "name": schedule.name,
                    "uid": schedule.uid,
                    "controller": True,
                }
            ],
        },
        "spec": dict(template),
    }


@attrs.define
class KubeRuns:
    """The `Runs` port over the API server."""

    api: ApiClient

    async def list(self, schedule: ScheduleRef) -> list[Run]:
        listed = await kube.call_json(
            _custom(self.api).list_namespaced_custom_object,
            resources.GROUP,
            resources.VERSION,
            schedule.namespace,
            resources.RESTART_REQUESTS,
            label_selector=f"{resources.SCHEDULE_UID_LABEL}={schedule.uid}",
            what="list a RestartSchedule's runs",
        )
        runs = []
        for item in listed.get("items") or ():
            owners = (item.get("metadata") or {}).get("ownerReferences") or ()
            if not any(o.get("uid") == schedule.uid for o in owners):
                continue  # a label copied by hand does not make a run
            run = run_from_body(item)
            if run is not None:
                runs.append(run)
        return runs

    async def create(
        self,
        schedule: ScheduleRef,
        *,
        name: str,
        scheduled: datetime.datetime,
        template: Mapping[str, Any],
    ) -> bool:
        body = run_body(schedule, name=name, scheduled=scheduled, template=template)
        try:
            await kube.call_json(
                _custom(self.api).create_namespaced_custom_object,
                resources.GROUP,
                resources.VERSION,
                schedule.namespace,
                resources.RESTART_REQUESTS,
                body,
                what=f"create RestartRequest {name}",
            )
        except ApiException as e:
            if e.status == 409:  # AlreadyExists: this run was published already
                return False
            raise
        return True

    async def delete(self, schedule: ScheduleRef, run: Run) -> None:
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=run.uid), propagation_policy="Background"
        )
        try:
            await kube.call(
                lambda: _custom(self.api).delete_namespaced_custom_object(
                    resources.GROUP,
                    resources.VERSION,
                    schedule.namespace,
                    resources.RESTART_REQUESTS,
                    run.name,
                    body=options,
                ),
                what=f"delete RestartRequest {run.name} beyond the history limits",
            )
        except ApiException as e:
            if e.status not in (404, 409):  # gone already, or made anew
                raise


@attrs.define
class ScheduleStatus:
    """The `StatusWriter` port: merge-patch the status subresource."""

    api: ApiClient

    async def patch(self, schedule: ScheduleRef, status: Mapping[str, Any]) -> None:
        try:
            await kube.call_json(
                _custom(self.api).patch_namespaced_custom_object_status,
                resources.GROUP,
                resources.VERSION,
                schedule.namespace,
                resources.RESTART_SCHEDULES,
                schedule.name,
                {"status": dict(status)},
                _content_type="application/merge-patch+json",
                what="patch RestartSchedule status",
            )
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile: its loop is being stopped
                raise


@attrs.frozen
class WallClock:
    """The `Clock` port: real time, optionally sped up around an anchor (tests only).

    With `speed` 60 one real second is a minute to the schedules, measured
    from `anchor`, so an every-minute schedule runs every second; every
    process given the same anchor agrees on the time, so an operator killed
    and started again finds its runs where it left them."""

    anchor: float = 0.0
    speed: float = 1.0

    def now(self) -> datetime.datetime:
        real = datetime.datetime.now(datetime.UTC).timestamp()
        return datetime.datetime.fromtimestamp(
            self.anchor + (real - self.anchor) * self.speed, datetime.UTC
        )

    async def sleep_until(self, moment: datetime.datetime | None, wake: asyncio.Event) -> None:
        delay = MAX_SLEEP
        if moment is not None:
            delay = min(delay, max(0.0, (moment - self.now()).total_seconds() / self.speed))
        try:
            async with asyncio.timeout(delay):
                await wake.wait()
        except TimeoutError:
            pass


def clock() -> WallClock:
    """The wall clock, or the sped-up one `MANDRILL_TEST_CLOCK=ANCHOR:SPEED` asks for.

    An environment variable, not a flag: it exists for the end-to-end tests
    (a schedule's minutes in seconds of test time) and for nothing else."""
    setting = os.environ.get(TEST_CLOCK, "")
    if not setting:
        return WallClock()
    anchor, _, speed = setting.partition(":")
    return WallClock(anchor=float(anchor), speed=float(speed or 1))
