"""Fixtures for the chart's tests against the API server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests import kube


@pytest.fixture(scope="session")
def watched_namespaces(cluster: kube.Cluster) -> Iterator[list[str]]:
    """Two namespaces of this session's own, for watchNamespaces' RoleBindings; deleted after.

    Named afresh each session: a namespace deleted by the last one can take
    minutes to go, and one still terminating refuses new objects."""
    names = [f"helm-watched-{secrets.token_hex(3)}" for _ in range(2)]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
