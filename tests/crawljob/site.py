"""A deterministic test site: page i links to pages that are a pure function of i.

So the tests know, without crawling, exactly which pages a crawl from a seed
to a given depth fetches and which edges it records. The site counts what it
serves (with the time each request started and how many are in flight), so a
test asserts what the server saw, not what a mock was told. It listens on
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
from aiohttp import web

from tests import local_http

Neighbours = Callable[[int], list[int]]


def graph(i: int, *, size: int = 40) -> list[int]:
    """Three distinct pages other than i, in a fixed order."""
    out: list[int] = []
    for j in ((2 * i + 1) % size, (3 * i + 2) % size, (i * i + 3) % size):
        if j != i and j not in out:
            out.append(j)
    return out


def missing(i: int) -> bool:
    """Pages whose number is a multiple of 4 also link to a 404."""
    return i % 4 == 0


@attrs.frozen
class Expected:
    """What a crawl of the graph site must record."""

    ok: frozenset[str]
    failed: frozenset[str]
    edges: frozenset[tuple[str, str]]

    @property
    def unique_urls(self) -> int:
        return len(self.ok | self.failed | {t for _, t in self.edges})


@attrs.define
class GraphSite:
    """Serves /p/{i} (links per `graph`), /missing/{i} (404), /slow/{i} (a tree, slowly)."""

    base: str = ""
    size: int = 40
    slow_delay: float = 0.3
    starts: list[tuple[float, str]] = attrs.Factory(list)
    """(monotonic time, path) of every request, in arrival order."""
    in_flight: int = 0

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def page_url(self, i: int) -> str:
        return self.url(f"/p/{i}")

    def links(self, i: int) -> list[str]:
        """The absolute URLs page i links to, in document order."""
        found = [self.page_url(j) for j in graph(i, size=self.size)]
        if missing(i):
            found.append(self.url(f"/missing/{i}"))
        return found

    def expected(self, seeds: list[int], *, max_depth: int) -> Expected:
        """Breadth first, as the engine admits URLs: each at its smallest depth."""
        depth = {self.page_url(s): 0 for s in seeds}
        frontier = list(depth)
        ok: set[str] = set()
        failed: set[str] = set()
        edges: set[tuple[str, str]] = set()
        while frontier:
            url = frontier.pop(0)
            if "/missing/" in url:
                failed.add(url)
                continue
            ok.add(url)
            i = int(url.rsplit("/", 1)[1])
            for target in self.links(i):
                edges.add((url, target))
                if depth[url] < max_depth and target not in depth:
                    depth[target] = depth[url] + 1
                    frontier.append(target)
        return Expected(ok=frozenset(ok), failed=frozenset(failed), edges=frozenset(edges))

    def requests_since(self, moment: float) -> list[str]:
        return [path for started, path in self.starts if started > moment]

    def page_requests(self) -> int:
        return sum(1 for _, path in self.starts if path != "/robots.txt")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.starts.append((time.monotonic(), request.path))
        self.in_flight += 1
        try:
            kind, _, number = request.path.strip("/").partition("/")
            if kind == "p" and number.isdigit() and int(number) < self.size:
                hrefs = [f"/p/{j}" for j in graph(int(number), size=self.size)]
                if missing(int(number)):
                    hrefs.append(f"/missing/{number}")
                return _html(hrefs)
            if kind == "slow" and number.isdigit():
                await asyncio.sleep(self.slow_delay)
                i = int(number)
                return _html([f"/slow/{2 * i + 1}", f"/slow/{2 * i + 2}"])
            return web.Response(status=404, text="not found")
        finally:
            self.in_flight -= 1


def _html(hrefs: list[str]) -> web.Response:
    anchors = "".join(f'<a href="{h}">{h}</a>\n' for h in hrefs)
    return web.Response(
        text=f"<!doctype html><html><body>{anchors}</body></html>",
        content_type="text/html",
        charset="utf-8",
    )


@asynccontextmanager
async def serve(**settings: float) -> AsyncIterator[GraphSite]:
    """A started GraphSite on 127.0.0.1 and a free port."""
    state = GraphSite(**settings)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", state.handle)
    async with local_http.serve(app) as base:
        state.base = base
        yield state
