"""The write fence on the services' ApiClient (adapters.kube.fence), with no server at all.

Covers: a write (POST, PATCH, DELETE) is refused before a connection is even
tried, naming the call; a read passes the fence and goes to the network; an
unfenced client is untouched.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration

from mandrill.adapters import kube
from mandrill.domain.leadership import NotLeader


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def api() -> AsyncIterator[ApiClient]:
    """A client for an address where nothing listens: any request that is sent fails."""
    config = Configuration(host=f"http://127.0.0.1:{_closed_port()}")
    async with ApiClient(configuration=config) as api_client:
        yield api_client


async def test_writes_are_refused_before_anything_is_sent(api: ApiClient) -> None:
    asked: list[str] = []

    def deny(what: str) -> None:
        asked.append(what)
        raise NotLeader(what)

    kube.fence(api, deny)
    core = client.CoreV1Api(api)

    with pytest.raises(NotLeader):
        await core.delete_namespaced_pod("web-1", "shop")
    with pytest.raises(NotLeader):
        await core.create_namespaced_event("shop", {"metadata": {"name": "e"}})
    with pytest.raises(NotLeader):
        await client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            "mandrill.dev", "v1alpha1", "shop", "restartrequests", "r", {"status": {}}
        )

    assert asked[0].startswith("DELETE http://127.0.0.1:")
    assert asked[0].endswith("/api/v1/namespaces/shop/pods/web-1")
    assert [a.split()[0] for a in asked] == ["DELETE", "POST", "PATCH"]


async def test_reads_pass_the_fence(api: ApiClient) -> None:
    asked: list[str] = []
    kube.fence(api, asked.append)

    with pytest.raises(aiohttp.ClientConnectionError):  # it went to the (absent) server
        await client.CoreV1Api(api).read_namespaced_pod("web-1", "shop")

    assert asked == []


async def test_an_allowed_write_is_sent(api: ApiClient) -> None:
    asked: list[str] = []
    kube.fence(api, asked.append)  # returns: allowed

    with pytest.raises(aiohttp.ClientConnectionError):
        await client.CoreV1Api(api).delete_namespaced_pod("web-1", "shop")

    assert len(asked) == 1
