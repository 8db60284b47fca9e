"""Worker Jobs on the API server: create, read, delete, sweep; and the operator's image.

Idempotent as every adapter is: a Job that already exists counts as created,
one that is already gone as deleted. Deletion stops every worker at once:
the Job goes with propagationPolicy Background and, in the same moment, its
pods by their UID label with a short grace period, rather than waiting for
the garbage collector to get round to them after the Job is gone.

The sweep is the level-triggered half of deletion: a CrawlJob deleted while
no operator ran (or finished, then deleted, with no daemon to see it go)
leaves its Job behind; the sweep lists the worker Jobs, looks for each
one's CrawlJob by UID, and deletes the Jobs whose CrawlJob is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import crawl_jobs, kube, metrics
from mandrill.domain.crawl import workers
from mandrill.domain.crawl.job import JobRef
from mandrill.domain.crawl.worker_status import JobState
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.events import EventSink, EventType

log = logging.getLogger(__name__)

WORKER_SELECTOR = f"{workers.COMPONENT_LABEL}={workers.COMPONENT},{workers.NAME_LABEL}=mandrill"
OPERATOR_CONTAINER = "operator"
"""deploy/base/deployment.yaml's container: whose image the workers run."""


@attrs.frozen
class KubeWorkerJobs:
    """worker_run.WorkerJobs in one namespace (the operator's)."""

    api: ApiClient
    namespace: str

    async def get(self, job: JobRef) -> JobState | None:
        batch = client.BatchV1Api(self.api)
        try:
            found = await kube.call_json(
                batch.read_namespaced_job,
                workers.job_name(job),
                self.namespace,
                what="read the worker Job",
            )
        except ApiException as e:  # 404; a 409 cannot happen on a read
            if e.status == 404:
                return None
            raise
        labels = (found.get("metadata") or {}).get("labels") or {}
        if labels.get(workers.UID_LABEL) != job.uid:
            # A name is unique by the UID's first 8 characters only: never take another's.
            raise PermanentError(
                "JobNameTaken", f"Job {workers.job_name(job)} belongs to another CrawlJob"
            )
        return JobState.from_job(found)

    async def create(self, manifest: Mapping[str, Any]) -> None:
        batch = client.BatchV1Api(self.api)
        try:
            await kube.call_json(
                batch.create_namespaced_job, self.namespace, dict(manifest), what="create Job"
            )
        except ApiException as e:
            if e.status != 409:
                raise
        else:
            metrics.CRAWL_WORKER_JOBS.labels("created").inc()
        log.info("worker Job %s/%s created", self.namespace, manifest["metadata"]["name"])

    async def delete(self, job: JobRef) -> None:
        """The Job and its pods, at once; gone already is fine."""
        await asyncio.gather(self._delete_job(workers.job_name(job)), self._delete_pods(job.uid))

    async def _delete_job(self, name: str) -> None:
        batch = client.BatchV1Api(self.api)
        try:
            await kube.call_json(
                batch.delete_namespaced_job,
                name,
                self.namespace,
                propagation_policy="Background",
                grace_period_seconds=workers.STOP_GRACE_SECONDS,
                what="delete the worker Job",
            )
        except ApiException as e:
            if e.status != 404:
                raise
        else:
            metrics.CRAWL_WORKER_JOBS.labels("deleted").inc()
        log.info("worker Job %s/%s deleted", self.namespace, name)

    async def _delete_pods(self, uid: str) -> None:
        core = client.CoreV1Api(self.api)
        await kube.call_json(
            core.delete_collection_namespaced_pod,
            self.namespace,
            label_selector=f"{workers.UID_LABEL}={uid}",
            grace_period_seconds=workers.STOP_GRACE_SECONDS,
            what="delete the worker pods",
        )

    async def listed(self) -> list[tuple[str, str, str]]:
        """(CrawlJob UID, its namespace, the Job's name) of every worker Job here."""
        batch = client.BatchV1Api(self.api)
        found = await kube.call_json(
            batch.list_namespaced_job,
            self.namespace,
            label_selector=WORKER_SELECTOR,
            what="list worker Jobs",
        )
        rows: list[tuple[str, str, str]] = []
        for item in found.get("items") or ():
            meta = item.get("metadata") or {}
            uid = (meta.get("labels") or {}).get(workers.UID_LABEL)
            owner = (meta.get("annotations") or {}).get(workers.CRAWLJOB_ANNOTATION, "")
            if uid and "/" in owner:
                rows.append((str(uid), owner.partition("/")[0], str(meta["name"])))
        return rows

    async def sweep(self, serves: Callable[[str], bool]) -> int:
        """Delete the worker Jobs (and pods) whose CrawlJob is gone; how many were.

        Only Jobs of CrawlJobs in namespaces this operator serves: another
        installation's Jobs are not ours to judge."""
        custom = client.CustomObjectsApi(self.api)
        listed = await self.listed()
        alive: dict[str, set[str]] = {}
        deleted = 0
        for uid, namespace, name in listed:
            if not serves(namespace):
                continue
            if namespace not in alive:
                crawls = await kube.call_json(
                    custom.list_namespaced_custom_object,
                    resources.GROUP,
                    resources.VERSION,
                    namespace,
                    resources.CRAWL_JOBS,
                    what="list CrawlJobs",
                )
                alive[namespace] = {str(c["metadata"]["uid"]) for c in crawls.get("items") or ()}
            if uid not in alive[namespace]:
                await asyncio.gather(self._delete_job(name), self._delete_pods(uid))
                deleted += 1
        return deleted


async def sweep_every(jobs: KubeWorkerJobs, serves: Callable[[str], bool], interval: float) -> None:
    """The sweep now (the operator just started or took over) and every `interval`."""
    while True:
        try:
            deleted = await jobs.sweep(serves)
        except (PermanentError, TransientError) as e:
            log.warning("worker Jobs not swept (%s); again in %.0f s", e, interval)
        else:
            if deleted:
                log.info("deleted %d worker Job(s) whose CrawlJob is gone", deleted)
        await asyncio.sleep(interval)


async def own_image(
    api: ApiClient, environ: Mapping[str, str] = os.environ
) -> tuple[str, str] | None:
    """(image, pull policy) of the operator's own container, read from its Pod
    (POD_NAME and POD_NAMESPACE, from the downward API); None outside a pod."""
    pod = await _own_pod(api, environ) or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    chosen = next((c for c in containers if c.get("name") == OPERATOR_CONTAINER), None)
    chosen = chosen or (containers[0] if containers else None)
    if chosen is None or not chosen.get("image"):
        return None
    return str(chosen["image"]), str(chosen.get("imagePullPolicy") or "IfNotPresent")


async def own_placement(api: ApiClient, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """nodeSelector and tolerations of the operator's own Pod, for the workers that run
    its image; empty outside a pod."""
    pod = await _own_pod(api, environ)
    spec = (pod or {}).get("spec") or {}
    return {k: spec[k] for k in workers.PLACEMENT if spec.get(k)}


async def _own_pod(api: ApiClient, environ: Mapping[str, str]) -> dict[str, Any] | None:
    name, namespace = environ.get("POD_NAME"), environ.get("POD_NAMESPACE")
    if not name or not namespace:
        return None
    core = client.CoreV1Api(api)
    try:
        pod: dict[str, Any] = await kube.call_json(
            core.read_namespaced_pod, name, namespace, what="read the operator's own Pod"
        )
    except ApiException:  # 404: POD_NAME is not a pod of this cluster
        return None
    return pod


@attrs.frozen
class WorkerReporter:
    """worker_run.WorkerReporter: status patches and Events of one CrawlJob."""

    status: crawl_jobs.CrawlJobStatus
    events: EventSink
    body: Mapping[str, Any]

    async def patch(self, status: Mapping[str, Any]) -> None:
        await self.status.progress(dict(status))  # type: ignore[arg-type]

    def event(self, type: EventType, reason: str, message: str) -> None:
        self.events(self.body, type, reason, message)
