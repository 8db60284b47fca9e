"""Fixtures for the crawl tests: a real aiohttp server on 127.0.0.1, and a crawl runner.

The server answers every path from a table the test fills in (routes can be
added after it starts) and counts hits and concurrent in-flight requests, so
tests assert what the server saw, not what a mock was told. Nothing here
sends traffic anywhere but loopback.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import attrs
import pytest
from aiohttp import web

from mandrill.adapters import http, ssrf
from mandrill.domain.crawl import engine
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress
from tests import local_http

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TEST_SERVER_ADDRESS = "127.0.0.1"


@attrs.frozen
class TestServerOnly(ssrf.AddressPolicy):
    """The default guard, opened for the test server's address and nothing else.

    A test-only policy: the operator's configuration can widen the guard only
    all the way (--crawl-allow-private), which would hide whether a redirect
    hop or a DNS answer still meets the guard."""

    __test__ = False  # not a pytest test class, despite the name

    def refusal(self, address: str) -> str | None:
        return None if address == TEST_SERVER_ADDRESS else super().refusal(address)


LOOPBACK_ONLY = TestServerOnly()


@attrs.define
class Site:
    """A live test site: register pages or handlers by path, then crawl `url(...)`."""

    base: str = ""
    handlers: dict[str, Handler] = attrs.Factory(dict)
    hits: collections.Counter[str] = attrs.Factory(collections.Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    release: asyncio.Event = attrs.Factory(asyncio.Event)

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this site."""
        return f"{self.base}{path}"

    def page(
        self,
        path: str,
        body: str | bytes,
        *,
        status: int = 200,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Serve a fixed response at `path`."""
        data = body.encode() if isinstance(body, str) else body

        async def handler(request: web.Request) -> web.StreamResponse:
            if delay:
                await asyncio.sleep(delay)
            return web.Response(
                body=data,
                status=status,
                headers={"Content-Type": content_type, **(headers or {})},
            )

        self.handlers[path] = handler

    def links(self, path: str, *hrefs: str, delay: float = 0.0) -> None:
        """Serve an HTML page at `path` linking to `hrefs`."""
        anchors = "".join(f'<a href="{h}">{h}</a>' for h in hrefs)
        self.page(path, f"<html><body>{anchors}</body></html>", delay=delay)

    def route(self, path: str, handler: Handler) -> None:
        """Serve `path` with a custom handler."""
        self.handlers[path] = handler

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        self.hits[path] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            handler = self.handlers.get(path) or self.handlers.get(request.path)
            if handler is None:
                return web.Response(status=404, text="not found")
            return await handler(request)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    """A started Site on 127.0.0.1 and a free port; stopped (hanging handlers released) after."""
    state = Site()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.dispatch)
    async with local_http.serve(app) as base:
        state.base = base
        try:
            yield state
        finally:
            state.release.set()


@attrs.define
class ResetServer:
    """A TCP server that reads a request and answers with a RST."""

    url: str = ""
    connections: int = 0


@pytest.fixture
async def reset_server() -> AsyncIterator[ResetServer]:
    """Every connection is reset (SO_LINGER 0) once the request headers are in."""
    state = ResetServer()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/"
    async with server:
        yield state


@attrs.define
class MemorySink:
    """Keeps every outcome; the test's view of what the engine reported."""

    results: list[PageResult] = attrs.Factory(list)
    pages: list[Sequence[Edge]] = attrs.Factory(list)
    progress: list[Progress] = attrs.Factory(list)

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        self.results.append(result)
        self.pages.append(edges)  # as given: flattening a huge page here would skew the GC
        self.progress.append(progress)

    @property
    def edges(self) -> list[Edge]:
        """Every edge recorded, in order."""
        return [edge for page in self.pages for edge in page]

    def result(self, url: str) -> PageResult:
        """The one outcome recorded for `url`."""
        matches = [r for r in self.results if r.url == url]
        assert len(matches) == 1, f"{url}: {len(matches)} outcomes in {self.results}"
        return matches[0]

    def targets(self, source: str) -> list[str]:
        """Link targets recorded for `source`, in order."""
        return [edge.target for page in self.pages for edge in page if edge.source == source]


@attrs.frozen
class Crawled:
    """What one crawl produced."""

    stats: CrawlStats
    sink: MemorySink


CrawlRunner = Callable[..., Awaitable[Crawled]]


@pytest.fixture
def run_crawl() -> CrawlRunner:
    """Crawl with the real HTTP fetcher; keyword args go to CrawlSpec.create."""

    async def run(*, policy: ssrf.AddressPolicy = LOOPBACK_ONLY, **settings: object) -> Crawled:
        settings.setdefault("request_timeout", 5.0)
        settings.setdefault("retry_backoff", 0.05)
        spec = CrawlSpec.create(**settings)  # type: ignore[arg-type]
        sink = MemorySink()
        async with http.HttpFetcher.open(spec=spec, policy=policy) as fetcher:
            stats = await engine.crawl(spec, fetcher=fetcher, sink=sink)
        return Crawled(stats=stats, sink=sink)

    return run
