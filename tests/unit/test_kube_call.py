"""adapters.kube.call: which API failures are retried, for how long, and what they become."""

from __future__ import annotations

import pathlib

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import kube_config

from mandrill.adapters import kube
from mandrill.domain.errors import PermanentError, TransientError


def failing(*errors: Exception) -> tuple[list[int], object]:
    """A call that raises `errors` in turn, then returns "ok"; counts its calls."""
    calls: list[int] = []

    async def fn() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return calls, fn


async def test_a_few_403s_then_success_is_success() -> None:
    """An API server that just restarted denies until its RBAC caches are filled."""
    calls, fn = failing(*(ApiException(status=403) for _ in range(kube.FORBIDDEN_ATTEMPTS - 1)))
    assert await kube.call(fn, what="x", base_delay=0.001) == "ok"  # type: ignore[arg-type]
    assert len(calls) == kube.FORBIDDEN_ATTEMPTS


async def test_a_lasting_403_is_permanent_and_says_forbidden() -> None:
    calls, fn = failing(*(ApiException(status=403) for _ in range(50)))
    with pytest.raises(PermanentError) as raised:
        await kube.call(fn, what="patch it", base_delay=0.001)  # type: ignore[arg-type]
    assert raised.value.reason == "Forbidden"
    assert raised.value.message.startswith("patch it: ")
    assert len(calls) == kube.FORBIDDEN_ATTEMPTS


async def test_connection_errors_do_not_use_up_the_patience_for_a_403() -> None:
    errors: list[Exception] = [aiohttp.ClientConnectionError("refused")] * 5
    errors += [ApiException(status=403)] * (kube.FORBIDDEN_ATTEMPTS - 1)
    calls, fn = failing(*errors)
    assert await kube.call(fn, what="x", base_delay=0.001) == "ok"  # type: ignore[arg-type]
    assert len(calls) == len(errors) + 1


async def test_transient_failures_give_up_after_the_budget() -> None:
    calls, fn = failing(*(ApiException(status=503) for _ in range(50)))
    with pytest.raises(TransientError):
        await kube.call(fn, what="x", attempts=4, base_delay=0.001)  # type: ignore[arg-type]
    assert len(calls) == 4


@pytest.mark.parametrize("status", [404, 409])
async def test_meaningful_statuses_reach_the_caller_at_once(status: int) -> None:
    calls, fn = failing(ApiException(status=status))
    with pytest.raises(ApiException) as raised:
        await kube.call(fn, what="x", base_delay=0.001)  # type: ignore[arg-type]
    assert raised.value.status == status
    assert len(calls) == 1


async def test_other_client_errors_are_permanent_at_once() -> None:
    calls, fn = failing(ApiException(status=422))
    with pytest.raises(PermanentError) as raised:
        await kube.call(fn, what="x", base_delay=0.001)  # type: ignore[arg-type]
    assert raised.value.reason == "ApiError422"
    assert len(calls) == 1


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.mark.parametrize(("proxy", "trusted"), [(None, False), ("http://127.0.0.1:3128", True)])
async def test_the_client_consults_the_environment_only_when_a_proxy_is_set(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, proxy: str | None, trusted: bool
) -> None:
    """Trusting the environment costs two thread hops per API call (netrc, proxy lookup)."""
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    # read from $KUBECONFIG when kubernetes_asyncio is imported, so set it there
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    for name in kube.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if proxy is not None:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    api = await kube.make_client()
    async with api:
        assert api.rest_client.pool_manager.trust_env is trusted
