"""The Kubernetes API client and how its errors are classified and retried.

Transient failures (429, 5xx, timeouts, resets) are retried here with
exponential backoff and jitter, honouring Retry-After, so callers see either a
result, a `TransientError` after the budget is spent, or a `PermanentError`
(403 and the like) that retrying could not fix. A 403 gets a few quick
retries first: right after an API server restart, RBAC denies everything
until its informers have synced. Status codes that mean
something to the caller (404, 409) are returned to it as ApiException.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import aiohttp
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from mandrill.domain.errors import PermanentError, TransientError

T = TypeVar("T")
RETRIABLE_STATUS = frozenset({429, 500, 502, 503, 504})
FORBIDDEN_ATTEMPTS = 6
"""A 403 is asked again a few times (about 6 s) before it counts: an API server that
has just restarted denies requests until its RBAC caches are filled."""


PROXY_VARIABLES = (
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


async def credentials_problem() -> str | None:
    """None if credentials are there; else one line saying what was looked for.

    Checked before kopf starts: kopf itself would log "Invalid kube-config
    file" and retry every minute, serving no health endpoint meanwhile -- a
    pod that never says why it is not working."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        pass
    else:
        return None
    prefix = (
        "no Kubernetes credentials: not in a cluster (no KUBERNETES_SERVICE_HOST, "
        f"or no token at {IN_CLUSTER_TOKEN}), and"
    )
    path, missing = _kubeconfig()
    if missing:
        return f"{prefix} {missing}"
    try:
        await k8s_config.load_kube_config()
    except (ConfigException, OSError, TypeError, ValueError) as e:
        return f"{prefix} kubeconfig {path} unusable: {e}"
    return None


def _kubeconfig() -> tuple[str, str | None]:
    """The kubeconfig the client would load, and what is missing about it, if anything."""
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if not paths:
        default = pathlib.Path.home() / ".kube" / "config"
        if not default.exists():
            return str(default), f"no kubeconfig (KUBECONFIG unset, {default} missing)"
        return str(default), None
    absent = [p for p in paths if not pathlib.Path(p).exists()]
    return paths[0], (f"kubeconfig {absent[0]} missing" if absent else None)


async def make_client() -> ApiClient:
    """One ApiClient per process: in-cluster credentials if present, else KUBECONFIG."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        await k8s_config.load_kube_config()
    api = ApiClient()
    if not any(os.environ.get(v) for v in PROXY_VARIABLES):
        # kubernetes_asyncio's session always trusts the environment, which makes
        # aiohttp look up ~/.netrc and the proxy variables in a worker thread on
        # every request: two thread hops per API call, for nothing when no proxy
        # is set. (A kubeconfig's proxy-url is passed per request regardless.)
        api.rest_client.pool_manager._trust_env = False
    return api


async def plain(response: Awaitable[Any]) -> dict[str, Any]:
    """The JSON body of a generated-client call made with `_preload_content=False`.

    Skips the client's model objects, which parse every field and timestamp
    (with dateutil) and cost more CPU than the call itself. Errors raise
    ApiException as the generated methods do, so `call` classifies them.
    (The client's type hints promise a model; with that flag it is the
    aiohttp response.)"""
    r = cast(aiohttp.ClientResponse, await response)
    async with r:
        body = await r.read()
    if not 200 <= r.status <= 299:
        error = ApiException(status=r.status, reason=r.reason)
        error.body, error.headers = body, r.headers
        raise error
    parsed: dict[str, Any] = json.loads(body) if body else {}
    return parsed


async def call_json(
    method: Callable[..., Awaitable[Any]],
    *args: Any,
    what: str,
    passthrough: frozenset[int] = frozenset({404, 409}),
    **kwargs: Any,
) -> dict[str, Any]:
    """`call` for a generated-client method, returning the response's JSON (see `plain`)."""
    return await call(
        lambda: plain(method(*args, _preload_content=False, **kwargs)),
        what=what,
        passthrough=passthrough,
    )


def api_message(e: ApiException) -> str:
    """The API server's own one-line message for an error response."""
    try:
        return str(json.loads(e.body or b"")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason}"


def _retry_after(e: ApiException) -> float | None:
    headers = cast(Mapping[str, str], e.headers or {})
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def call(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 6,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
    passthrough: frozenset[int] = frozenset({404, 409}),
) -> T:
    """Run one API call with retries; see the module docstring for the contract.

    Transient failures and 403s have budgets of their own, so a burst of
    connection errors does not use up the patience a 403 deserves."""
    failures = forbidden = 0
    while True:
        try:
            return await fn()
        except ApiException as e:
            if e.status in passthrough:
                raise
            if e.status == 403:
                forbidden += 1
                if forbidden >= FORBIDDEN_ATTEMPTS:
                    raise PermanentError("Forbidden", f"{what}: {api_message(e)}") from e
            elif e.status in RETRIABLE_STATUS:
                failures += 1
            else:
                raise PermanentError(f"ApiError{e.status}", f"{what}: {api_message(e)}") from e
            problem: Exception = e
            hint = _retry_after(e)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
            failures += 1
            problem, hint = e, None
        if failures >= attempts:
            raise TransientError(f"{what}: {problem}") from problem
        tries = failures + forbidden
        delay = min(max_delay, base_delay * 2 ** (tries - 1)) * (0.5 + random.random())
        await asyncio.sleep(hint if hint is not None else delay)


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def fence(api: ApiClient, check: Callable[[str], None]) -> None:
    """Make every write `api` sends ask `check` first (it raises to refuse).

    Asked twice. First in the REST client itself, so no path (an adapter, the
    Event poster, a task that slept through a lost election) can write
    without asking. Then again inside aiohttp, once the request has a
    connection and nothing but synchronous code stands between it and the
    socket: a write that passed the first check and then waited (for a
    connection from the pool, or a new one's TLS handshake) while the
    process was frozen past its lease would otherwise go out the moment the
    process runs again. Reads are not fenced: a deposed leader that reads
    does no harm."""
    rest = api.rest_client
    send = rest.request

    async def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() in WRITES:
            check(f"{method.upper()} {url.partition('?')[0]}")
        return await send(method, url, *args, **kwargs)

    rest.request = request  # type: ignore[method-assign]  # per instance: only this client
    rest.pool_manager.trace_configs.append(_last_moment(check))


def _last_moment(check: Callable[[str], None]) -> aiohttp.TraceConfig:
    """A trace that asks `check` for a write when aiohttp hands it its connection
    (a new one, or one reused or waited for); raising there aborts the request."""

    async def started(
        _: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        method = params.method.upper()
        ctx.write = f"{method} {params.url.with_query(None)}" if method in WRITES else None

    async def connected(_: aiohttp.ClientSession, ctx: Any, __: object) -> None:
        if ctx.write is not None:
            check(ctx.write)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_connection_create_end.append(connected)
    trace.on_connection_reuseconn.append(connected)
    trace.freeze()
    return trace
