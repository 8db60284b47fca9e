"""A CrawlJob run by worker pods: the batch/v1 Job that runs them, as a plain manifest.

`spec.workers: N` (N >= 2) crawls with N pods of `mandrill crawl-worker`
sharing one frontier in PostgreSQL, instead of inside the operator. They run
as one Indexed Job (completions = parallelism = N), so the Job controller
keeps N workers going, replaces a lost one under the same index, and says
when all have ended; the operator only creates the Job, reads its status
and the store's counts, and deletes it.

The Job lives in the operator's own namespace, not the CrawlJob's: the
store's Secret is there, and a tenant who can create CrawlJobs gets no pods
in their namespace that hold the store's password. An owner reference across
namespaces is not allowed, so the Job is ownerless and found again by name
(`job_name`, from the CrawlJob's UID) and by the UID label; deleting a
CrawlJob deletes its Job explicitly, and a sweep deletes any Job whose
CrawlJob is gone.

Workers get nothing of the operator's rights: a ServiceAccount of their
own with no bindings and no token mounted. They reach only the store (its
URL from the operator's Secret) and the sites they crawl. The pod is locked
down as the operator's own Deployment is (non-root, read-only root, no
capabilities, RuntimeDefault seccomp).

Pure: a manifest is a dict, built from a JobRef, the CrawlJob's spec and
WorkerSettings; the adapter (adapters/worker_jobs.py) sends it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from mandrill.domain.crawl.job import JobRef

MIN_WORKERS, MAX_WORKERS = 1, 32
"""spec.workers bounds, as crds/crawljob.yaml declares them."""
SERVICE_ACCOUNT = "mandrill-crawl-worker"
"""deploy/rbac/crawl-worker.yaml: no bindings, no token."""
CONTAINER = "worker"
COMMAND = ("mandrill", "crawl-worker")
NAME_LABEL, COMPONENT_LABEL = "app.kubernetes.io/name", "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT = "crawl-worker"
UID_LABEL = "mandrill.dev/crawljob-uid"
"""The CrawlJob's UID on the Job and its pods: what deletion and the sweep select by."""
CRAWLJOB_ANNOTATION = "mandrill.dev/crawljob"
"""namespace/name of the CrawlJob, for people and for the sweep."""
MAX_JOB_NAME = 52
"""An Indexed Job's pods are named `<job>-<index>-<random>` and get the hostname
`<job>-<index>`, a DNS label of at most 63: room for an index up to 31 and more."""
BACKOFF_LIMIT_PER_INDEX = 2
"""Retries of one index after a failure that is not the worker's own verdict."""
WORKER_ERROR_EXIT = 1
"""A worker exits 1 on an error it cannot get past: its index is not retried."""
STOP_GRACE_SECONDS = 5
"""Seconds a worker has after SIGTERM when its CrawlJob is deleted (it releases its
leases and flushes in a few seconds); also the pods' terminationGracePeriodSeconds."""
TTL_AFTER_FINISHED = 3600
"""Seconds a finished Job (and its pods' logs) stays for a look before it is collected."""
TMP = "/tmp"
DEADLINE_GRACE_SECONDS = 60
"""Past the time a totalTimeoutSeconds leaves, how long the Job waits for its workers to
stop by themselves (a pod's start, the worker's own stop, its grace period) before
Kubernetes ends them (activeDeadlineSeconds): a wedged worker cannot outlive the crawl."""
PLACEMENT = ("nodeSelector", "tolerations")
"""What the worker pods take over from the operator's own Pod spec (not its affinity,
which in the HA overlay spreads the operator's replicas and means nothing to workers)."""


def job_name(job: JobRef) -> str:
    """`crawl-<uid[:8]>-<name>`, a DNS label: unique by the UID, readable by the name."""
    stem = re.sub(r"[^a-z0-9-]+", "-", job.name.lower())
    return f"crawl-{job.uid[:8]}-{stem}"[:MAX_JOB_NAME].rstrip("-")


def selector(job: JobRef) -> str:
    """The label selector of one CrawlJob's Job and pods."""
    return f"{UID_LABEL}={job.uid}"


def requested_workers(raw_spec: Mapping[str, Any]) -> int:
    """spec.workers (the schema's default, 1, when a client sent none)."""
    return int(raw_spec.get("workers", MIN_WORKERS))


@attrs.frozen
class Resources:
    """One container's requests and limits, as Kubernetes quantities."""

    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    cpu_limit: str = "1"
    memory_limit: str = "512Mi"

    def manifest(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@attrs.frozen
class WorkerSettings:
    """What the operator's configuration decides about every worker Job."""

    image: str
    """The operator's own image: the worker is a command of the same program."""
    namespace: str
    """The operator's namespace, where its store Secret is."""
    store_secret: str
    """The Secret holding the PostgreSQL URL..."""
    store_secret_key: str
    """...under this key (MANDRILL_STORE_URL in the workers, by secretKeyRef)."""
    pull_policy: str = "IfNotPresent"
    resources: Resources = attrs.Factory(Resources)
    log_format: str = "text"
    lease_seconds: float = 30.0
    """The workers' leases (MANDRILL_CRAWL_LEASE_SECONDS)."""
    allow_private: bool = False
    """The operator's SSRF switch, handed on: a worker fetches no more than the operator may."""
    service_account: str = SERVICE_ACCOUNT
    placement: Mapping[str, Any] = attrs.Factory(dict)
    """nodeSelector and tolerations of the operator's own Pod: the workers run its image,
    which is known to be on the nodes it may run on (a node-local image, a registry only
    some nodes reach) and perhaps nowhere else."""


def worker_spec(raw_spec: Mapping[str, Any], *, seeds: Sequence[str]) -> dict[str, Any]:
    """The spec the workers parse (MANDRILL_CRAWL_SPEC): the CrawlJob's as the API server
    has it, except that urlsFrom is replaced by the URLs read from its ConfigMap, which
    the workers have no right to read."""
    if "urlsFrom" not in raw_spec:
        return dict(raw_spec)
    spec = {k: v for k, v in raw_spec.items() if k != "urlsFrom"}
    spec["urls"] = list(seeds)
    return spec


def labels(job: JobRef) -> dict[str, str]:
    return {
        NAME_LABEL: "mandrill",
        COMPONENT_LABEL: COMPONENT,
        MANAGED_BY_LABEL: "mandrill",
        UID_LABEL: job.uid,
    }


def job_manifest(
    job: JobRef,
    *,
    spec: Mapping[str, Any],
    workers: int,
    settings: WorkerSettings,
    time_left: float | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job running `workers` workers of `job`, `spec` being `worker_spec`;
    `time_left`: seconds the crawl's totalTimeoutSeconds leaves (None: no total timeout)."""
    env: list[dict[str, Any]] = [
        {
            "name": "MANDRILL_STORE_URL",
            "valueFrom": {
                "secretKeyRef": {"name": settings.store_secret, "key": settings.store_secret_key}
            },
        },
        {"name": "MANDRILL_CRAWL_JOB_UID", "value": job.uid},
        {"name": "MANDRILL_CRAWL_SPEC", "value": json.dumps(spec, sort_keys=True)},
        {"name": "MANDRILL_LOG_FORMAT", "value": settings.log_format},
        {"name": "MANDRILL_CRAWL_LEASE_SECONDS", "value": f"{settings.lease_seconds:g}"},
    ]
    if settings.allow_private:
        env.append({"name": "MANDRILL_CRAWL_ALLOW_PRIVATE", "value": "true"})
    uid_gid = 10001
    container = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "command": list(COMMAND),
        "env": env,
        "resources": settings.resources.manifest(),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid_gid,
            "runAsGroup": uid_gid,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": TMP}],
    }
    pod_spec = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": STOP_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid_gid,
            "runAsGroup": uid_gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **{k: settings.placement[k] for k in PLACEMENT if settings.placement.get(k)},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(job),
            "namespace": settings.namespace,
            "labels": labels(job),
            "annotations": {CRAWLJOB_ANNOTATION: str(job)},
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            "backoffLimitPerIndex": BACKOFF_LIMIT_PER_INDEX,
            # A new pod for an index only once the old one is gone: never two
            # workers under one index (and one worker id) at once.
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    # The worker's own verdict: retrying would meet the same error.
                    {
                        "action": "FailIndex",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [WORKER_ERROR_EXIT],
                        },
                    },
                    # An eviction, a preemption or a drained node is not the worker's fault.
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
            **(
                {}
                if time_left is None
                else {
                    "activeDeadlineSeconds": max(1, math.ceil(time_left)) + DEADLINE_GRACE_SECONDS
                }
            ),
            "template": {"metadata": {"labels": labels(job)}, "spec": pod_spec},
        },
    }
