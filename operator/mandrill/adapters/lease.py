"""The election's Lease on the API server, the process's clocks, and who this process is.

The Lease (coordination.k8s.io/v1) is read with GET and written with PUT
carrying the resourceVersion last seen, so a write made on stale knowledge
is a 409, never a silent overwrite: that conditional write is the whole of
the election's mutual exclusion. Times are written as MicroTime (RFC 3339,
microseconds, UTC). Each call is made once, with a timeout of its own, and
any failure is a TransientError: the elector's loop is the retry, and its
deadlines (not a retry budget here) decide when to give up. The elector has
an ApiClient of its own, so a renewal never queues behind a burst of the
services' requests.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import pathlib
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill.adapters import kube
from mandrill.domain import timestamps
from mandrill.domain.errors import TransientError
from mandrill.domain.leadership import LeaseRecord, Versioned

SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
API_VERSION = "coordination.k8s.io/v1"


def record_from(spec: Mapping[str, Any]) -> LeaseRecord:
    """A Lease's spec as an election record (missing fields as a never-held Lease)."""
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=timestamps.parse(spec.get("acquireTime")),
        renew_time=timestamps.parse(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def spec_from(record: LeaseRecord) -> dict[str, Any]:
    """An election record as a Lease's spec, with MicroTime timestamps."""
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.lease_duration_seconds,
        "leaseTransitions": record.transitions,
    }
    if record.acquire_time is not None:
        spec["acquireTime"] = timestamps.format(record.acquire_time)
    if record.renew_time is not None:
        spec["renewTime"] = timestamps.format(record.renew_time)
    return spec


def _versioned(body: Mapping[str, Any]) -> Versioned:
    meta = body.get("metadata") or {}
    return Versioned(
        record=record_from(body.get("spec") or {}),
        version=str(meta.get("resourceVersion") or ""),
        uid=str(meta.get("uid") or ""),
    )


@attrs.frozen
class KubeLease:
    """The elector's `LeaseStore`: one named Lease in one namespace."""

    api: ApiClient
    namespace: str
    name: str
    timeout: float = 5.0
    """Seconds one request may take (wiring: half the renew deadline, so a request that
    hangs leaves time for another try before the deadline)."""
    labels: Mapping[str, str] = attrs.Factory(lambda: {"app.kubernetes.io/name": "mandrill"})

    def _api(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    async def _call(
        self, method: Callable[..., Awaitable[Any]], *args: Any, what: str
    ) -> dict[str, Any]:
        """One request; 404 and 409 come back as ApiException, all else as TransientError."""
        try:
            return await kube.plain(
                method(*args, _preload_content=False, _request_timeout=self.timeout)
            )
        except ApiException as e:
            if e.status in (404, 409):
                raise
            raise TransientError(f"{what}: {kube.api_message(e)}") from e
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
            raise TransientError(f"{what}: {type(e).__name__}: {e}") from e

    def _body(self, record: LeaseRecord, version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": dict(self.labels),
        }
        if version is not None:
            meta["resourceVersion"] = version
        spec = spec_from(record)
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta, "spec": spec}

    async def get(self) -> Versioned | None:
        try:
            body = await self._call(
                self._api().read_namespaced_lease, self.name, self.namespace, what="read the Lease"
            )
        except ApiException:  # 404: there is none yet
            return None
        return _versioned(body)

    async def create(self, record: LeaseRecord) -> Versioned | None:
        try:
            body = await self._call(
                self._api().create_namespaced_lease,
                self.namespace,
                self._body(record),
                what="create the Lease",
            )
        except ApiException:  # 409: another candidate created it first
            return None
        return _versioned(body)

    async def update(self, record: LeaseRecord, *, version: str) -> Versioned | None:
        try:
            body = await self._call(
                self._api().replace_namespaced_lease,
                self.name,
                self.namespace,
                self._body(record, version),
                what="write the Lease",
            )
        except ApiException:  # 409: someone wrote since `version`; 404: it was deleted
            return None
        return _versioned(body)

    def involved_object(self, uid: str) -> dict[str, Any]:
        """The Lease as an Event's object (Events on acquiring go on the Lease)."""
        meta = {"name": self.name, "namespace": self.namespace, "uid": uid}
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta}


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


@attrs.frozen
class SystemClock:
    """The elector's `Clock`. Monotonic time is CLOCK_BOOTTIME where there is one (Linux):
    like CLOCK_MONOTONIC it never jumps and runs while the process is stopped, and unlike
    it, it also runs while the machine is suspended, so a leader never wakes believing
    less time passed than did."""

    def monotonic(self) -> float:
        if _BOOTTIME is not None:
            return time.clock_gettime(_BOOTTIME)
        return time.monotonic()

    def now(self) -> datetime.datetime:
        return timestamps.now()

    def random(self) -> float:
        return random.random()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def identity(environ: Mapping[str, str] = os.environ) -> str:
    """The pod's name (POD_NAME, from the downward API; else the host name) and a random
    suffix, as controller-runtime does: two processes on one host (or a container
    restarted in the same pod) never share an identity, so none mistakes another's
    claim for its own."""
    name = environ.get("POD_NAME") or socket.gethostname() or "mandrill"
    return f"{name}_{secrets.token_hex(4)}"


def default_namespace(
    environ: Mapping[str, str] = os.environ, path: pathlib.Path = SERVICE_ACCOUNT_NAMESPACE
) -> str | None:
    """The operator's own namespace: POD_NAMESPACE, else the ServiceAccount's namespace
    file in a pod; None outside a cluster."""
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
