"""Reading RestartRequests from the API server: one by UID, or all that this operator serves.

`list_all` is what makes consumption level-triggered: the periodic resync
compares it with what this process knows, so a watch event that never
arrived (or a handler that was dropped) cannot strand a request until the
next restart. It lists per served namespace when the operator is namespaced
(its RBAC may allow nothing wider), cluster-wide otherwise, in pages, as
plain JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mandrill import resources
from mandrill.adapters import kube
from mandrill.domain.errors import PermanentError
from mandrill.domain.restart.models import RequestRef

PAGE = 500


async def read_request(api: ApiClient, request: RequestRef) -> dict[str, Any]:
    """The request as the API server has it now; PermanentError("Gone") if deleted."""
    custom = client.CustomObjectsApi(api)
    try:
        body = await kube.call_json(
            custom.get_namespaced_custom_object,
            resources.GROUP,
            resources.VERSION,
            request.namespace,
            resources.RESTART_REQUESTS,
            request.name,
            what="read RestartRequest",
        )
    except ApiException as e:
        raise PermanentError("Gone", "the RestartRequest was deleted meanwhile") from e
    if body["metadata"]["uid"] != request.uid:
        raise PermanentError("Gone", "the RestartRequest was deleted and created anew")
    return body


@attrs.define
class KubeRequests:
    """The `Requests` port over the API server (and the listing of any of mandrill's kinds)."""

    api: ApiClient
    patterns: tuple[str, ...]
    """kopf namespace patterns (names or globs); empty: cluster-wide."""
    serves: Callable[[str], bool]
    """Whether a namespace matches `patterns`, exactly as kopf decides it."""
    plural: str = resources.RESTART_REQUESTS
    """What `list_all` lists: RestartRequests, or RestartSchedules for a new leader."""

    async def read(self, request: RequestRef) -> Mapping[str, Any]:
        return await read_request(self.api, request)

    async def list_all(self) -> list[Mapping[str, Any]]:
        custom = client.CustomObjectsApi(self.api)
        if not self.patterns:
            return await self._pages(
                custom.list_cluster_custom_object,
                resources.GROUP,
                resources.VERSION,
                self.plural,
            )
        found: list[Mapping[str, Any]] = []
        for namespace in await self._namespaces():
            found += await self._pages(
                custom.list_namespaced_custom_object,
                resources.GROUP,
                resources.VERSION,
                namespace,
                self.plural,
            )
        return found

    async def _namespaces(self) -> list[str]:
        """The served namespaces that exist now."""
        if all(_exact(p) for p in self.patterns):
            return list(dict.fromkeys(self.patterns))
        names = await self._pages(client.CoreV1Api(self.api).list_namespace)
        return [n["metadata"]["name"] for n in names if self.serves(n["metadata"]["name"])]

    async def _pages(self, method: Callable[..., Any], *args: Any) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE}
            if token:
                kwargs["_continue"] = token
            try:
                page = await kube.call_json(method, *args, what="list for resync", **kwargs)
            except ApiException as e:
                if e.status == 404:  # a namespace deleted meanwhile
                    return items
                raise
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items


def _exact(pattern: str) -> bool:
    return not any(c in pattern for c in "!*?,")
