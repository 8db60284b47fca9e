"""Scrapy as a contender: a minimal link-following spider, run in its own process.

Scrapy's LinkExtractor (lxml, a/area href, unique per page) and its own
scheduler, dupefilter (request fingerprints, so canonicalised URLs) and
DepthMiddleware, with the benchmark's limits: CONCURRENT_REQUESTS and
CONCURRENT_REQUESTS_PER_DOMAIN both `--concurrency`, DEPTH_LIMIT `--depth`,
robots.txt off, no throttling or delay, breadth-first order (as Scrapy's FAQ
sets it up), cookies and the telnet console off, log level WARNING. Each
page's links are written as `source<TAB>target` lines as the page is parsed.
Scrapy reads DEPTH_LIMIT 0 as "no limit", so the spider itself also stops
following links at `--depth` (the benchmark's depth-0 start-up run needs it).

    python -m tests.bench.baselines.scrapy_spider SEED --depth 3 --concurrency 64 --edges OUT
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Iterator
from typing import Any, TextIO

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import HtmlResponse, Response
from scrapy.linkextractors import LinkExtractor


class EdgeSpider(scrapy.Spider):
    name = "edges"

    def __init__(self, seed: str, out: TextIO, max_depth: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.out = out
        self.max_depth = max_depth
        self.extractor = LinkExtractor()

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(self.seed, callback=self.parse)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[scrapy.Request]:
        if not isinstance(response, HtmlResponse):
            return
        links = self.extractor.extract_links(response)
        self.out.write("".join(f"{response.url}\t{link.url}\n" for link in links))
        if response.meta.get("depth", 0) >= self.max_depth:
            return
        for link in links:
            yield scrapy.Request(link.url, callback=self.parse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--edges", required=True)
    args = parser.parse_args()
    settings = {
        "CONCURRENT_REQUESTS": args.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
        "DEPTH_LIMIT": args.depth,
        "DEPTH_PRIORITY": 1,
        "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
        "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        "ROBOTSTXT_OBEY": False,
        "AUTOTHROTTLE_ENABLED": False,
        "DOWNLOAD_DELAY": 0,
        "DOWNLOAD_TIMEOUT": 10,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
    }
    with open(args.edges, "w", encoding="utf-8") as out:
        process = CrawlerProcess(settings=settings)
        process.crawl(EdgeSpider, seed=args.seed, out=out, max_depth=args.depth)
        process.start()


if __name__ == "__main__":
    main()
