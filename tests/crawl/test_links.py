"""Link extraction with a real HTML parser: the tricky cases a regex gets wrong."""

from __future__ import annotations

import pytest

from mandrill.domain.crawl import links

PAGE = "http://example.com/dir/page.html"


def extract(html: str, page: str = PAGE) -> list[str]:
    return links.extract(html, page_url=page)


def test_relative_absolute_and_protocol_relative() -> None:
    html = """
      <a href="a.html">a</a> <a href="../up.html">up</a> <a href="/root">root</a>
      <a href="//cdn.example.net/x">cdn</a> <a href="https://other.example/y">other</a>
    """
    assert extract(html) == [
        "http://example.com/dir/a.html",
        "http://example.com/up.html",
        "http://example.com/root",
        "http://cdn.example.net/x",
        "https://other.example/y",
    ]


def test_base_href_is_honoured_and_resolved_against_the_page() -> None:
    html = """<html><head><base href="/other/base/"><base href="http://ignored.example/">
      </head><body><a href="x.html">x</a><a href="../y">y</a></body></html>"""
    assert extract(html) == ["http://example.com/other/base/x.html", "http://example.com/other/y"]


def test_entities_are_decoded_and_whitespace_trimmed() -> None:
    html = '<a href="  /search?a=1&amp;b=2&#38;c=3\n ">s</a><a href="/caf&eacute;">c</a>'
    assert extract(html) == [
        "http://example.com/search?a=1&b=2&c=3",
        "http://example.com/caf%C3%A9",
    ]


def test_fragments_dropped_and_self_links_left_out() -> None:
    html = '<a href="#top">t</a><a href="">e</a><a href="page.html#x">p</a><a href="b#1">b</a>'
    assert extract(html) == ["http://example.com/dir/b"]


def test_non_http_schemes_dropped() -> None:
    html = """<a href="mailto:x@example.com">m</a><a href="javascript:go()">j</a>
      <a href="data:text/html,hi">d</a><a href="tel:+1555">t</a><a href="ftp://f.example/">f</a>
      <a href=" JavaScript:go()">j2</a><a href="ok">ok</a>"""
    assert extract(html) == ["http://example.com/dir/ok"]


def test_nothing_from_comments_scripts_styles_or_templates() -> None:
    html = """<!-- <a href="/commented">c</a> -->
      <script>document.write('<a href="/scripted">s</a>')</script>
      <style>a[href="/styled"] {}</style>
      <template><a href="/templated">t</a></template>
      <textarea><a href="/in-textarea">x</a></textarea>
      <a href="/real">r</a>"""
    assert extract(html) == ["http://example.com/real"]


def test_area_tags_and_uppercase_markup() -> None:
    html = """<MAP NAME="m"><AREA SHAPE="rect" HREF="/area1"><area href="/area2"></MAP>
      <A HREF="/upper">u</A><a Href='/mixed'>m</a><a>no href</a><link href="/not-a-link">"""
    assert extract(html) == [
        "http://example.com/area1",
        "http://example.com/area2",
        "http://example.com/upper",
        "http://example.com/mixed",
    ]


def test_malformed_html_is_repaired_like_a_browser_would() -> None:
    html = """<html><body><div><a href=/unquoted>u<a href="/second">s</div>
      <p><a href='/third'>t</p><a href="/unclosed"""
    found = extract(html)
    assert found[:3] == [
        "http://example.com/unquoted",
        "http://example.com/second",
        "http://example.com/third",
    ]


def test_duplicates_collapse_in_document_order() -> None:
    html = '<a href="/b">1</a><a href="/a">2</a><a href="/b#x">3</a><a href="./../b">4</a>'
    assert extract(html) == ["http://example.com/b", "http://example.com/a"]


def test_empty_and_text_documents() -> None:
    assert extract("") == []
    assert extract("just text, no markup") == []


def test_a_large_document_is_walked_and_finds_the_same_links(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above QUERY_MAX_CHARS the tree is walked instead of queried: same links, same order."""
    html = """<html><head><base href="/base/"></head><body>
      <a href="1">1</a><map><area href="2"></map><svg><a href="3">3</a></svg>
      <table><a href="4">4</a><tr><td><A HREF=5>5</A></td></tr></table>
      <template><a href="t">t</a></template><!-- <a href="c"> --><base href="/other/">
      <a href="1">again</a><a name="no-href">x</a><a href="6">6</a></body></html>"""
    queried = links.extract(html, page_url=PAGE)
    monkeypatch.setattr(links, "QUERY_MAX_CHARS", 0)
    walked = links.extract(html, page_url=PAGE)
    assert queried == walked
    assert queried == [f"http://example.com/base/{n}" for n in "123456"]
