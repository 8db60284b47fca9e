"""A CrawlJob's Kubernetes side: its urlsFrom ConfigMap, its status and its Events.

Status is written with JSON merge patches to the status subresource, like
RestartRequest's: no resourceVersion, so no conflicts with kopf's own
metadata patches. A 404 on a status patch means the job was deleted; it is
reported as PermanentError("Gone") so the handler stops quietly.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import http, kube, ssrf
from mandrill.domain.crawl import ports
from mandrill.domain.crawl import status as crawl_status
from mandrill.domain.crawl.job import (
    FetcherFactory,
    JobRef,
    Outcome,
    Phase,
    Tally,
)
from mandrill.domain.crawl.models import CrawlSpec
from mandrill.domain.errors import PermanentError
from mandrill.domain.events import EventSink


@attrs.frozen
class ConfigMapSeeds:
    """The domain's SeedSource: reads one key of a ConfigMap."""

    api: ApiClient

    async def read(self, *, namespace: str, config_map: str, key: str) -> str:
        """The key's text; PermanentError naming what is missing."""
        core = client.CoreV1Api(self.api)
        try:
            found = await kube.call(
                lambda: core.read_namespaced_config_map(config_map, namespace),
                what=f"read ConfigMap {config_map}",
            )
        except ApiException as e:  # 404 (409 cannot happen on a read)
            raise PermanentError(
                "ConfigMapNotFound", f"urlsFrom: ConfigMap {config_map} not found in {namespace}"
            ) from e
        data: Mapping[str, str] = found.data or {}
        if key not in data:
            raise PermanentError(
                "KeyNotFound", f"urlsFrom: ConfigMap {config_map} has no key {key}"
            )
        return data[key]


def fetcher_factory(policy: ssrf.AddressPolicy) -> FetcherFactory:
    """The domain's FetcherFactory: one aiohttp session per crawl, behind `policy`."""

    @asynccontextmanager
    async def open_fetcher(spec: CrawlSpec) -> AsyncIterator[ports.Fetcher]:
        async with http.HttpFetcher.open(spec=spec, policy=policy) as fetcher:
            yield fetcher

    return open_fetcher


@attrs.define
class CrawlJobStatus:
    """The domain's JobReporter for one CrawlJob."""

    api: ApiClient
    job: JobRef
    body: Mapping[str, Any]
    """The CrawlJob as kopf saw it: what Events are attached to."""
    events: EventSink

    async def _patch(self, status: Mapping[str, Any]) -> None:
        custom = client.CustomObjectsApi(self.api)
        try:
            await kube.call(
                lambda: custom.patch_namespaced_custom_object_status(
                    resources.GROUP,
                    resources.VERSION,
                    self.job.namespace,
                    resources.CRAWL_JOBS,
                    self.job.name,
                    {"status": status},
                    _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                ),
                what="patch CrawlJob status",
            )
        except ApiException as e:
            raise PermanentError("Gone", "the CrawlJob was deleted meanwhile") from e

    async def started(
        self,
        *,
        attempt: int,
        seeds: int,
        started: datetime.datetime,
        resumed: Tally | None = None,
    ) -> None:
        """Running, the counters cleared or carried on; Event Started, or Resumed."""
        patch, message = crawl_status.started(
            attempt=attempt, seeds=seeds, when=started, job=self.job, resumed=resumed
        )
        await self._patch(patch)
        reason = "Resumed" if resumed is not None else "Started"
        self.events(self.body, "Normal", reason, message)

    async def queued(self, message: str, *, event: bool = True) -> None:
        """Pending, reason Queued (waiting for a crawl slot); Event Queued unless told not."""
        await self._patch(crawl_status.queued(message, job=self.job))
        if event:
            self.events(self.body, "Normal", "Queued", message)

    async def progress(self, status: crawl_status.CrawlJobStatus) -> None:
        """One progress patch."""
        await self._patch(status)

    async def finished(self, outcome: Outcome) -> None:
        """The final status, then Succeeded (Normal) or Failed (Warning).

        Shielded: the final patch itself makes the job finished, and kopf may
        stop the daemon on seeing it before the patch's response is in; the
        Event must follow all the same.
        """
        await asyncio.shield(asyncio.ensure_future(self._finish(outcome)))

    async def _finish(self, outcome: Outcome) -> None:
        await self._patch(crawl_status.final(outcome, job=self.job))
        if outcome.phase is Phase.SUCCEEDED:
            self.events(self.body, "Normal", "Succeeded", f"{outcome.reason}: {outcome.message}")
        else:
            self.events(self.body, "Warning", "Failed", f"{outcome.reason}: {outcome.message}")
