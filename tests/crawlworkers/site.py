"""A local site on several hosts (ports of 127.0.0.1) that counts what it is asked.

Host h (0 <= h < hosts) serves /p/{i} for 0 <= i < pages: an HTML page
linking to /p/{i+1} and /p/{7i+3} on the same host, to /p/{11i+2} on the
next host, and every 25th page to a /missing/ page (404). So everything is
reachable from host 0's /p/0, and every host has work. With `redirects`,
every page i with i % 10 == 5 also links /r/{i}, a 301 to /p/{i} of the host
after next: a page this host's pages do not link to, that another worker
crawls. Each page answers
after `delay` seconds, so a crawl takes long enough to kill a worker in the
middle of it.

The server keeps, per host: how many times each path was asked for, and the
most requests it had in flight at once -- what a crawler's per-host limit
and "fetched once" promises are checked against.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator

import attrs
from aiohttp import web

from tests import local_http


@attrs.define
class HostCounters:
    requests: collections.Counter[str] = attrs.Factory(collections.Counter)
    starts: list[float] = attrs.Factory(list)
    """When each request came (time.monotonic), robots.txt included."""
    in_flight: int = 0
    most_in_flight: int = 0


@attrs.define
class Site:
    """The running hosts: their base URLs and counters."""

    bases: list[str]
    counters: list[HostCounters]

    @property
    def seed(self) -> str:
        return f"{self.bases[0]}/p/0"

    def fetched(self) -> collections.Counter[str]:
        """Requests per absolute URL, robots.txt left out."""
        found: collections.Counter[str] = collections.Counter()
        for base, counters in zip(self.bases, self.counters, strict=True):
            for path, count in counters.requests.items():
                if path != "/robots.txt":
                    found[base + path] += count
        return found

    def most_in_flight(self) -> int:
        return max(c.most_in_flight for c in self.counters)

    def reset(self) -> None:
        for counters in self.counters:
            counters.requests.clear()
            counters.starts.clear()
            counters.most_in_flight = 0


def _app(
    host: int,
    *,
    bases: list[str],
    pages: int,
    delay: float,
    robots: str | None,
    redirects: bool,
    counters: HostCounters,
) -> web.Application:
    async def page(request: web.Request) -> web.StreamResponse:
        counters.requests[request.path] += 1
        counters.starts.append(time.monotonic())
        counters.in_flight += 1
        counters.most_in_flight = max(counters.most_in_flight, counters.in_flight)
        try:
            await asyncio.sleep(delay)
            i = int(request.match_info["i"])
            if not 0 <= i < pages:
                raise web.HTTPNotFound()
            nxt = bases[(host + 1) % len(bases)]
            links = [
                f"/p/{(i + 1) % pages}",
                f"/p/{(7 * i + 3) % pages}",
                f"{nxt}/p/{(11 * i + 2) % pages}",
            ]
            if i % 25 == 0:
                links.append(f"/missing/{i}")
            if redirects and i % 10 == 5:
                links.append(f"/r/{i}")
            body = "".join(f'<a href="{link}">x</a>' for link in links)
            return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")
        finally:
            counters.in_flight -= 1

    async def redirect(request: web.Request) -> web.StreamResponse:
        counters.requests[request.path] += 1
        counters.starts.append(time.monotonic())
        far = bases[(host + 2) % len(bases)]
        raise web.HTTPMovedPermanently(f"{far}/p/{request.match_info['i']}")

    async def other(request: web.Request) -> web.StreamResponse:
        counters.requests[request.path] += 1
        counters.starts.append(time.monotonic())
        if request.path == "/robots.txt" and robots is not None:
            return web.Response(text=robots, content_type="text/plain")
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/p/{i}", page)
    app.router.add_get("/r/{i}", redirect)
    app.router.add_get("/{tail:.*}", other)
    return app


@contextlib.asynccontextmanager
async def serve(
    *,
    hosts: int = 3,
    pages: int = 100,
    delay: float = 0.03,
    robots: str | None = None,
    redirects: bool = False,
) -> AsyncIterator[Site]:
    """Serve the site until the block ends (`robots`: every host's robots.txt; none: 404)."""
    counters = [HostCounters() for _ in range(hosts)]
    bases: list[str] = []
    apps = [
        _app(
            h,
            bases=bases,
            pages=pages,
            delay=delay,
            robots=robots,
            redirects=redirects,
            counters=counters[h],
        )
        for h in range(hosts)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            bases.append(await stack.enter_async_context(local_http.serve(app)))
        yield Site(bases=bases, counters=counters)
