"""A running operator publishes a schedule's runs on the real API server, on time, once.

The operator runs with a clock 60 times faster than the wall (the
MANDRILL_TEST_CLOCK seam of adapters/schedules.py), so an every-minute
schedule runs every second and a minute of schedule time costs a second of
test time. Covers: each run is a RestartRequest owned by the schedule, named
from its time and created within a second of it (in real time), consumed by
the same operator; finished runs beyond successfulRunsHistoryLimit are
deleted; after a SIGKILL and a restart no run is created twice, the runs
due while it was down are reported missed, and only the latest one starts;
deleting the schedule deletes its runs (garbage collection); two instances
at once create each run once; an invalid zone makes it Ready=False with an
Event and no runs.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import itertools
import pathlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.kube import eventually
from tests.operator_process import IN_CLUSTER, IN_CLUSTER_SKIP, OperatorProcess
from tests.restart import rr

GROUP, VERSION, PLURAL = "mandrill.dev", "v1alpha1", "restartschedules"
SPEED = 60.0
MakeNamespace = Callable[[str], Awaitable[str]]
# dryRun over a selector nothing matches: each run is consumed and Succeeds at once.
TEMPLATE = {"target": {"kind": "Pod", "selector": {"matchLabels": {"app": "nothing"}}},
            "dryRun": True}  # fmt: skip


@pytest.fixture
def anchor() -> float:
    return time.time()


@pytest.fixture
def start_operator(
    cluster: kube.Cluster,
    schedule_crds: None,
    operator_kubeconfig: pathlib.Path,
    tmp_path: pathlib.Path,
    anchor: float,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], OperatorProcess]]:
    """Operators of the test's own, on one namespace, all with the same fast clock."""
    if IN_CLUSTER:
        pytest.skip(IN_CLUSTER_SKIP)
    monkeypatch.setenv("MANDRILL_TEST_CLOCK", f"{anchor}:{SPEED}")
    started: list[OperatorProcess] = []

    def start(namespace: str) -> OperatorProcess:
        op = OperatorProcess(
            kubeconfig=operator_kubeconfig,
            workdir=tmp_path,
            namespaces=namespace,
            store_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        ).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


def real_time(scheduled: datetime.datetime, anchor: float) -> float:
    """When the fast clock showed `scheduled`, in real Unix time."""
    return anchor + (scheduled.timestamp() - anchor) / SPEED


async def create_schedule(api: ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> str:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RestartSchedule",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip
    made = await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return str(made["metadata"]["uid"])


async def get_schedule(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return got


async def list_runs(api: ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "restartrequests"
    )
    return list(listed["items"])


async def created_names(api: ApiClient, namespace: str, name: str) -> list[str]:
    """The run names of every RunCreated Event on the schedule, in posting order."""
    events = await rr.events_for(api, namespace, name, kind="RestartSchedule")
    return [e.message.split()[1] for e in events if e.reason == "RunCreated"]


async def test_runs_on_time_owned_pruned_and_once_across_a_sigkill(
    api: ApiClient,
    make_namespace: MakeNamespace,
    start_operator: Callable[[str], OperatorProcess],
    anchor: float,
) -> None:
    ns = await make_namespace("sched-")
    first = start_operator(ns)
    uid = await create_schedule(api, ns, "every-minute", {
        "schedule": "* * * * *", "template": TEMPLATE, "concurrencyPolicy": "Allow",
        "successfulRunsHistoryLimit": 2, "startingDeadlineSeconds": 3600,
    })  # fmt: skip

    async def runs_made(n: int) -> list[str] | None:
        names = await created_names(api, ns, "every-minute")
        return names if len(names) >= n else None

    await eventually(lambda: runs_made(5), what="five runs created", within=30)
    listed = await list_runs(api, ns)
    assert listed, "no RestartRequest exists"
    for run in listed:
        meta = run["metadata"]
        assert meta["ownerReferences"] == [{
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "RestartSchedule",
            "name": "every-minute", "uid": uid, "controller": True,
        }]  # fmt: skip
        scheduled = rr.parse_time(meta["annotations"]["mandrill.dev/scheduled-time"])
        assert meta["name"] == f"every-minute-{scheduled:%Y%m%d%H%M}"
        late = rr.parse_time(meta["creationTimestamp"]).timestamp() - real_time(scheduled, anchor)
        assert -1.5 < late < 1.5, f"{meta['name']} created {late:.2f}s after its time"

    async def pruned() -> list[dict[str, Any]] | None:
        runs = await list_runs(api, ns)
        done = [r for r in runs if rr.acknowledged(r)]
        made = await created_names(api, ns, "every-minute")
        return runs if len(made) >= 5 and len(done) <= 2 and len(runs) < len(made) else None

    await eventually(pruned, what="succeeded runs beyond the limit of 2 deleted", within=20)
    schedule = await get_schedule(api, ns, "every-minute")
    st = schedule["status"]
    assert st["conditions"][0]["reason"] == "Scheduled"
    assert rr.parse_time(st["nextScheduleTime"]) > rr.parse_time(st["lastScheduleTime"])
    assert st["lastSuccessfulRun"].startswith("every-minute-")

    first.kill()
    await asyncio.sleep(4)  # about four schedule minutes pass while nobody is there
    before = await created_names(api, ns, "every-minute")
    second = start_operator(ns)

    async def missed_and_resumed() -> list[str] | None:
        names = await created_names(api, ns, "every-minute")
        events = await rr.events_for(api, ns, "every-minute", kind="RestartSchedule")
        missed = [e for e in events if e.reason == "RunsMissed"]
        return names if missed and len(names) >= len(before) + 3 else None

    names = await eventually(missed_and_resumed, what="runs again after the restart", within=40)
    twice = [n for n, c in collections.Counter(names).items() if c > 1]
    assert twice == [], f"runs created twice: {twice}"
    final = (await get_schedule(api, ns, "every-minute"))["status"]
    assert final["missedRuns"] >= 2

    await client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "every-minute"
    )

    async def collected() -> bool:
        return not await list_runs(api, ns)

    await eventually(collected, what="the runs garbage-collected with their schedule", within=60)
    for op in (first, second):  # as the ServiceAccount of deploy/rbac: no permission problem
        log = op.log_path.read_text().lower()
        assert "forbidden" not in log, op.log_tail(80)
        assert "unexpected error" not in log, op.log_tail(80)


async def test_two_instances_create_each_run_once(
    api: ApiClient,
    make_namespace: MakeNamespace,
    start_operator: Callable[[str], OperatorProcess],
) -> None:
    """Both publish (no leader election yet): the names make the second one's create a no-op."""
    ns = await make_namespace("sched-")
    start_operator(ns)
    start_operator(ns)
    await create_schedule(api, ns, "twice", {
        "schedule": "* * * * *", "template": TEMPLATE, "concurrencyPolicy": "Allow",
        "successfulRunsHistoryLimit": 100,
    })  # fmt: skip

    async def six_runs() -> list[dict[str, Any]] | None:
        runs = await list_runs(api, ns)
        return runs if len(runs) >= 6 else None

    await eventually(six_runs, what="six runs", within=30)
    await asyncio.sleep(1)
    runs = await list_runs(api, ns)
    names = await created_names(api, ns, "twice")
    minutes = sorted(
        rr.parse_time(r["metadata"]["annotations"]["mandrill.dev/scheduled-time"]) for r in runs
    )

    assert len(names) == len(set(names)), f"a run created twice: {names}"
    steps = {b - a for a, b in itertools.pairwise(minutes)}
    assert steps == {datetime.timedelta(minutes=1)}, f"a run missing or doubled: {minutes}"


async def test_invalid_zone_is_not_ready_and_runs_nothing(
    api: ApiClient,
    make_namespace: MakeNamespace,
    start_operator: Callable[[str], OperatorProcess],
) -> None:
    """A zone of the right shape that the tz database does not know gets past the schema."""
    ns = await make_namespace("sched-")
    start_operator(ns)
    await create_schedule(api, ns, "nowhere", {
        "schedule": "* * * * *", "timeZone": "Mars/Olympus_Mons", "template": TEMPLATE,
    })  # fmt: skip

    async def not_ready() -> dict[str, Any] | None:
        st = (await get_schedule(api, ns, "nowhere")).get("status") or {}
        ready = [c for c in st.get("conditions") or () if c["type"] == "Ready"]
        return st if ready and ready[0]["status"] == "False" else None

    st = await eventually(not_ready, what="Ready=False on the schedule", within=20)
    assert st["conditions"][0]["reason"] == "InvalidTimeZone"
    assert "Mars/Olympus_Mons" in st["conditions"][0]["message"]
    events = await rr.events_with(api, ns, "nowhere", {"InvalidTimeZone"}, kind="RestartSchedule")
    assert [e.type for e in events if e.reason == "InvalidTimeZone"] == ["Warning"]
    await asyncio.sleep(3)  # three schedule minutes: still nothing
    assert await list_runs(api, ns) == []
