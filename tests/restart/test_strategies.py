"""RestartRequest end to end against the real control plane, with `mandrill run` at work.

Covers each strategy (Delete, Evict, RolloutRestart) and mode (all, count,
percent), minAge, dryRun, protection and the namespace deny list, a
PDB-blocked eviction, waitForReady, a missing target, TTL deletion, the
journal row and the Events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests.kube import eventually
from tests.operator_process import RunningOperator
from tests.restart import rr
from tests.restart.conftest import DENIED_NAMESPACE

pytestmark = pytest.mark.usefixtures("operator")
MakeNamespace = Callable[[str], Awaitable[str]]


@pytest.fixture
async def ns(make_namespace: MakeNamespace) -> str:
    return await make_namespace("rr-")


def outcomes(body: dict[str, object]) -> dict[str, str]:
    return {t["name"]: t["outcome"] for t in body["status"]["targets"]}  # type: ignore[index]


async def test_delete_count_restarts_exactly_one_pod_and_journals_it(
    api: ApiClient, ns: str, operator: RunningOperator
) -> None:
    pods = await rr.deploy(api, ns, "web", 3)
    uid = await rr.create_request(
        api, ns, "one", {"target": {"selector": {"matchLabels": {"app": "web"}}}, "count": 1}
    )

    body = await rr.finished(api, ns, "one")

    status = body["status"]
    assert status["phase"] == "Succeeded"
    assert status["restarted"] == 1
    assert status["matched"] == 3
    [target] = status["targets"]
    assert target["outcome"] == "Restarted"
    assert target["action"] == "Delete"
    assert target["started"] <= target["finished"]
    gone = [p for p in pods if not await rr.pod_exists(api, ns, p.metadata.name, p.metadata.uid)]
    assert [p.metadata.uid for p in gone] == [target["uid"]]
    for kind in ("Saved", "Restarted", "Acknowledged"):
        cond = rr.condition(body, kind)
        assert cond is not None
        assert cond["status"] == "True", cond
        assert cond["observedGeneration"] == 1
    await rr.ready_pods(api, ns, "app=web", 3)
    assert operator.journal_rows(uid) == [(uid, ns, "one")]

    async def request_events() -> list[client.CoreV1Event]:
        # kopf also mirrors the handler's log lines as "Logging" Events (a retry
        # on a slow cluster, say); those are not the operator's own Events.
        return [e for e in await rr.events_for(api, ns, "one") if e.reason != "Logging"]

    async def events() -> tuple[list[client.CoreV1Event], list[client.CoreV1Event]] | None:
        on_request = await request_events()
        on_pod = await rr.events_for(api, ns, target["name"], kind="Pod")
        mine = any(e.reason == "Restarted" for e in on_pod)
        return (on_request, on_pod) if on_request and mine else None

    on_request, on_pod = await eventually(events, what="Events posted")  # posted after the ack
    await asyncio.sleep(1)  # and no more come: one Event per request when all went well
    assert [(e.reason, e.type) for e in await request_events()] == [("Acknowledged", "Normal")]
    assert on_request[0].message == "Restarted: 1 restarted; saved to the journal"
    [restarted] = [e for e in on_pod if e.reason == "Restarted"]  # the scheduler's are there too
    assert f"RestartRequest {ns}/one" in restarted.message


async def test_delete_all_pods_of_a_deployment(api: ApiClient, ns: str) -> None:
    pods = await rr.deploy(api, ns, "web", 3)
    await rr.create_request(
        api, ns, "all", {"target": {"kind": "Deployment", "name": "web"}, "maxConcurrent": 2}
    )

    body = await rr.finished(api, ns, "all")

    assert body["status"]["phase"] == "Succeeded"
    assert set(outcomes(body)) == {p.metadata.name for p in pods}
    assert set(outcomes(body).values()) == {"Restarted"}
    after = await rr.ready_pods(api, ns, "app=web", 3)
    assert not {p.metadata.uid for p in after} & {p.metadata.uid for p in pods}


async def test_percent_rounds_up_and_evicts(api: ApiClient, ns: str) -> None:
    await rr.deploy(api, ns, "web", 5)
    await rr.create_request(
        api,
        ns,
        "some",
        {
            "target": {"selector": {"matchLabels": {"app": "web"}}},
            "strategy": "Evict",
            "percent": 30,
        },
    )

    body = await rr.finished(api, ns, "some")

    assert body["status"]["phase"] == "Succeeded"
    assert body["status"]["restarted"] == 2, "30% of 5 rounds up to 2"
    assert {t["action"] for t in body["status"]["targets"]} == {"Evict"}


async def test_eviction_blocked_by_pdb_is_reported_blocked(api: ApiClient, ns: str) -> None:
    pods = await rr.deploy(api, ns, "web", 2)
    await client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        ns,
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=2, selector=client.V1LabelSelector(match_labels={"app": "web"})
            ),
        ),
    )

    async def budget_ready() -> bool:
        pdb = await client.PolicyV1Api(api).read_namespaced_pod_disruption_budget("web", ns)
        return bool(pdb.status and pdb.status.expected_pods == 2)

    await eventually(budget_ready, what="PDB status computed")
    await rr.create_request(
        api,
        ns,
        "blocked",
        {
            "target": {"kind": "Pod", "name": pods[0].metadata.name},
            "strategy": "Evict",
            "evictionTimeoutSeconds": 3,
        },
    )

    body = await rr.finished(api, ns, "blocked")

    status = body["status"]
    assert status["phase"] == "Failed"
    assert status["reason"] == "RestartFailed"
    [target] = status["targets"]
    assert target["outcome"] == "Blocked"
    assert "disruption budget" in target["message"]
    assert await rr.pod_exists(api, ns, pods[0].metadata.name, pods[0].metadata.uid)
    events = await rr.events_with(api, ns, "blocked", {"Blocked", "Failed"})
    assert {e.type for e in events if e.reason in ("Blocked", "Failed")} == {"Warning"}


async def test_rollout_restart_waits_for_ready(api: ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    await rr.deploy(api, ns, "web", 2)
    uid = await rr.create_request(
        api,
        ns,
        "roll",
        {
            "target": {"kind": "Deployment", "name": "web"},
            "strategy": "RolloutRestart",
            "waitForReady": {"enabled": True, "timeoutSeconds": 120},
        },
    )

    body = await rr.finished(api, ns, "roll", within=150)

    assert body["status"]["phase"] == "Succeeded", body["status"]
    ready = rr.condition(body, "Ready")
    assert ready is not None
    assert ready["status"] == "True"
    deployment = await apps.read_namespaced_deployment("web", ns)
    marks = deployment.spec.template.metadata.annotations
    assert marks["mandrill.dev/restarted-by"] == uid
    assert "kubectl.kubernetes.io/restartedAt" in marks
    # Ready means rolled out: at acknowledgement every replica is updated and ready.
    assert deployment.status.updated_replicas == 2
    assert deployment.status.ready_replicas == 2
    replica_sets = await apps.list_namespaced_replica_set(ns, label_selector="app=web")
    assert len(replica_sets.items) == 2


async def test_dry_run_touches_nothing(api: ApiClient, ns: str) -> None:
    pods = await rr.deploy(api, ns, "web", 3)
    await rr.create_request(
        api, ns, "dry", {"target": {"selector": {"matchLabels": {"app": "web"}}}, "dryRun": True}
    )

    body = await rr.finished(api, ns, "dry")

    assert body["status"]["phase"] == "Succeeded"
    assert body["status"]["reason"] == "DryRun"
    assert set(outcomes(body).values()) == {"DryRun"}
    for p in pods:
        assert await rr.pod_exists(api, ns, p.metadata.name, p.metadata.uid)


async def test_protected_and_young_pods_are_skipped(api: ApiClient, ns: str) -> None:
    await rr.deploy(api, ns, "guarded", 2, pod_annotations={"mandrill.dev/protected": "true"})
    await rr.deploy(api, ns, "fresh", 2, labels={"tier": "x"})
    await rr.create_request(
        api, ns, "guarded", {"target": {"selector": {"matchLabels": {"app": "guarded"}}}}
    )
    await rr.create_request(
        api, ns, "young", {"target": {"selector": {"matchLabels": {"tier": "x"}}}, "minAge": "1h"}
    )

    guarded = await rr.finished(api, ns, "guarded")
    young = await rr.finished(api, ns, "young")

    for body in (guarded, young):
        assert body["status"]["phase"] == "Succeeded"
        assert body["status"]["reason"] == "NothingToRestart"
        assert body["status"]["skipped"] == 2
        assert set(outcomes(body).values()) == {"Skipped"}
    assert all("protected" in t["message"] for t in guarded["status"]["targets"])
    assert all("minAge" in t["message"] for t in young["status"]["targets"])


async def test_min_age_lets_old_enough_pods_through(api: ApiClient, ns: str) -> None:
    await rr.deploy(api, ns, "web", 2)
    await asyncio.sleep(2)  # minAge is wall time; creationTimestamp has 1 s resolution
    await rr.create_request(
        api, ns, "old", {"target": {"kind": "Deployment", "name": "web"}, "minAge": "1s"}
    )

    body = await rr.finished(api, ns, "old")

    assert body["status"]["restarted"] == 2


async def test_deny_listed_namespace_is_skipped(api: ApiClient, cluster: object) -> None:
    core = client.CoreV1Api(api)
    try:
        await core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=DENIED_NAMESPACE))
        )
    except ApiException as e:
        if e.status != 409:
            raise
    try:
        pods = await rr.deploy(api, DENIED_NAMESPACE, "web", 1)
        await rr.create_request(
            api, DENIED_NAMESPACE, "deny", {"target": {"kind": "Deployment", "name": "web"}}
        )
        body = await rr.finished(api, DENIED_NAMESPACE, "deny")
        [target] = body["status"]["targets"]
        assert target["outcome"] == "Skipped"
        assert "deny list" in target["message"]
        assert await rr.pod_exists(
            api, DENIED_NAMESPACE, pods[0].metadata.name, pods[0].metadata.uid
        )
    finally:
        await core.delete_namespace(DENIED_NAMESPACE)

        async def gone() -> bool:
            try:
                await core.read_namespace(DENIED_NAMESPACE)
            except ApiException as e:
                return e.status == 404
            return False

        await eventually(gone, what="deny-listed namespace deleted", within=60)


async def test_missing_named_target_fails_with_reason_and_event(api: ApiClient, ns: str) -> None:
    await rr.create_request(api, ns, "ghost", {"target": {"kind": "Pod", "name": "nope"}})

    body = await rr.finished(api, ns, "ghost")

    assert body["status"]["phase"] == "Failed"
    assert body["status"]["reason"] == "TargetNotFound"
    assert "nope" in body["status"]["message"]

    async def failed_event() -> list[client.CoreV1Event] | None:
        events = await rr.events_for(api, ns, "ghost")
        return events if any(e.reason == "Failed" for e in events) else None

    events = await eventually(failed_event, what="Failed Event posted")
    # and nothing else (kopf's mirrored log lines aside): no NotSaved beside it
    [failed] = [e for e in events if e.reason != "Logging"]
    assert failed.type == "Warning"
    assert "TargetNotFound" in failed.message


async def test_ttl_deletes_finished_request(api: ApiClient, ns: str) -> None:
    await rr.deploy(api, ns, "web", 1)
    await rr.create_request(
        api,
        ns,
        "short-lived",
        {"target": {"kind": "Deployment", "name": "web"}, "ttlSecondsAfterFinished": 2},
    )
    await rr.finished(api, ns, "short-lived")

    async def deleted() -> bool:
        try:
            await rr.get_request(api, ns, "short-lived")
        except ApiException as e:
            return e.status == 404
        return False

    await eventually(deleted, what="request deleted after its TTL", within=30)


async def test_evicting_a_workloads_pods_waits_for_their_replacements(
    api: ApiClient, ns: str
) -> None:
    pods = await rr.deploy(api, ns, "web", 3)
    await rr.create_request(
        api,
        ns,
        "evict-all",
        {
            "target": {"kind": "Deployment", "name": "web"},
            "strategy": "Evict",
            "waitForReady": {"enabled": True, "timeoutSeconds": 120},
        },
    )

    body = await rr.finished(api, ns, "evict-all", within=150)

    assert body["status"]["phase"] == "Succeeded", body["status"]
    assert body["status"]["restarted"] == 3
    ready = rr.condition(body, "Ready")
    assert ready is not None
    assert ready["status"] == "True"
    # At acknowledgement the replacements were already there and Ready.
    core = client.CoreV1Api(api)
    now = (await core.list_namespaced_pod(ns, label_selector="app=web")).items
    live = [p for p in now if p.metadata.deletion_timestamp is None]
    assert not {p.metadata.uid for p in live} & {p.metadata.uid for p in pods}
    assert sum(1 for p in live if rr.ready(p)) == 3


def _pod_template(app: str) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": app}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="app", image=rr.WORKLOAD_IMAGE)],
            termination_grace_period_seconds=0,
        ),
    )


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
async def test_rollout_restart_of_statefulset_and_daemonset(
    api: ApiClient, ns: str, kind: str
) -> None:
    apps = client.AppsV1Api(api)
    selector = client.V1LabelSelector(match_labels={"app": "db"})
    if kind == "StatefulSet":
        await apps.create_namespaced_stateful_set(
            ns,
            client.V1StatefulSet(
                metadata=client.V1ObjectMeta(name="db"),
                spec=client.V1StatefulSetSpec(
                    replicas=2, selector=selector, service_name="db", template=_pod_template("db")
                ),
            ),
        )
        read = apps.read_namespaced_stateful_set
    else:
        await apps.create_namespaced_daemon_set(
            ns,
            client.V1DaemonSet(
                metadata=client.V1ObjectMeta(name="db"),
                spec=client.V1DaemonSetSpec(selector=selector, template=_pod_template("db")),
            ),
        )
        read = apps.read_namespaced_daemon_set
    before = await rr.ready_pods(api, ns, "app=db", 2)
    uid = await rr.create_request(
        api,
        ns,
        "roll",
        {
            "target": {"kind": kind, "name": "db"},
            "strategy": "RolloutRestart",
            "waitForReady": {"enabled": True, "timeoutSeconds": 120},
        },
    )

    body = await rr.finished(api, ns, "roll", within=150)

    assert body["status"]["phase"] == "Succeeded", body["status"]
    workload = await read("db", ns)
    assert workload.spec.template.metadata.annotations["mandrill.dev/restarted-by"] == uid
    after = await rr.ready_pods(api, ns, "app=db", 2)
    assert not {p.metadata.uid for p in after} & {p.metadata.uid for p in before}
