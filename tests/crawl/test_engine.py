"""The crawl engine against a real HTTP server on 127.0.0.1.

Covers: depth and page bounds, dedup, every failure kind recorded per URL
while the crawl goes on (404/500, timeout, reset, too large, not HTML,
undecodable), redirects (followed, loops, limit, out of scope), retries (429
with Retry-After, without holding a worker), cancellation, the total timeout,
and the event loop staying responsive while a large page is parsed.
robots.txt and concurrency are in test_politeness.py.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc

import pytest
from aiohttp import web

from mandrill.domain.crawl import content, links
from mandrill.domain.crawl.models import ErrorKind
from tests.crawl.conftest import CrawlRunner, ResetServer, Site


async def test_depth_zero_fetches_the_seeds_only(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/", "/a", "/b")
    site.links("/a", "/c")
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=0)
    assert set(site.hits) == {"/", "/robots.txt"}
    assert crawled.sink.targets(site.url("/")) == [site.url("/a"), site.url("/b")]
    assert crawled.stats.pages_ok == 1
    assert crawled.stats.edges == 2
    assert crawled.stats.unique_urls == 3


async def test_depth_one_follows_one_hop(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/", "/a", "/b")
    site.links("/a", "/c")
    site.links("/b", "/")
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=1)
    assert set(site.hits) == {"/", "/a", "/b", "/robots.txt"}
    assert crawled.sink.targets(site.url("/a")) == [site.url("/c")]
    assert crawled.sink.result(site.url("/a")).depth == 1
    assert crawled.stats.pages_ok == 3


async def test_max_pages_bounds_the_fetches(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/", *(f"/p{i}" for i in range(20)))
    for i in range(20):
        site.links(f"/p{i}", "/")
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=3, max_pages=5)
    assert len(crawled.sink.results) == 5
    assert sum(n for path, n in site.hits.items() if path != "/robots.txt") == 5
    assert crawled.stats.edges == 20 + 4


async def test_equivalent_urls_are_fetched_once(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/", "/a", "/a#frag", "./a", "/b/../a", site.url("/a"), "/A")
    site.links("/a", "/", "/%61")
    crawled = await run_crawl(seeds=[site.url("/"), site.url("/#top")], max_depth=2)
    assert site.hits["/a"] == 1
    assert site.hits["/"] == 1
    assert site.hits["/A"] == 1  # paths are case-sensitive
    assert crawled.sink.targets(site.url("/")) == [site.url("/a"), site.url("/A")]


async def test_invalid_seed_is_recorded_and_the_rest_crawled(
    site: Site, run_crawl: CrawlRunner
) -> None:
    site.links("/", "/x")
    crawled = await run_crawl(seeds=["not a url", site.url("/")])
    assert crawled.sink.result("not a url").error is ErrorKind.INVALID_URL
    assert crawled.sink.result(site.url("/")).ok


async def test_http_errors_are_recorded_and_the_crawl_goes_on(
    site: Site, run_crawl: CrawlRunner
) -> None:
    site.links("/", "/missing", "/broken", "/fine")
    site.page("/broken", "oops", status=500)
    site.links("/fine")
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=1)
    missing = crawled.sink.result(site.url("/missing"))
    broken = crawled.sink.result(site.url("/broken"))
    assert (missing.error, missing.status) == (ErrorKind.HTTP_STATUS, 404)
    assert (broken.error, broken.status) == (ErrorKind.HTTP_STATUS, 500)
    assert crawled.sink.result(site.url("/fine")).ok
    assert crawled.stats.failures == {"http_status": 2}


async def test_a_hanging_endpoint_hits_the_request_timeout(
    site: Site, run_crawl: CrawlRunner
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await site.release.wait()
        return web.Response(text="too late")

    site.route("/hang", hang)
    site.links("/", "/hang", "/ok")
    site.links("/ok")
    started = time.monotonic()
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=1, request_timeout=0.5)
    assert crawled.sink.result(site.url("/hang")).error is ErrorKind.TIMEOUT
    assert crawled.sink.result(site.url("/ok")).ok
    assert time.monotonic() - started < 3


async def test_a_reset_connection_is_retried_then_recorded(
    reset_server: ResetServer, run_crawl: CrawlRunner
) -> None:
    crawled = await run_crawl(seeds=[reset_server.url], max_retries=2, respect_robots=False)
    result = crawled.sink.result(reset_server.url)
    assert result.error is ErrorKind.CONNECTION
    assert result.attempts == 3
    # aiohttp may itself retry a reset once within one attempt; never fewer than ours.
    assert 3 <= reset_server.connections <= 6


async def test_an_endless_body_stops_at_the_byte_cap(site: Site, run_crawl: CrawlRunner) -> None:
    chunk = b"<p>" + b"x" * (64 * 1024) + b"</p>"
    written = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        while not site.release.is_set():
            await response.write(chunk)
            written += len(chunk)
        return response

    site.route("/endless", endless)
    cap = 256 * 1024
    tracemalloc.start()
    try:
        crawled = await run_crawl(seeds=[site.url("/endless")], max_response_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = crawled.sink.result(site.url("/endless"))
    assert result.error is ErrorKind.TOO_LARGE
    assert written > cap
    assert peak < 16 * cap, f"peak traced memory {peak} bytes for a {cap}-byte cap"


async def test_a_declared_length_over_the_cap_is_not_read(
    site: Site, run_crawl: CrawlRunner
) -> None:
    site.page("/big", b"<p>" + b"y" * 200_000)
    crawled = await run_crawl(seeds=[site.url("/big")], max_response_bytes=100_000)
    result = crawled.sink.result(site.url("/big"))
    assert result.error is ErrorKind.TOO_LARGE
    assert "Content-Length" in result.message


async def test_a_compressed_body_is_capped_after_inflating(
    site: Site, run_crawl: CrawlRunner
) -> None:
    """Content-Length counts compressed bytes: the cap must hold for what they inflate to."""
    site.page(
        "/bomb", gzip.compress(b"<p>" + b"z" * 1_000_000), headers={"Content-Encoding": "gzip"}
    )
    site.page("/small", gzip.compress(b'<a href="/x">x</a>'), headers={"Content-Encoding": "gzip"})
    crawled = await run_crawl(
        seeds=[site.url("/bomb"), site.url("/small")], max_response_bytes=100_000
    )
    bomb = crawled.sink.result(site.url("/bomb"))
    assert bomb.error is ErrorKind.TOO_LARGE
    assert "body exceeds" in bomb.message
    assert crawled.sink.result(site.url("/small")).links == 1


async def test_non_html_is_recorded_and_not_parsed(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/", "/doc.pdf", "/data.json")
    site.page("/doc.pdf", '%PDF <a href="/hidden">x</a>', content_type="application/pdf")
    site.page("/data.json", '{"a": "<a href=/hidden2>"}', content_type="application/json")
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=2)
    pdf = crawled.sink.result(site.url("/doc.pdf"))
    assert (pdf.error, pdf.content_type) == (ErrorKind.NOT_HTML, "application/pdf")
    assert crawled.sink.result(site.url("/data.json")).error is ErrorKind.NOT_HTML
    assert "/hidden" not in site.hits
    assert "/hidden2" not in site.hits
    assert crawled.sink.targets(site.url("/doc.pdf")) == []


async def test_bad_charsets(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/", "/bogus", "/binary")
    site.page(
        "/bogus",
        '<a href="/caf\u00e9">c</a>'.encode(),
        content_type="text/html; charset=x-bogus-charset",
    )
    site.page("/binary", bytes(range(256)) * 64, content_type="text/html; charset=utf-8")
    crawled = await run_crawl(seeds=[site.url("/")], max_depth=1)
    bogus = crawled.sink.result(site.url("/bogus"))
    assert bogus.ok
    assert "unknown charset" in bogus.message
    assert crawled.sink.targets(site.url("/bogus")) == [site.url("/caf%C3%A9")]
    assert crawled.sink.result(site.url("/binary")).error is ErrorKind.UNDECODABLE


def redirect(site: Site, path: str, to: str, status: int = 302) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": to})

    site.route(path, handler)


async def test_redirects_are_followed_and_edges_come_from_the_final_url(
    site: Site, run_crawl: CrawlRunner
) -> None:
    redirect(site, "/old", "/new", status=301)
    site.links("/new", "/child")
    crawled = await run_crawl(seeds=[site.url("/old")])
    result = crawled.sink.result(site.url("/old"))
    assert result.ok
    assert result.final_url == site.url("/new")
    assert crawled.sink.targets(site.url("/new")) == [site.url("/child")]


async def test_redirect_loop(site: Site, run_crawl: CrawlRunner) -> None:
    redirect(site, "/r1", "/r2")
    redirect(site, "/r2", "/r1")
    crawled = await run_crawl(seeds=[site.url("/r1")])
    assert crawled.sink.result(site.url("/r1")).error is ErrorKind.REDIRECT_LOOP
    assert (site.hits["/r1"], site.hits["/r2"]) == (1, 1)


async def test_redirect_limit(site: Site, run_crawl: CrawlRunner) -> None:
    for i in range(10):
        redirect(site, f"/c{i}", f"/c{i + 1}")
    crawled = await run_crawl(seeds=[site.url("/c0")], max_redirects=3)
    assert crawled.sink.result(site.url("/c0")).error is ErrorKind.TOO_MANY_REDIRECTS
    assert [site.hits[f"/c{i}"] for i in range(6)] == [1, 1, 1, 1, 0, 0]


async def test_redirect_hops_meet_the_address_guard(site: Site, run_crawl: CrawlRunner) -> None:
    redirect(site, "/metadata", "http://169.254.169.254/latest/meta-data/")
    redirect(site, "/v6-loopback", f"http://[::1]:{site.base.rsplit(':', 1)[1]}/")
    started = time.monotonic()
    crawled = await run_crawl(seeds=[site.url("/metadata"), site.url("/v6-loopback")])
    for path in ("/metadata", "/v6-loopback"):
        result = crawled.sink.result(site.url(path))
        assert result.error is ErrorKind.BLOCKED, result
        assert result.final_url != site.url(path)
    assert time.monotonic() - started < 2


async def test_redirect_out_of_scope_is_refused(site: Site, run_crawl: CrawlRunner) -> None:
    redirect(site, "/away", "http://elsewhere.invalid/")
    crawled = await run_crawl(seeds=[site.url("/away")], allowed_domains=["127.0.0.1"])
    result = crawled.sink.result(site.url("/away"))
    assert result.error is ErrorKind.OUT_OF_SCOPE


async def test_scope_filters_which_links_are_followed(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/", "/docs/a", "/docs/skip-me", "/blog/b", "http://elsewhere.invalid/x")
    site.links("/docs/a")
    crawled = await run_crawl(
        seeds=[site.url("/")],
        max_depth=1,
        allowed_domains=["127.0.0.1"],
        include=[r"/docs/"],
        exclude=[r"skip"],
    )
    assert {r.url for r in crawled.sink.results} == {site.url("/"), site.url("/docs/a")}
    assert len(crawled.sink.targets(site.url("/"))) == 4


async def test_429_with_retry_after_waits_without_holding_the_worker(
    site: Site, run_crawl: CrawlRunner
) -> None:
    seen_at: dict[str, list[float]] = {"/limited": [], "/other": []}

    async def limited(request: web.Request) -> web.StreamResponse:
        seen_at["/limited"].append(time.monotonic())
        if len(seen_at["/limited"]) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(text="<a href='/x'>x</a>", content_type="text/html")

    async def other(request: web.Request) -> web.StreamResponse:
        seen_at["/other"].append(time.monotonic())
        return web.Response(text="fine", content_type="text/html")

    site.route("/limited", limited)
    site.route("/other", other)
    crawled = await run_crawl(
        seeds=[site.url("/limited"), site.url("/other")], concurrency=1, respect_robots=False
    )
    result = crawled.sink.result(site.url("/limited"))
    assert result.ok
    assert result.attempts == 2
    first, second = seen_at["/limited"]
    assert second - first >= 0.9
    assert seen_at["/other"][0] < second, "the only worker sat out the Retry-After"


async def test_503_retries_are_bounded(site: Site, run_crawl: CrawlRunner) -> None:
    site.page("/down", "busy", status=503)
    crawled = await run_crawl(seeds=[site.url("/down")], max_retries=2, respect_robots=False)
    result = crawled.sink.result(site.url("/down"))
    assert (result.error, result.status, result.attempts) == (ErrorKind.HTTP_STATUS, 503, 3)
    assert site.hits["/down"] == 3


async def test_cancellation_stops_the_crawl_promptly(site: Site, run_crawl: CrawlRunner) -> None:
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await site.release.wait()
        return web.Response(text="late")

    site.route("/hang", hang)
    task = asyncio.create_task(run_crawl(seeds=[site.url("/hang")], request_timeout=30))
    await asyncio.wait_for(arrived.wait(), timeout=5)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 1


async def test_total_timeout_stops_the_crawl_and_is_reported(
    site: Site, run_crawl: CrawlRunner
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await site.release.wait()
        return web.Response(text="late")

    site.route("/hang", hang)
    site.links("/")
    crawled = await run_crawl(
        seeds=[site.url("/"), site.url("/hang")], request_timeout=30, total_timeout=0.5
    )
    assert crawled.stats.timed_out
    assert crawled.stats.pages_ok == 1
    assert crawled.stats.elapsed < 2


async def test_parsing_a_large_page_does_not_stall_the_event_loop(
    site: Site, run_crawl: CrawlRunner
) -> None:
    rows = [
        f'<div class="r{i % 7}"><p>row {i} &amp; text</p><a href="/item/{i}?p={i % 13}">{i}</a>'
        f'<a href="../item/{i}?p={i % 13}#f">again</a></div>\n'
        for i in range(60_000)
    ]
    body = "<html><head><base href='/'></head><body>" + "".join(rows) + "</body></html>"
    site.page("/big", body)
    tick = 0.005
    worst = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(tick)
            worst = max(worst, time.perf_counter() - before - tick)

    ticking = asyncio.create_task(ticker())
    try:
        crawled = await run_crawl(
            seeds=[site.url("/big")],
            max_depth=1,
            max_pages=30,
            max_response_bytes=16 * 1024 * 1024,
            respect_robots=False,
        )
    finally:
        stop.set()
        await ticking
    # What parsing this page on the loop would stall it by, measured here and
    # now: a fixed threshold failed on a loaded 2-core CI machine (70 ms
    # against 50), while the ratio holds wherever both are measured together.
    started = time.perf_counter()
    decoded = content.decode(body.encode(), declared=None)
    assert sum(1 for _ in links.extract(decoded.text, page_url=site.url("/big"))) == 60_000
    inline = time.perf_counter() - started
    size_mb = len(body.encode()) / 1e6
    print(
        f"\nlongest event-loop stall: {worst * 1000:.1f} ms on a {size_mb:.1f} MB page "
        f"(parsing it on the loop: {inline * 1000:.0f} ms)"
    )
    assert crawled.stats.edges == 60_000
    assert len(crawled.sink.results) == 30
    assert worst < inline / 4
