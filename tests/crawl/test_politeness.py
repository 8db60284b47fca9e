"""The crawl's politeness against a real HTTP server on 127.0.0.1.

Covers: robots.txt (Disallow, Crawl-delay, our user agent's group, ignored
when asked, unavailable), and global and per-host concurrency as the server
sees it. With a clock seam and no server: a request that wakes late from
its Crawl-delay wait pushes the next one back, so no two starts are closer
than the delay (they were, by however late the first woke: a worker crawl
under load showed 0.21 s gaps for a 0.25 s delay).
"""

from __future__ import annotations

import asyncio
import itertools
import time

import attrs
import pytest
from aiohttp import web

from mandrill.domain.crawl import frontier
from mandrill.domain.crawl.models import CrawlSpec, ErrorKind, FetchResult
from mandrill.domain.crawl.politeness import Politeness
from mandrill.domain.crawl.ports import BodyFilter
from tests.crawl.conftest import CrawlRunner, Handler, Site


async def test_robots_disallow_and_crawl_delay(site: Site, run_crawl: CrawlRunner) -> None:
    site.page(
        "/robots.txt",
        "User-agent: *\nDisallow: /private\nCrawl-delay: 0.3\n",
        content_type="text/plain",
    )
    starts: list[float] = []

    def timed(body: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            starts.append(time.monotonic())
            return web.Response(text=body, content_type="text/html")

        return handler

    site.route("/", timed('<a href="/private/secret">s</a><a href="/p1">1</a><a href="/p2">2</a>'))
    site.route("/p1", timed("one"))
    site.route("/p2", timed("two"))
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=1, per_host_concurrency=4)
    assert "/private/secret" not in site.hits
    refused = crawled.sink.result(site.url("/private/secret"))
    assert refused.error is ErrorKind.ROBOTS
    assert len(starts) == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.25, gaps


async def test_robots_ignored_when_asked(site: Site, run_crawl: CrawlRunner) -> None:
    site.page("/robots.txt", "User-agent: *\nDisallow: /\n", content_type="text/plain")
    site.links("/", "/private")
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=1, respect_robots=False)
    assert "/robots.txt" not in site.hits
    assert site.hits["/private"] == 1
    assert crawled.stats.failures == {"http_status": 1}


async def test_robots_rules_for_our_user_agent_win(site: Site, run_crawl: CrawlRunner) -> None:
    site.page(
        "/robots.txt",
        "User-agent: *\nDisallow: /\n\nUser-agent: mandrill\nDisallow: /no$\nAllow: /\n",
        content_type="text/plain",
    )
    site.links("/", "/no", "/nope")
    site.links("/nope")
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=1)
    assert crawled.sink.result(site.url("/no")).error is ErrorKind.ROBOTS
    assert crawled.sink.result(site.url("/nope")).ok


async def test_robots_unavailable_disallows_everything(site: Site, run_crawl: CrawlRunner) -> None:
    site.page("/robots.txt", "down", status=503, content_type="text/plain")
    site.links("/")
    crawled = await run_crawl(seeds=[site.url("/")])
    assert "/" not in site.hits
    result = crawled.sink.result(site.url("/"))
    assert result.error is ErrorKind.ROBOTS
    assert "503" in result.message


@pytest.mark.parametrize(("concurrency", "per_host"), [(10, 3), (2, 10)])
async def test_concurrency_bounds_seen_by_the_server(
    site: Site, run_crawl: CrawlRunner, concurrency: int, per_host: int
) -> None:
    site.links("/", *(f"/slow{i}" for i in range(12)))
    for i in range(12):
        site.links(f"/slow{i}", delay=0.15)
    crawled = await run_crawl(
        seeds=[site.url("/")],
        max_depth=1,
        concurrency=concurrency,
        per_host_concurrency=per_host,
    )
    assert crawled.stats.pages_ok == 13
    assert site.max_in_flight == min(concurrency, per_host)


@attrs.define
class _LateClock:
    """A monotonic clock whose sleeps end `late` seconds after they were due, the first time."""

    late: float
    now: float = 100.0
    starts: list[float] = attrs.Factory(list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.late
        self.late = 0.0
        await asyncio.sleep(0)

    async def fetch(self, url: str, *, max_bytes: int, want_body: BodyFilter) -> FetchResult:
        self.starts.append(self.now)
        await asyncio.sleep(0)
        return FetchResult(url=url, status=200)


async def test_a_request_that_wakes_late_pushes_the_next_one_back() -> None:
    clock = _LateClock(late=0.1)
    spec = CrawlSpec.create(seeds=(), per_host_concurrency=4)
    politeness = Politeness(spec=spec, fetcher=clock, clock=clock, sleep=clock.sleep)
    politeness.restore(
        [frontier.RobotsRecord(origin="http://a.test", rules="User-agent: *\nCrawl-delay: 1\n")]
    )
    await asyncio.gather(
        *(
            politeness.fetch(f"http://a.test/{n}", max_bytes=100, want_body=lambda *_: False)
            for n in range(4)
        )
    )
    gaps = [b - a for a, b in itertools.pairwise(clock.starts)]
    assert clock.starts[0] == pytest.approx(101.1)  # the delay after robots.txt, woken late
    assert gaps == [pytest.approx(1.0)] * 3
