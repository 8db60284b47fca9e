"""The naive, classic-style crawler: what a crawl tutorial writes.

One aiohttp session; the crawl goes level by level, each level an
`asyncio.gather` over every URL of it (a semaphore holds the requests in
flight to `--concurrency`); links are `href="..."` matched by a regular
expression, joined with `urljoin` and stripped of their fragment with
`urldefrag`; a set remembers what was seen. It skips everything a crawler
must do on the open web: no HTML parsing (hrefs in comments and scripts are
taken, entities are not decoded, unquoted attributes are missed), no URL
canonicalisation (the same page under two spellings is fetched twice), no
byte cap, no charset sniffing, no redirects of its own, no retries, no
per-host limit, no robots.txt, no address guard, no progress, no results
until a whole level is done (they are written at the end). Run as its own process by
tests/bench/crawl_compare.py.

    python -m tests.bench.baselines.naive SEED --depth 3 --concurrency 64 --edges OUT
"""

from __future__ import annotations

import argparse
import asyncio
import re
from urllib.parse import urldefrag, urljoin

import aiohttp

HREF = re.compile(r"""href\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


async def fetch(
    session: aiohttp.ClientSession, gate: asyncio.Semaphore, url: str
) -> tuple[str, set[str]]:
    """The page's links, or none when it is not a 200 HTML page."""
    async with gate:
        try:
            async with session.get(url) as response:
                if response.status != 200 or response.content_type != "text/html":
                    return url, set()
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return url, set()
    found = set()
    for href in HREF.findall(text):
        link = urldefrag(urljoin(url, href))[0]
        if link.startswith(("http://", "https://")):
            found.add(link)
    return url, found


async def crawl(seed: str, *, depth: int, concurrency: int) -> list[str]:
    """The edges, level after level, as `source<TAB>target` lines."""
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    seen = {seed}
    level = [seed]
    found: list[str] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for hops in range(depth + 1):
            pages = await asyncio.gather(*(fetch(session, gate, url) for url in level))
            level = []
            for url, links in pages:
                found.extend(f"{url}\t{link}\n" for link in links)
                if hops < depth:
                    for link in links:
                        if link not in seen:
                            seen.add(link)
                            level.append(link)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--edges", required=True)
    args = parser.parse_args()
    found = asyncio.run(crawl(args.seed, depth=args.depth, concurrency=args.concurrency))
    with open(args.edges, "w", encoding="utf-8") as out:
        out.write("".join(found))


if __name__ == "__main__":
    main()
