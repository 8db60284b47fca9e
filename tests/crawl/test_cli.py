"""`mandrill crawl` end to end through `main([...])`, against the live test site.

Covers: the urls file (comments, blank lines, invalid lines reported with
their number), the three output formats parsed back, the summary, exit
statuses, and the one-line errors for unusable input. `main` runs its own
event loop, so it runs in a worker thread while the test's loop serves.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import xml.etree.ElementTree as ET

import pytest

from mandrill import cli
from mandrill.adapters import export
from tests.crawl.conftest import Site

NS = {"g": export.GRAPHML_NS}


async def main(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


@pytest.fixture
def urls_file(tmp_path: pathlib.Path, site: Site) -> pathlib.Path:
    site.links("/", "/a", "/a#dup", "/b", "mailto:x@example.com", "/q?x=1&amp;y=<2>")
    site.links("/a", "/", "/b")
    site.links("/b")
    path = tmp_path / "urls.txt"
    path.write_text(
        "# seeds for the test site\n"
        f"{site.url('/')}\n"
        "\n"
        "not a url at all\n"
        f"   {site.url('/a')}   \n"
        "# done\n"
    )
    return path


def expected_edges(site: Site) -> set[tuple[str, str]]:
    return {
        (site.url("/"), site.url("/a")),
        (site.url("/"), site.url("/b")),
        (site.url("/"), site.url("/q?x=1&y=%3C2%3E")),
        (site.url("/a"), site.url("/")),
        (site.url("/a"), site.url("/b")),
    }


async def test_tsv_has_a_header_and_unique_edges(
    urls_file: pathlib.Path,
    tmp_path: pathlib.Path,
    site: Site,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "edges.tsv"
    status = await main("crawl", str(urls_file), "-o", str(out), "--allow-private")
    captured = capsys.readouterr()
    assert status == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "source_url\tparsed_url"
    rows = [tuple(line.split("\t")) for line in lines[1:]]
    assert len(rows) == len(set(rows))
    assert set(rows) == expected_edges(site)
    assert f"{urls_file}:4: skipped" in captured.err
    assert captured.out == "", "the summary goes to stderr: stdout is for -o -"
    assert "pages ok:     2" in captured.err
    assert "edges:        5" in captured.err
    assert "pages/s:" in captured.err


async def test_depth_and_other_flags_reach_the_engine(
    urls_file: pathlib.Path, tmp_path: pathlib.Path, site: Site
) -> None:
    out = tmp_path / "edges.tsv"
    argv = ["crawl", str(urls_file), "-o", str(out), "--allow-private", "--no-robots"]
    status = await main(*argv, "--max-depth", "1", "--max-pages", "4", "--per-host", "1")
    assert status == 0
    assert "/robots.txt" not in site.hits
    assert site.max_in_flight == 1
    fetched = {path for path in site.hits if site.hits[path]}
    assert fetched == {"/", "/a", "/b", "/q?x=1&y=%3C2%3E"}


async def test_jsonl_parses_back(
    urls_file: pathlib.Path, tmp_path: pathlib.Path, site: Site
) -> None:
    out = tmp_path / "crawl.jsonl"
    status = await main(
        "crawl", str(urls_file), "-o", str(out), "--format", "jsonl", "--allow-private"
    )
    assert status == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    edges = {(r["source"], r["target"]) for r in records if r["type"] == "edge"}
    pages = {r["url"]: r for r in records if r["type"] == "page"}
    assert edges == expected_edges(site)
    assert pages[site.url("/")]["ok"] is True
    assert pages[site.url("/a")]["status"] == 200


async def test_graphml_is_valid_xml_and_parses_back(
    urls_file: pathlib.Path, tmp_path: pathlib.Path, site: Site
) -> None:
    out = tmp_path / "graph.graphml"
    status = await main(
        "crawl", str(urls_file), "-o", str(out), "--format", "graphml", "--allow-private"
    )
    assert status == 0
    graph = ET.parse(out).getroot().find("g:graph", NS)
    assert graph is not None
    assert graph.get("edgedefault") == "directed"
    url_of = {
        node.get("id"): node.findtext("g:data[@key='url']", namespaces=NS)
        for node in graph.findall("g:node", NS)
    }
    edges = {
        (url_of[e.get("source")], url_of[e.get("target")]) for e in graph.findall("g:edge", NS)
    }
    assert edges == expected_edges(site)
    assert len(url_of) == len(set(url_of.values())) == 4


async def test_failed_urls_still_exit_zero(
    urls_file: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "edges.tsv"
    status = await main("crawl", str(urls_file), "-o", str(out))  # no --allow-private
    captured = capsys.readouterr()
    assert status == 0
    assert out.read_text() == "source_url\tparsed_url\n"
    assert "pages failed: 2 (blocked 2)" in captured.err


async def test_missing_file_is_one_line_and_non_zero(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await main("crawl", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "o.tsv"))
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert "cannot read" in err
    assert "nope.txt" in err


async def test_no_valid_url_is_one_line_and_non_zero(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "urls.txt"
    path.write_text("# only a comment\n\n")
    status = await main("crawl", str(path), "-o", str(tmp_path / "o.tsv"))
    err = capsys.readouterr().err
    assert status == 2
    assert err == f"mandrill crawl: no valid URL in {path}\n"


async def test_unwritable_output_is_found_before_crawling(
    urls_file: pathlib.Path,
    tmp_path: pathlib.Path,
    site: Site,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "missing-dir" / "edges.tsv"
    status = await main("crawl", str(urls_file), "-o", str(out), "--allow-private")
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines()[-1].startswith("mandrill crawl: cannot write")
    assert sum(site.hits.values()) == 0


def test_bad_flag_values_are_usage_errors(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["crawl", "urls.txt", "-o", "out.tsv", "--max-depth", "-1"])
    assert exited.value.code == 2
    assert "must be at least 0" in capsys.readouterr().err
