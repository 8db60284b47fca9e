"""`mandrill crawl` on a terminal: run on a pseudo-terminal and read as the screen shows it.

Covers: the progress bar appears at once and is redrawn in place (carriage
returns, no new lines) with done counts that only grow, never wider than the
terminal; its last frame has the final counts and errors by kind, and the
summary follows on lines of its own. Ctrl-C typed on the terminal stops the
crawl: in-flight fetches are cancelled (the hanging pages would otherwise
hold it for a minute), what was crawled is in the output, the summary says
it was stopped, and the exit status is 130.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.crawl import cli_process
from tests.crawl.conftest import Site

FRAME = re.compile(r"(\d+)/(\d+|\?) pages, (\d+) queued, (\d+) failed")
COLUMNS = 100


@pytest.fixture
async def terminal() -> AsyncIterator[cli_process.Terminal]:
    screen = cli_process.Terminal.open(columns=COLUMNS)
    try:
        yield screen
    finally:
        screen.close()


def frames(screen: str) -> list[str]:
    """Each drawing of the bar, in order."""
    return [part for part in re.split(r"[\r\n]", screen) if FRAME.match(part)]


async def test_the_bar_is_redrawn_in_place_then_the_summary_follows(
    site: Site, tmp_path: pathlib.Path, terminal: cli_process.Terminal
) -> None:
    pages = [f"/p{n}" for n in range(12)]
    site.links("/", *pages, "/missing")
    for path in pages:
        site.links(path, delay=0.2)  # two at a time: about 1.2 s of crawl, a dozen redraws
    urls = cli_process.urls_file(tmp_path, site.url("/"))
    out = tmp_path / "edges.tsv"

    process = await terminal.spawn(
        str(urls), "-o", str(out), "--allow-private", "--max-depth", "1", "--per-host", "2"
    )
    status = await cli_process.wait(process)
    screen = await terminal.wait_closed()

    assert status == 0, screen
    bar, _, report = screen.partition("pages ok:")
    drawn = frames(bar)
    done = [int(FRAME.match(frame)[1]) for frame in drawn]  # type: ignore[index]
    assert done == sorted(done), drawn
    assert done[0] == 0, "the bar appears before the first page is in"
    assert any(0 < n < 14 for n in done), f"no frame mid-crawl: {drawn}"
    assert drawn[-1].startswith("14/14 pages, 0 queued, 1 failed (http_status 1), ")
    assert all(len(frame) <= COLUMNS for frame in drawn)
    assert bar.count("\n") == 1, "redrawn in place: one line, ended once"
    assert report.startswith("     13\r\n")
    assert "pages failed: 1 (http_status 1)\r\n" in report
    assert f"output:       {out} (tsv)" in report


async def test_ctrl_c_stops_the_crawl_writes_what_it_has_and_exits_130(
    site: Site, tmp_path: pathlib.Path, terminal: cli_process.Terminal
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await site.release.wait()
        return web.Response(text="too late")

    site.links("/", "/a", "/b", "/slow1", "/slow2")
    site.links("/a", "/")
    site.links("/b")
    site.route("/slow1", hang)
    site.route("/slow2", hang)
    urls = cli_process.urls_file(tmp_path, site.url("/"))
    out = tmp_path / "edges.tsv"

    process = await terminal.spawn(
        str(urls), "-o", str(out), "--allow-private", "--max-depth", "1",
        "--per-host", "4", "--request-timeout", "60",
    )  # fmt: skip
    await terminal.wait_for(lambda text: "3/5 pages, 2 queued" in text)
    terminal.type(b"\x03")
    status = await cli_process.wait(process)
    screen = await terminal.wait_closed()

    assert status == 130, screen
    assert "mandrill crawl: SIGINT: stopping; again to exit at once" in screen
    assert "pages ok:     3\r\n" in screen
    assert "stopped:      by SIGINT; 2 queued or in-flight URLs not crawled" in screen
    rows = out.read_text().splitlines()
    assert rows[0] == "source_url\tparsed_url"
    assert {tuple(row.split("\t")) for row in rows[1:]} == {
        (site.url("/"), site.url("/a")),
        (site.url("/"), site.url("/b")),
        (site.url("/"), site.url("/slow1")),
        (site.url("/"), site.url("/slow2")),
        (site.url("/a"), site.url("/")),
    }
