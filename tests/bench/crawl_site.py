"""A deterministic site for the crawl benchmarks, served by its own process(es).

    .venv/bin/python -m tests.bench.crawl_site [--pages 10000] [--port 0] [--workers 2]

prints `listening http://127.0.0.1:PORT pids PID,PID` once every worker has
its socket, then serves until SIGTERM or SIGINT. It listens on 127.0.0.1
only.

The site. Page /p/{i} (0 <= i < pages) is about 7 KiB of HTML with about 53
anchors: an 8-link navigation menu shared by every page, 36 links to
neighbours that are a pure function of i (`neighbours`), 4 of them linked a
second time, and a footer with `#top`, mailto:, javascript:, tel: and a link
to the page itself. The neighbour links come in every shape a crawler meets --
root-relative, relative, `../`, absolute, protocol-relative, with a fragment,
single-quoted, unquoted, upper-case tags -- so link extraction and URL
resolution do real work. A few pages carry the traps real pages carry (see
`quirks`): an href inside an HTML comment or an inline script (not links), a
query with `&amp;` (an entity), a percent-encoded path (the same page under
another spelling), and a link to a page that is gone (404). Three pages in a
hundred are slow (50-200 ms, by i). /robots.txt allows everything.

Serving. Every page is rendered once, before the workers start; a request is
a dict lookup and a write. `--workers` processes share the port through
SO_REUSEPORT, so the kernel spreads connections over them. Each worker counts
the pages it serves, with the first request's start and the last response's
end, in shared memory: GET /_stats reads all workers' counters (JSON) and
GET /_reset zeroes them, so a benchmark measures a crawl from the server's
side, the same way for every contender.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.sharedctypes
import os
import random
import signal
import socket
import sys
import time
from typing import Any

from aiohttp import web

NAV_PAGES = 8
NEIGHBOURS = 36
REPEATED = 4
SLOW_PERCENT = 3
FIELDS = 3  # per worker: pages served, first start, last end

_WORDS = (
    *("crawler", "frontier", "anchor", "canonical", "fetch", "parse", "queue", "worker"),
    *("latency", "throughput", "robots", "fragment", "query", "segment", "authority"),
    *("origin", "redirect", "budget", "politeness", "depth"),
)


def neighbours(i: int, *, pages: int) -> list[int]:
    """The distinct pages page i links to in its body, in order; never i itself."""
    out: list[int] = []
    for multiplier, offset in _HASHES:
        j = (i * multiplier + offset) % pages
        if j != i and j not in out:
            out.append(j)
    return out


def slow_delay(i: int) -> float:
    """Seconds page i takes to answer: 0 for most, 0.05-0.2 for three pages in a hundred."""
    if (i * 2654435761) % 100 >= SLOW_PERCENT:
        return 0.0
    return 0.05 + (i * 37 % 151) / 1000


def quirks(i: int) -> set[str]:
    """Which traps page i carries; each is on about one page in fifty to a hundred."""
    found = set()
    if i % 100 == 7:
        found.add("comment")  # <!-- <a href="/draft/i"> --> : not a link
    if i % 100 == 13:
        found.add("script")  # '<a href="/js/i">' in a script string: not a link
    if i % 100 == 29:
        found.add("entity")  # ?from=i&amp;v=1 means ?from=i&v=1
    if i % 100 == 41:
        found.add("percent")  # /p/%3X%3Y is /p/XY spelled otherwise
    if i % 50 == 3:
        found.add("gone")  # /gone/i answers 404
    return found


_HASHES = [
    (rng.randrange(1, 1 << 20) * 2 + 1, rng.randrange(1 << 20))
    for rng in [random.Random(20240611)]
    for _ in range(NEIGHBOURS)
]


def render(i: int, *, pages: int, origin: str) -> bytes:  # noqa: PLR0912 - a branch per shape
    """The HTML of page i; `origin` is http://127.0.0.1:PORT."""
    authority = origin.partition("//")[2]
    words = random.Random(i)
    nav = "".join(
        f'<li><a class="nav" href="/p/{n}">Section {n}</a></li>' for n in range(NAV_PAGES)
    )
    items: list[str] = []
    for k, j in enumerate(neighbours(i, pages=pages)):
        text = " ".join(words.choice(_WORDS) for _ in range(3))
        shape = (i + k) % 9
        if shape == 0:
            items.append(f'<a href="/p/{j}">{text}</a>')
        elif shape == 1:
            items.append(f'<a href="{j}" title="page {j}">{text}</a>')
        elif shape == 2:
            items.append(f'<a href="{origin}/p/{j}">{text}</a>')
        elif shape == 3:
            items.append(f'<a href="/p/{j}#s{k}">{text}</a>')
        elif shape == 4:
            items.append(f'<a class="rel" href="../p/{j}">{text}</a>')
        elif shape == 5:
            items.append(f'<a href="//{authority}/p/{j}">{text}</a>')
        elif shape == 6:
            items.append(f"<a href='/p/{j}' rel='next'>{text}</a>")
        elif shape == 7:
            items.append(f'<A HREF="/p/{j}">{text.upper()}</A>')
        elif k % 4 == 0:
            items.append(f'<a data-k="{k}" href=./{j}>{text}</a>')  # unquoted
        else:
            items.append(f'<a data-k="{k}" href="./{j}">{text}</a>')
    body = "\n".join(f"<li>{item} <span>{words.random():.4f}</span></li>" for item in items)
    related = "".join(
        f'<li><a href="/p/{j}">again {j}</a></li>' for j in neighbours(i, pages=pages)[:REPEATED]
    )
    text = " ".join(words.choice(_WORDS) for _ in range(400))
    rows = "".join(
        f"<tr><td>{r}</td><td>{words.randrange(10**6)}</td><td>{words.choice(_WORDS)}</td></tr>"
        for r in range(12)
    )
    extra: list[str] = []
    found = quirks(i)
    if "comment" in found:
        extra.append(f'<!-- old menu: <a href="/draft/{i}">draft</a> -->')
    if "script" in found:
        extra.append(f"<script>var tpl = '<a href=\"/js/{i}\">x</a>';</script>")
    if "entity" in found:
        extra.append(f'<a href="/p/{(i + 1) % pages}?from={i}&amp;v=1">with a query</a>')
    if "percent" in found:
        j = (i + 2) % pages
        spelled = "".join(f"%{ord(c):02X}" for c in str(j))
        extra.append(f'<a href="/p/{spelled}">spelled with escapes</a>')
    if "gone" in found:
        extra.append(f'<a href="/gone/{i}">a page that is gone</a>')
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Page {i}</title>
<link rel="stylesheet" href="/static/site.css">
<style>body {{ font-family: sans-serif }} .nav {{ color: #333 }}</style>
</head><body>
<a id="top"></a><header><nav><ul>{nav}</ul></nav></header>
<main><h1>Page {i}</h1><p>{text}</p>
<ul class="links">
{body}
</ul>
<table><thead><tr><th>row</th><th>value</th><th>word</th></tr></thead>{rows}</table>
<aside><h2>Related</h2><ul>{related}</ul></aside>
{"".join(extra)}
</main>
<footer><a href="#top">Back to top</a> | <a href="mailto:webmaster@example.invalid">Mail</a>
| <a href="javascript:void(0)">Menu</a> | <a href="tel:+10000000">Call</a>
| <a href="/p/{i}">Permalink</a></footer>
</body></html>
"""
    return html.encode()


ROBOTS = b"User-agent: *\nAllow: /\n"


class Site:
    """One worker's handler: pre-rendered pages and its slot of the shared counters."""

    def __init__(self, pages: dict[str, bytes], counters: Any, slot: int, workers: int) -> None:
        self.pages = pages
        self.counters = counters
        self.slot = slot * FIELDS
        self.workers = workers

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_"):
            return self.control(path)
        started = time.monotonic()
        page = self.pages.get(path)
        if page is not None:
            delay = slow_delay(int(path[3:]))
            if delay:
                await asyncio.sleep(delay)
            response = web.Response(body=page, content_type="text/html", charset="utf-8")
        elif path == "/robots.txt":
            response = web.Response(body=ROBOTS, content_type="text/plain")
        else:
            response = web.Response(status=404, text="not found")
        slot, counters = self.slot, self.counters
        counters[slot] += 1
        if counters[slot + 1] == 0.0:
            counters[slot + 1] = started
        counters[slot + 2] = time.monotonic()
        return response

    def control(self, path: str) -> web.Response:
        counters = self.counters
        if path == "/_reset":
            for index in range(len(counters)):
                counters[index] = 0.0
        served = [counters[w * FIELDS] for w in range(self.workers)]
        firsts = [counters[w * FIELDS + 1] for w in range(self.workers) if counters[w * FIELDS]]
        lasts = [counters[w * FIELDS + 2] for w in range(self.workers)]
        stats = {
            "served": int(sum(served)),
            "per_worker": [int(s) for s in served],
            "first": min(firsts) if firsts else 0.0,
            "last": max(lasts),
        }
        return web.Response(text=json.dumps(stats), content_type="application/json")


def listen(port: int) -> socket.socket:
    """A 127.0.0.1 socket with SO_REUSEPORT, so several workers can share `port`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(sock: socket.socket, site: Site, ready: Any) -> None:
    server = web.Server(site.handle, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def build(pages: int, origin: str) -> dict[str, bytes]:
    return {f"/p/{i}": render(i, pages=pages, origin=origin) for i in range(pages)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--workers", type=int, default=2, help="processes sharing the port")
    args = parser.parse_args()
    first = listen(args.port)
    port = first.getsockname()[1]
    pages = build(args.pages, f"http://127.0.0.1:{port}")
    counters = multiprocessing.sharedctypes.RawArray("d", args.workers * FIELDS)
    children: list[int] = []
    ready_r, ready_w = os.pipe()
    for slot in range(1, args.workers):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            first.close()
            sock = listen(port)
            site = Site(pages, counters, slot, args.workers)
            asyncio.run(serve(sock, site, lambda: os.write(ready_w, b".")))
            os._exit(0)
        children.append(pid)
    os.close(ready_w)
    site = Site(pages, counters, 0, args.workers)

    def announce() -> None:
        for _ in children:
            os.read(ready_r, 1)  # each child writes one byte once it is listening
        pids = ",".join(str(p) for p in [os.getpid(), *children])
        print(f"listening http://127.0.0.1:{port} pids {pids}", flush=True)

    try:
        asyncio.run(serve(first, site, announce))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
    sys.exit(0)


if __name__ == "__main__":
    main()
