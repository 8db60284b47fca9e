"""Fixtures for tests against the real control plane: a client and a namespace per test."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube


@pytest.fixture
async def api(cluster: kube.Cluster) -> AsyncIterator[ApiClient]:
    """A kubernetes_asyncio client for this test, closed afterwards."""
    api_client = await cluster.api_client()
    async with api_client:
        yield api_client


@pytest.fixture
async def namespace(api: ApiClient, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A namespace of this test's own, deleted afterwards (with all it holds)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await core.delete_namespace(name, propagation_policy="Background")
