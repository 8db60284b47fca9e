"""The crawl's HTTP client: the engine's Fetcher port over aiohttp.

One ClientSession per crawl, with an explicit timeout, no environment proxies
(a proxy would connect on our behalf, around the address guard), no cookie
jar, and a connector whose resolver and socket factory enforce the
AddressPolicy. Redirects are not followed here (`allow_redirects=False`):
the engine follows them so every hop is checked like a new URL.

Bodies are streamed and reading stops at the byte cap, so an endless or
enormous response costs at most the cap in memory; bodies the engine does not
want (errors, non-HTML) are not read at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import aiohttp
import attrs
import yarl

from mandrill.adapters import ssrf
from mandrill.domain.crawl.models import CrawlSpec, ErrorKind, FetchFailure, FetchResult
from mandrill.domain.crawl.ports import BodyFilter

CHUNK_BYTES = 64 * 1024
ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"

_E = TypeVar("_E", bound=BaseException)


@attrs.define
class HttpFetcher:
    """Fetches one hop of one URL; see the engine's Fetcher port for the contract."""

    _session: aiohttp.ClientSession
    _timeout: float

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, *, spec: CrawlSpec, policy: ssrf.AddressPolicy
    ) -> AsyncIterator[HttpFetcher]:
        """A fetcher with its own session, closed when the block ends."""
        connector = aiohttp.TCPConnector(
            limit=spec.concurrency + 1,
            limit_per_host=spec.per_host_concurrency,
            resolver=ssrf.GuardedResolver(policy),
            socket_factory=ssrf.socket_factory(policy),
        )
        timeout = aiohttp.ClientTimeout(
            total=spec.request_timeout, sock_connect=spec.request_timeout
        )
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": spec.user_agent, "Accept": ACCEPT},
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as session:
            yield cls(session=session, timeout=spec.request_timeout)

    async def fetch(
        self, url: str, *, max_bytes: int, want_body: BodyFilter
    ) -> FetchResult | FetchFailure:
        """GET one URL; failures come back as FetchFailure, cancellation is raised."""
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._session.get(yarl.URL(url, encoded=True), allow_redirects=False) as response,
            ):
                return await _read(url, response, max_bytes=max_bytes, want_body=want_body)
        except TimeoutError:
            return FetchFailure(
                kind=ErrorKind.TIMEOUT, message=f"no complete response within {self._timeout:g}s"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return _failure(exc)


async def _read(
    url: str, response: aiohttp.ClientResponse, *, max_bytes: int, want_body: BodyFilter
) -> FetchResult | FetchFailure:
    headers = response.headers
    has_type = aiohttp.hdrs.CONTENT_TYPE in headers
    media_type = response.content_type.lower() if has_type else None
    body: bytes | None = None
    if want_body(response.status, media_type):
        length = response.content_length
        if length is not None and length > max_bytes:
            response.close()
            return _too_large(f"Content-Length {length} exceeds the {max_bytes}-byte limit")
        if length is not None and aiohttp.hdrs.CONTENT_ENCODING not in headers:
            # The parser stops at Content-Length, so the body fits the cap: read it at once.
            # (A compressed body is inflated as it is read, so it takes the capped loop.)
            body = await response.read()
        else:
            body = await _read_capped(response, max_bytes=max_bytes)
            if body is None:
                return _too_large(f"body exceeds the {max_bytes}-byte limit")
    return FetchResult(
        url=url,
        status=response.status,
        content_type=media_type,
        charset=response.charset if has_type else None,
        location=headers.get(aiohttp.hdrs.LOCATION),
        retry_after=headers.get(aiohttp.hdrs.RETRY_AFTER),
        body=body,
    )


async def _read_capped(response: aiohttp.ClientResponse, *, max_bytes: int) -> bytes | None:
    """The body, or None (and the connection dropped) once it passes `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            # Drop the connection rather than drain a body that may never end.
            response.close()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(message: str) -> FetchFailure:
    return FetchFailure(kind=ErrorKind.TOO_LARGE, message=message)


def _failure(exc: BaseException) -> FetchFailure:
    """Map a client exception onto an ErrorKind; resets are worth a retry."""
    message = f"{type(exc).__name__}: {exc}"
    blocked = _cause(exc, ssrf.BlockedAddressError)
    if blocked is not None:
        return FetchFailure(kind=ErrorKind.BLOCKED, message=str(blocked))
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchFailure(kind=ErrorKind.INVALID_URL, message=message)
    if isinstance(
        exc,
        aiohttp.ClientConnectorCertificateError
        | aiohttp.ClientConnectorSSLError
        | aiohttp.ClientSSLError,
    ):
        return FetchFailure(kind=ErrorKind.TLS, message=message)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchFailure(kind=ErrorKind.DNS, message=message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Refused or unreachable: the next try would meet the same closed door.
        return FetchFailure(kind=ErrorKind.CONNECTION, message=message)
    retryable = isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientOSError
        | aiohttp.ClientPayloadError
        | ConnectionError,
    )
    return FetchFailure(kind=ErrorKind.CONNECTION, message=message, retryable=retryable)


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of type `kind` in `exc`'s cause/context chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, kind):
            return os_error
        current = current.__cause__ or current.__context__
    return None
