"""Small helpers for tests that talk to a real API server.

Tests wait by polling the API at a short interval with a deadline: a test
that waits is bounded, and a failure says what it waited for and what it saw
last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import attrs
from kubernetes_asyncio import client, watch
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import ApiClient

REPO = pathlib.Path(__file__).resolve().parent.parent
T = TypeVar("T")


def _pinned_kubectl() -> pathlib.Path | None:
    """kubectl built by deploy/local at the pinned Kubernetes version, if built."""
    versions = REPO / "deploy" / "local" / "versions.env"
    for line in versions.read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            version = line.split("=", 1)[1].strip()
            bin_dir = pathlib.Path(os.environ.get("MANDRILL_BIN_DIR", REPO / ".cache" / "bin"))
            candidate = bin_dir / f"kubernetes-{version}" / "kubectl"
            return candidate if candidate.exists() else None
    return None


def kubectl_path() -> pathlib.Path:
    """The pinned kubectl if built, else the one on PATH (kustomize is built into it)."""
    found = _pinned_kubectl() or shutil.which("kubectl")
    if found is None:
        raise RuntimeError("no kubectl: run `make cluster-up` once or put kubectl on PATH")
    return pathlib.Path(found)


@attrs.frozen
class Cluster:
    """How tests reach the cluster under test."""

    kubeconfig: pathlib.Path
    """A kubeconfig whose current context has cluster-admin rights."""
    kubectl_path: pathlib.Path
    """kubectl at (or near) the server's version."""

    @classmethod
    def from_kubeconfig(cls, kubeconfig: pathlib.Path) -> Cluster:
        return cls(kubeconfig=kubeconfig.resolve(), kubectl_path=kubectl_path())

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster; raises with its stderr when `check` fails."""
        result = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    async def api_client(self) -> ApiClient:
        """A fresh kubernetes_asyncio client; the caller closes it."""
        return await k8s_config.new_client_from_config(
            config_file=str(self.kubeconfig), persist_config=False
        )


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    within: float = 60.0,
    interval: float = 0.25,
) -> T:
    """Await `probe` until it returns something other than None or False; return it.

    Raises AssertionError naming `what` and the last value seen on timeout.
    """
    deadline = time.monotonic() + within
    last: object = None
    while True:
        last = await probe()
        if last is not None and last is not False:
            return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


async def object_until(
    fetch: Callable[[], Awaitable[dict[str, Any] | None]],
    done: Callable[[dict[str, Any] | None], bool],
    *,
    what: str,
    within: float = 60.0,
) -> dict[str, Any]:
    """`eventually` for one object: fetch it until `done` says so; return it.

    On timeout the message adds the object's status as last fetched (or that it
    was gone), which is what a reader of a failed e2e test wants first.
    """
    seen: list[dict[str, Any] | None] = [None]

    async def probe() -> dict[str, Any] | None:
        body = seen[0] = await fetch()
        return body if done(body) else None

    try:
        return await eventually(probe, what=what, within=within)
    except AssertionError as e:
        status = "gone" if seen[0] is None else seen[0].get("status")
        raise AssertionError(f"{e}\nits status as last seen: {status}") from None


@contextlib.asynccontextmanager
async def deletions(cluster: Cluster, ns: str) -> AsyncIterator[list[str]]:
    """UIDs of pods deleted in `ns` while the block runs (a watch that survives API restarts)."""
    deleted: list[str] = []
    known: set[str] = set()

    async def record() -> None:
        """List, then watch; after any break (the API server went away) list again and
        count the pods that vanished meanwhile as deleted."""
        while True:
            api = await cluster.api_client()
            try:
                async with api:
                    core = client.CoreV1Api(api)
                    listed = await core.list_namespaced_pod(ns)
                    now = {p.metadata.uid for p in listed.items}
                    deleted.extend(known - now)
                    known.clear()
                    known.update(now)
                    w = watch.Watch()
                    async for event in w.stream(
                        core.list_namespaced_pod,
                        ns,
                        resource_version=listed.metadata.resource_version,
                        timeout_seconds=30,
                    ):
                        uid = event["object"].metadata.uid
                        if event["type"] == "DELETED":
                            if uid in known:
                                deleted.append(uid)
                            known.discard(uid)
                        else:
                            known.add(uid)
            except Exception:  # the API server may be down: list and watch again
                await asyncio.sleep(0.5)

    task = asyncio.create_task(record())
    await asyncio.sleep(0.5)
    try:
        yield deleted
    finally:
        await asyncio.sleep(2)  # stray deletions would show up now
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
