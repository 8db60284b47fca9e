"""The bare minimal crawl loop: the practical limit of this machine.

One aiohttp session, `--concurrency` workers on an asyncio.Queue, selectolax
(lexbor) for the anchors, `urljoin` + `urldefrag`, a set for dedup, and
nothing else: no canonicalisation, no result records, no progress, no byte
cap, no error handling beyond not crashing. The edges are kept in memory and
written once, after the crawl, so tests/bench/crawl_compare.py can compare
them. `--list-pages N` instead fetches /p/0 .. /p/N-1 of the seed's site
without parsing anything: the throughput of the site with the lightest
client there is.

    python -m tests.bench.baselines.bare SEED --depth 3 --concurrency 64 --edges OUT
"""

from __future__ import annotations

import argparse
import asyncio
from urllib.parse import urldefrag, urljoin

import aiohttp
from selectolax.lexbor import LexborHTMLParser


async def crawl(seed: str, *, depth: int, concurrency: int) -> list[str]:
    """The edges, as `source<TAB>target` lines."""
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    seen = {seed}
    found: list[str] = []
    queue.put_nowait((seed, 0))

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            url, hops = await queue.get()
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    ok = response.status == 200
                if ok:
                    for node in LexborHTMLParser(body).css("a"):
                        href = node.attributes.get("href")
                        if href is None:
                            continue
                        link = urldefrag(urljoin(url, href))[0]
                        if not link.startswith("http"):
                            continue
                        found.append(f"{url}\t{link}\n")
                        if hops < depth and link not in seen:
                            seen.add(link)
                            queue.put_nowait((link, hops + 1))
            except (aiohttp.ClientError, TimeoutError):
                pass
            finally:
                queue.task_done()

    await _run(worker, queue, concurrency)
    return found


async def fetch_only(seed: str, *, pages: int, concurrency: int) -> None:
    origin = seed.partition("/p/")[0]
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for i in range(pages):
        queue.put_nowait((f"{origin}/p/{i}", 0))

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            url, _ = await queue.get()
            try:
                async with session.get(url) as response:
                    await response.read()
            finally:
                queue.task_done()

    await _run(worker, queue, concurrency)


async def _run(worker, queue: asyncio.Queue[tuple[str, int]], concurrency: int) -> None:  # type: ignore[no-untyped-def]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        await queue.join()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--edges")
    parser.add_argument("--list-pages", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if args.list_pages:
        asyncio.run(fetch_only(args.seed, pages=args.list_pages, concurrency=args.concurrency))
    else:
        found = asyncio.run(crawl(args.seed, depth=args.depth, concurrency=args.concurrency))
        if args.edges:
            with open(args.edges, "w", encoding="utf-8") as out:
                out.write("".join(found))


if __name__ == "__main__":
    main()
