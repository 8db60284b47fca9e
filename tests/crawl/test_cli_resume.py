"""`mandrill crawl --resume STATE`, as a user runs it: a process, Ctrl-C, the same command again.

Covers: SIGINT stops the crawl gracefully (exit 130, a hint how to go on)
with what it had written to the state file and exported to the output; the
same command continues from the file without requesting again any page the
file holds, and ends with the whole site's edges, each once; a finished
state file only exports again; an argument that is no state file is a usage
error before anything is fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
import sqlite3
import sys

import pytest
from aiohttp import web

from mandrill import cli
from tests.crawl.conftest import Site
from tests.kube import eventually

PAGES = 63
"""A binary tree to depth 5: /t/i links to /t/2i+1 and /t/2i+2."""


def tree(site: Site, *, delay: float) -> None:
    for i in range(PAGES):
        site.links(f"/t/{i}", f"/t/{2 * i + 1}", f"/t/{2 * i + 2}", delay=delay)


def tree_edges(site: Site) -> set[tuple[str, str]]:
    return {
        (site.url(f"/t/{i}"), site.url(f"/t/{child}"))
        for i in range(PAGES)
        for child in (2 * i + 1, 2 * i + 2)
    }


def command(site: Site, tmp_path: pathlib.Path) -> list[str]:
    seeds = tmp_path / "urls.txt"
    seeds.write_text(site.url("/t/0") + "\n")
    return [
        sys.executable, "-m", "mandrill", "crawl", str(seeds), "-o", str(tmp_path / "out.tsv"),
        "--allow-private", "--no-robots", "--max-depth", "5", "--concurrency", "2",
        "--resume", str(tmp_path / "state.sqlite"),
    ]  # fmt: skip


async def run(
    argv: list[str], *, interrupt_after: int | None = None, site: Site
) -> tuple[int, str]:
    """Run the command; with `interrupt_after`, SIGINT once the site served that many pages."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        if interrupt_after is not None:

            async def far_enough() -> bool:
                return sum(site.hits.values()) >= interrupt_after

            await eventually(far_enough, what=f"{interrupt_after} pages served", within=60)
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(120):
            _, err = await proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def output_edges(path: pathlib.Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "source_url\tparsed_url"
    return [(a, b) for a, b in (line.split("\t") for line in lines[1:])]


def stored_pages(state: pathlib.Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(state)) as db:
        return {url for (url,) in db.execute("SELECT url FROM crawl_pages")}


async def test_ctrl_c_then_the_same_command_finishes_the_crawl(
    site: Site, tmp_path: pathlib.Path
) -> None:
    tree(site, delay=0.05)
    argv = command(site, tmp_path)
    status, err = await run(argv, interrupt_after=16, site=site)
    assert status == 130, err
    assert f"--resume {tmp_path / 'state.sqlite'} continues it" in err
    stored = stored_pages(tmp_path / "state.sqlite")
    assert 0 < len(stored) < PAGES
    # What was written is in the output too: each stored page's links, nothing else.
    partial = output_edges(tmp_path / "out.tsv")
    assert {source for source, _ in partial} == stored
    served = dict(site.hits)

    status, err = await run(argv, site=site)
    assert status == 0, err
    assert f"resuming the crawl in {tmp_path / 'state.sqlite'}: {len(stored)} URLs done" in err
    again = {site.url(path) for path, hits in site.hits.items() if hits > served.get(path, 0)}
    assert not again & stored, sorted(again & stored)
    edges = output_edges(tmp_path / "out.tsv")
    assert len(edges) == len(set(edges))
    assert set(edges) == tree_edges(site)
    assert stored_pages(tmp_path / "state.sqlite") == {site.url(f"/t/{i}") for i in range(PAGES)}


async def test_a_finished_state_file_only_exports_again(site: Site, tmp_path: pathlib.Path) -> None:
    tree(site, delay=0.0)
    argv = command(site, tmp_path)
    assert (await run(argv, site=site))[0] == 0
    served = sum(site.hits.values())
    first = (tmp_path / "out.tsv").read_text()

    status, err = await run(argv, site=site)
    assert status == 0, err
    assert f"{PAGES} URLs done, 0 pending" in err
    assert sum(site.hits.values()) == served
    assert (tmp_path / "out.tsv").read_text() == first


async def test_a_file_that_is_not_a_state_file_is_refused_before_crawling(
    site: Site, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.route("/", _never)
    seeds = tmp_path / "urls.txt"
    seeds.write_text(site.url("/") + "\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    argv = ["crawl", str(seeds), "-o", str(tmp_path / "out.tsv"), "--resume", str(notes)]
    with pytest.raises(SystemExit) as exit_:
        await asyncio.to_thread(cli.main, argv)
    assert exit_.value.code == 2
    assert "is not a mandrill state file" in capsys.readouterr().err
    assert sum(site.hits.values()) == 0


async def _never(request: web.Request) -> web.StreamResponse:
    raise AssertionError("nothing may be fetched")
