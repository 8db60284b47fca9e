"""A site of 10,000 pages on three host names, served from one pod, that counts what it is asked.

This file is both the server (run as `python site.py --hosts A,B,C` in a pod of
the operator's image, which has Python and aiohttp, from a ConfigMap) and the
generator the test reads the expected pages and edges from, so the two
cannot disagree. It imports nothing but the standard library and aiohttp.

The site. Page i (0 <= i < pages) lives on host `i % len(hosts)` at /p/{i}
and links to `links(i)`: the next page and three pages a multiplication
away, so every page is reachable from /p/0 of the first host within a few
hops and two links in three go to another host. A link to a page of the same
host is root-relative, one to another host absolute. Every request but
/_stats answers after `--delay` seconds, so requests overlap.

The counts (GET /_stats, JSON, read through the API server's service proxy):
per Host header and path, how many times it was asked for; per Host header,
the most requests in flight at once; the first and last request's times.
/robots.txt (allow all) is counted apart from the pages.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time

from aiohttp import web
from aiohttp.typedefs import Handler

PAGES = 10_000
MULTIPLIERS = ((7, 3), (13, 5), (31, 11))


def links(i: int, *, pages: int = PAGES) -> list[int]:
    """The distinct pages page i links to, in order; never i itself."""
    out: list[int] = []
    for j in [(i + 1) % pages, *((i * m + c) % pages for m, c in MULTIPLIERS)]:
        if j != i and j not in out:
            out.append(j)
    return out


def url(hosts: list[str], j: int) -> str:
    return f"http://{hosts[j % len(hosts)]}/p/{j}"


def edges(hosts: list[str], *, pages: int = PAGES) -> set[tuple[str, str]]:
    """(source, target) of every link on every page, absolute: what a crawl must store."""
    return {(url(hosts, i), url(hosts, j)) for i in range(pages) for j in links(i, pages=pages)}


def depths(*, pages: int = PAGES) -> list[int]:
    """Hops from page 0 to each page (breadth first)."""
    found = [-1] * pages
    found[0], queue = 0, collections.deque([0])
    while queue:
        i = queue.popleft()
        for j in links(i, pages=pages):
            if found[j] < 0:
                found[j] = found[i] + 1
                queue.append(j)
    return found


def page(hosts: list[str], i: int, *, pages: int = PAGES) -> str:
    own = i % len(hosts)
    anchors = "".join(
        f'<a href="{f"/p/{j}" if j % len(hosts) == own else url(hosts, j)}">page {j}</a>\n'
        for j in links(i, pages=pages)
    )
    return f"<!doctype html><html><head><title>{i}</title></head><body>\n{anchors}</body></html>\n"


def app(hosts: list[str], *, pages: int, delay: float) -> web.Application:
    rendered = {i: page(hosts, i, pages=pages) for i in range(pages)}
    asked: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    in_flight: collections.Counter[str] = collections.Counter()
    most: collections.Counter[str] = collections.Counter()
    times: dict[str, float] = {}

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/_stats":
            return await handler(request)
        host = request.host
        asked[host][request.path] += 1
        in_flight[host] += 1
        most[host] = max(most[host], in_flight[host])
        times.setdefault("first", time.time())
        try:
            await asyncio.sleep(delay)
            return await handler(request)
        finally:
            in_flight[host] -= 1
            times["last"] = time.time()

    async def serve(request: web.Request) -> web.StreamResponse:
        i = int(request.match_info["i"])
        if i not in rendered or hosts[i % len(hosts)] != request.host:
            raise web.HTTPNotFound()
        return web.Response(text=rendered[i], content_type="text/html")

    async def robots(request: web.Request) -> web.StreamResponse:
        return web.Response(text="User-agent: *\nAllow: /\n", content_type="text/plain")

    async def stats(request: web.Request) -> web.StreamResponse:
        body = {"asked": asked, "mostInFlight": most, "inFlight": in_flight, **times}
        return web.Response(text=json.dumps(body), content_type="application/json")

    site = web.Application(middlewares=[count])
    site.router.add_get("/p/{i:[0-9]+}", serve)
    site.router.add_get("/robots.txt", robots)
    site.router.add_get("/_stats", stats)
    return site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", required=True, help="the host names, comma-separated")
    parser.add_argument("--pages", type=int, default=PAGES)
    parser.add_argument("--delay", type=float, default=0.002)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    hosts = args.hosts.split(",")
    web.run_app(app(hosts, pages=args.pages, delay=args.delay), port=args.port, access_log=None)


if __name__ == "__main__":
    main()
