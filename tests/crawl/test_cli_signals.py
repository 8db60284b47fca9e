"""`mandrill crawl` stopped by a signal, against a site whose last pages never answer.

Covers: SIGINT and SIGTERM stop the crawl at once (the hanging fetches are
cancelled, not waited for: their timeout is a minute), the output holds
every page recorded before the signal as a complete document (JSON lines
that all parse; GraphML that parses, nodes and closing tags written), the
summary says what stopped it, and the exit status is 128 + the signal. A
second SIGINT exits at once even when the event loop is stuck: here in a
write to a FIFO nobody reads.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pathlib
import signal
import xml.etree.ElementTree as ET

import pytest
from aiohttp import web

from mandrill.adapters import export
from tests.crawl import cli_process
from tests.crawl.conftest import Site

F_GETPIPE_SZ = 1032  # fcntl.F_GETPIPE_SZ, named in the module from Python 3.12


def half_slow_site(site: Site) -> None:
    """`/` links to two quick pages and two that hang until the test ends."""

    async def hang(request: web.Request) -> web.StreamResponse:
        await site.release.wait()
        return web.Response(text="too late")

    site.links("/", "/a", "/b", "/slow1", "/slow2")
    site.links("/a", "/")
    site.links("/b")
    site.route("/slow1", hang)
    site.route("/slow2", hang)


async def crawl_until_stuck(
    site: Site, tmp_path: pathlib.Path, *flags: str
) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start a crawl of the half-slow site; return once only the hanging pages are left."""
    half_slow_site(site)
    urls = cli_process.urls_file(tmp_path, site.url("/"))
    process = await cli_process.spawn_piped(
        str(urls), "--allow-private", "--max-depth", "1", "--per-host", "4",
        "--request-timeout", "60", "--progress-interval", "0.1", *flags,
    )  # fmt: skip
    assert process.stderr is not None
    lines: list[str] = []
    await cli_process.read_lines_until(
        process.stderr, lambda line: "3/5 done, 2 queued" in line, into=lines
    )
    return process, lines


@pytest.mark.parametrize(
    ("signum", "status", "format_name"),
    [(signal.SIGINT, 130, "jsonl"), (signal.SIGTERM, 143, "graphml")],
)
async def test_a_signal_stops_the_crawl_with_what_it_has_and_the_summary(
    site: Site, tmp_path: pathlib.Path, signum: int, status: int, format_name: str
) -> None:
    out = tmp_path / f"crawl.{format_name}"
    flags = ("-o", str(out), "--format", format_name)
    process, lines = await crawl_until_stuck(site, tmp_path, *flags)

    process.send_signal(signum)
    _, rest = await process.communicate()

    stderr = "".join(lines) + rest.decode()
    name = signal.Signals(signum).name
    assert process.returncode == status, stderr
    assert f"mandrill crawl: {name}: stopping; again to exit at once" in stderr
    assert "pages ok:     3\n" in stderr
    assert f"stopped:      by {name}; 2 queued or in-flight URLs not crawled" in stderr
    assert site.hits["/slow1"] == site.hits["/slow2"] == 1
    root, a, b = site.url("/"), site.url("/a"), site.url("/b")
    if format_name == "jsonl":
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert {r["url"] for r in records if r["type"] == "page"} == {root, a, b}
        assert sum(r["type"] == "edge" for r in records) == 5
    else:
        graph = ET.parse(out).getroot().find("g:graph", {"g": export.GRAPHML_NS})
        assert graph is not None
        assert len(graph.findall(f"{{{export.GRAPHML_NS}}}edge")) == 5
        assert len(graph.findall(f"{{{export.GRAPHML_NS}}}node")) == 5


async def test_a_second_sigint_exits_at_once_even_with_the_loop_stuck(
    site: Site, tmp_path: pathlib.Path
) -> None:
    many = [f"/page/{n:05d}" for n in range(3000)]  # ~150 KB of TSV: more than a pipe holds
    site.links("/", *many)
    urls = cli_process.urls_file(tmp_path, site.url("/"))
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # there, so the command can open it
    try:
        process = await cli_process.spawn_piped(
            str(urls), "-o", str(fifo), "--allow-private", "--max-depth", "0"
        )
        # The one page's rows are more than the FIFO holds and are written in one
        # go: from the first byte in the FIFO on, the command is in a write() that
        # cannot finish, and its event loop is stuck.
        row = len(f"{site.url('/')}\t{site.url(many[0])}\n")
        assert row * len(many) > 2 * fcntl.fcntl(reader, F_GETPIPE_SZ)
        readable = asyncio.Event()
        asyncio.get_running_loop().add_reader(reader, readable.set)
        try:
            await asyncio.wait_for(readable.wait(), cli_process.WAIT)
        finally:
            asyncio.get_running_loop().remove_reader(reader)
        assert process.stderr is not None
        lines: list[str] = []
        process.send_signal(signal.SIGINT)
        await cli_process.read_lines_until(
            process.stderr, lambda line: "SIGINT: stopping" in line, into=lines
        )
        process.send_signal(signal.SIGINT)
        _, rest = await process.communicate()
    finally:
        os.close(reader)

    stderr = "".join(lines) + rest.decode()
    assert process.returncode == 130, stderr
    assert "mandrill crawl: SIGINT again, exiting at once" in stderr
    assert "pages ok:" not in stderr, "at once: no summary"
