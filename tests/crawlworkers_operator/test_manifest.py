"""The worker Job's manifest, built from a CrawlJob and the operator's settings (no cluster).

Covers: an Indexed Job with completions = parallelism = workers, the worker
command, the contract's environment (store URL by secretKeyRef, UID, spec as
JSON, log format), the ServiceAccount without a token, the pod security of
the operator's Deployment, the labels and the name (a DNS label, unique by
UID), the failure policy, the deadline a total timeout sets (none without
one), and urlsFrom replaced by the URLs read.
"""

from __future__ import annotations

import json
import re

import attrs
import pytest

from mandrill.domain.crawl import workers
from mandrill.domain.crawl.job import JobRef

JOB = JobRef(namespace="team-a", name="docs", uid="0123abcd-4567-89ef-0123-456789abcdef")
SETTINGS = workers.WorkerSettings(
    image="registry.example/mandrill:1.2.3",
    namespace="mandrill-system",
    store_secret="mandrill-store",
    store_secret_key="url",
    log_format="json",
)


def build(spec: dict[str, object] | None = None, count: int = 3) -> dict[str, object]:
    raw = spec or {"urls": ["https://example.com/"], "workers": count}
    return workers.job_manifest(
        JOB, spec=workers.worker_spec(raw, seeds=()), workers=count, settings=SETTINGS
    )


def test_an_indexed_job_of_n_workers_running_the_worker_command() -> None:
    job = build(count=3)
    spec = job["spec"]
    assert isinstance(spec, dict)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/mandrill:1.2.3"
    assert container["command"] == ["mandrill", "crawl-worker"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


def test_the_environment_is_the_contracts() -> None:
    spec = {"urls": ["https://example.com/"], "workers": 3, "maxDepth": 2}
    [container] = build(spec)["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    env = {e["name"]: e for e in container["env"]}
    assert env["MANDRILL_STORE_URL"] == {
        "name": "MANDRILL_STORE_URL",
        "valueFrom": {"secretKeyRef": {"name": "mandrill-store", "key": "url"}},
    }
    assert env["MANDRILL_CRAWL_JOB_UID"]["value"] == JOB.uid
    assert json.loads(env["MANDRILL_CRAWL_SPEC"]["value"]) == spec
    assert env["MANDRILL_LOG_FORMAT"]["value"] == "json"
    assert env["MANDRILL_CRAWL_LEASE_SECONDS"]["value"] == "30"
    assert "MANDRILL_CRAWL_ALLOW_PRIVATE" not in env
    # No password anywhere in the manifest: only the Secret's name.
    assert "value" not in env["MANDRILL_STORE_URL"]


def test_the_lease_setting_reaches_the_workers_as_they_parse_it() -> None:
    import attrs

    from mandrill.commands import crawl_worker

    short = attrs.evolve(SETTINGS, lease_seconds=7.5)
    job = workers.job_manifest(JOB, spec={"urls": ["https://x/"]}, workers=2, settings=short)
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    env["MANDRILL_STORE_URL"] = "postgresql://u:p@127.0.0.1:5432/db"

    assert crawl_worker.WorkerConfig.from_env(env).lease == 7.5


def test_the_ssrf_switch_is_handed_on_only_when_the_operator_has_it() -> None:
    import attrs

    loose = attrs.evolve(SETTINGS, allow_private=True)
    job = workers.job_manifest(JOB, spec={"urls": ["https://x/"]}, workers=2, settings=loose)
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MANDRILL_CRAWL_ALLOW_PRIVATE"] == "true"


def test_urls_from_is_replaced_by_the_urls_read_from_the_config_map() -> None:
    raw = {"urlsFrom": {"configMapName": "seeds", "key": "urls.txt"}, "workers": 2, "maxPages": 9}
    assert workers.worker_spec(raw, seeds=("https://a/", "https://b/")) == {
        "urls": ["https://a/", "https://b/"],
        "workers": 2,
        "maxPages": 9,
    }
    inline = {"urls": ["https://a/"], "workers": 2}
    assert workers.worker_spec(inline, seeds=("https://a/",)) == inline


def test_the_pod_has_no_rights_and_the_deployments_security() -> None:
    pod = build()["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["serviceAccountName"] == "mandrill-crawl-worker"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]


def test_labels_and_annotation_find_the_crawljob_again() -> None:
    job = build()
    meta, template = job["metadata"], job["spec"]["template"]["metadata"]  # type: ignore[index]
    expected = {
        "app.kubernetes.io/name": "mandrill",
        "app.kubernetes.io/component": "crawl-worker",
        "app.kubernetes.io/managed-by": "mandrill",
        "mandrill.dev/crawljob-uid": JOB.uid,
    }
    assert meta["labels"] == template["labels"] == expected
    assert meta["annotations"] == {"mandrill.dev/crawljob": "team-a/docs"}
    assert meta["namespace"] == "mandrill-system"
    assert "ownerReferences" not in meta
    assert workers.selector(JOB) == f"mandrill.dev/crawljob-uid={JOB.uid}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("docs", "crawl-0123abcd-docs"),
        ("My.Site.v2", "crawl-0123abcd-my-site-v2"),
        ("x" * 253, ("crawl-0123abcd-" + "x" * 253)[:52]),
        ("a" * 36 + "-" + "b" * 10, ("crawl-0123abcd-" + "a" * 36 + "-")[:51]),
    ],
)
def test_the_name_is_a_dns_label_with_room_for_the_index(name: str, expected: str) -> None:
    got = workers.job_name(JobRef(namespace="n", name=name, uid=JOB.uid))
    assert got == expected
    assert len(got) <= 52
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", got)


def test_a_failing_worker_is_not_retried_and_a_disruption_does_not_count() -> None:
    spec = build()["spec"]
    assert isinstance(spec, dict)
    assert spec["backoffLimitPerIndex"] == workers.BACKOFF_LIMIT_PER_INDEX
    assert spec["podReplacementPolicy"] == "Failed"
    fail_index, ignore = spec["podFailurePolicy"]["rules"]
    assert fail_index["action"] == "FailIndex"
    assert fail_index["onExitCodes"] == {"containerName": "worker", "operator": "In", "values": [1]}
    assert ignore == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert spec["ttlSecondsAfterFinished"] == workers.TTL_AFTER_FINISHED


def test_a_total_timeout_gives_the_job_a_deadline_with_room_for_the_workers_to_stop() -> None:
    assert "activeDeadlineSeconds" not in build()["spec"]  # type: ignore[operator]
    raw = {"urls": ["https://example.com/"], "workers": 3, "totalTimeoutSeconds": 300}
    for left, deadline in ((300.0, 360), (212.4, 273), (-5.0, 61)):
        manifest = workers.job_manifest(JOB, spec=raw, workers=3, settings=SETTINGS, time_left=left)
        assert manifest["spec"]["activeDeadlineSeconds"] == deadline


def test_requested_workers_defaults_to_one() -> None:
    assert workers.requested_workers({"urls": ["https://a/"]}) == 1
    assert workers.requested_workers({"urls": ["https://a/"], "workers": 4}) == 4


def test_the_workers_run_where_the_operator_may_run_and_nowhere_else_by_default() -> None:
    placement = {
        "nodeSelector": {"mandrill.dev/real-node": "true"},
        "tolerations": [{"key": "mandrill.dev/real-node", "operator": "Exists"}],
        "affinity": {"podAntiAffinity": {}},
    }
    settings = attrs.evolve(SETTINGS, placement=placement)
    job = workers.job_manifest(
        JOB, spec={"urls": ["https://example.com/"]}, workers=2, settings=settings
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == placement["nodeSelector"]
    assert pod["tolerations"] == placement["tolerations"]
    assert "affinity" not in pod  # the operator's replicas' spreading is not the workers'
    plain = build()["spec"]["template"]["spec"]  # type: ignore[index]
    assert not {"nodeSelector", "tolerations"} & plain.keys()
