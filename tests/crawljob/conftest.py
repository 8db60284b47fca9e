"""Fixtures for the CrawlJob tests: the CRDs, an operator of our own, the test site.

The operator watches namespaces `cj-*` only (the RestartRequest tests have
their own on `rr-*`), allows private addresses because the test site is on
127.0.0.1, and writes to a store file of its own, which the tests read back.
Tests that must kill or restart an operator start another on `cjr-*`.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests import kube
from tests.crawljob import site
from tests.kube import eventually
from tests.operator_process import OperatorProcess

REPO = pathlib.Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
GROUP, VERSION, PLURAL = "mandrill.dev", "v1alpha1", "crawljobs"


@pytest.fixture(scope="session")
def all_crds(cluster: kube.Cluster) -> None:
    """Every CRD in crds/, applied as users apply them, and Established."""
    for path in sorted(CRDS.glob("*.yaml")):
        cluster.kubectl("apply", "-f", str(path))
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


def crawling_operator(
    kubeconfig: pathlib.Path, workdir: pathlib.Path, namespaces: str, *extra: str
) -> Iterator[OperatorProcess]:
    """A fixture's body: `mandrill run` on `namespaces` with a SQLite store in `workdir`,
    allowed to crawl the test sites on 127.0.0.1; it must exit 0 on SIGTERM."""
    op = OperatorProcess(
        kubeconfig=kubeconfig,
        workdir=workdir,
        namespaces=namespaces,
        store_url=f"sqlite:///{workdir / 'store.sqlite'}",
        extra_args=("--crawl-allow-private", "true", *extra),
    ).start()
    yield op
    code = op.stop()
    assert code == 0, f"operator exited {code} on SIGTERM:\n{op.log_tail()}"


@pytest.fixture(scope="session")
def crawl_operator(
    cluster: kube.Cluster,
    all_crds: None,
    tmp_path_factory: pytest.TempPathFactory,
    operator_kubeconfig: pathlib.Path,
) -> Iterator[OperatorProcess]:
    yield from crawling_operator(
        operator_kubeconfig, tmp_path_factory.mktemp("crawl-operator"), "cj-*"
    )


@pytest.fixture
async def graph_site() -> AsyncIterator[site.GraphSite]:
    """The deterministic site, 16 pages, every one reachable from /p/0."""
    async with site.serve(size=16) as served:
        yield served


def crawljob(name: str, spec: dict[str, Any]) -> str:
    """A CrawlJob manifest, as a user would write it."""
    return yaml.safe_dump(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CrawlJob",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


async def kubectl(
    cluster: kube.Cluster, *args: str, stdin: str | None = None, check: bool = True
) -> Any:
    """kubectl off the event loop, so the test site keeps serving meanwhile."""
    return await asyncio.to_thread(cluster.kubectl, *args, stdin=stdin, check=check)


async def get_job(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        got: dict[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return got


async def finished(
    api: ApiClient, namespace: str, name: str, within: float = 60.0
) -> dict[str, Any]:
    """Wait until the job is Succeeded or Failed; returns it."""

    def over(body: dict[str, Any] | None) -> bool:
        return (body or {}).get("status", {}).get("phase") in ("Succeeded", "Failed")

    return await kube.object_until(
        lambda: get_job(api, namespace, name), over, what=f"CrawlJob {name} finished", within=within
    )


async def events_of(api: ApiClient, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about one CrawlJob."""
    listed = await client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=CrawlJob"
    )
    return [(e.type, e.reason, e.message) for e in listed.items]


async def wait_for_event(
    api: ApiClient, namespace: str, name: str, reason: str, within: float = 30.0
) -> tuple[str, str, str]:
    async def probe() -> tuple[str, str, str] | None:
        return next((e for e in await events_of(api, namespace, name) if e[1] == reason), None)

    return await eventually(probe, what=f"Event {reason} on CrawlJob {name}", within=within)


MakeNamespace = Callable[[str], Awaitable[str]]
