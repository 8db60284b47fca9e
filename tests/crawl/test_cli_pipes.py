"""`mandrill crawl` with stdout and stderr on pipes, as in a script, CI or a log file.

Covers: progress as plain lines every --progress-interval seconds (no
carriage returns), then the summary, all on stderr; `-o -` puts the results
and nothing else on stdout; `-q` prints nothing at all; a write that fails
mid-crawl (/dev/full) stops the crawl with one line and exit status 1.
"""

from __future__ import annotations

import pathlib
import re

from tests.crawl import cli_process
from tests.crawl.conftest import Site

PLAIN = r"^\[(\d+\.\d) s\] (\d+)/(\d+) done, (\d+) queued, (\d+) failed( \(.*\))?, [\d.]+ pages/s$"


def slow_site(site: Site) -> set[tuple[str, str]]:
    """A root linking to a dozen pages of 0.2 s each and one missing page; its edges."""
    pages = [f"/p{n}" for n in range(12)]
    site.links("/", *pages, "/missing")
    for path in pages:
        site.links(path, delay=0.2)
    return {(site.url("/"), site.url(path)) for path in [*pages, "/missing"]}


async def test_plain_progress_lines_and_the_summary_on_stderr_results_alone_on_stdout(
    site: Site, tmp_path: pathlib.Path
) -> None:
    edges = slow_site(site)
    urls = cli_process.urls_file(tmp_path, site.url("/"))

    process = await cli_process.spawn_piped(
        str(urls), "-o", "-", "--allow-private", "--max-depth", "1", "--per-host", "2",
        "--progress-interval", "0.25",
    )  # fmt: skip
    out, err = await process.communicate()

    assert process.returncode == 0, err.decode()
    stderr = err.decode()
    assert "\r" not in stderr
    lines = stderr.splitlines()
    progress = [line for line in lines if re.match(PLAIN, line)]
    assert len(progress) >= 2, stderr
    done = cli_process.done_counts(progress, r"\] (\d+)/")
    assert done == sorted(done)
    summary = lines[lines.index(progress[-1]) + 1 :]
    assert summary[:2] == ["pages ok:     13", "pages failed: 1 (http_status 1)"]
    assert "output:       stdout (tsv)" in summary
    rows = out.decode().splitlines()
    assert rows[0] == "source_url\tparsed_url"
    assert {tuple(row.split("\t")) for row in rows[1:]} == edges
    assert len(rows) == 1 + len(edges)


async def test_quiet_prints_nothing(site: Site, tmp_path: pathlib.Path) -> None:
    site.links("/", "/a")
    site.links("/a", delay=0.3)
    urls = cli_process.urls_file(tmp_path, site.url("/"))
    out = tmp_path / "edges.tsv"

    process = await cli_process.spawn_piped(
        str(urls), "-o", str(out), "--allow-private", "--max-depth", "1", "-q",
        "--progress-interval", "0.1",
    )  # fmt: skip
    stdout, stderr = await process.communicate()

    assert process.returncode == 0
    assert (stdout, stderr) == (b"", b"")
    assert out.read_text() == f"source_url\tparsed_url\n{site.url('/')}\t{site.url('/a')}\n"


async def test_a_failed_write_stops_the_crawl_with_status_1(
    site: Site, tmp_path: pathlib.Path
) -> None:
    site.links("/", "/a", "/b")
    urls = cli_process.urls_file(tmp_path, site.url("/"))

    process = await cli_process.spawn_piped(
        str(urls), "-o", "/dev/full", "--allow-private", "--max-depth", "1"
    )
    _, err = await process.communicate()

    stderr = err.decode()
    assert process.returncode == 1, stderr
    assert "mandrill crawl: cannot write /dev/full: No space left on device\n" in stderr
    assert "stopped:      by the output error above; 2 queued or in-flight URLs not crawled" in (
        stderr
    )
    assert "Traceback" not in stderr
