"""Benchmark: link extraction alone, mandrill's extractor against a regular expression.

Not a test: a program that prints two tables.

    .venv/bin/python -m tests.bench.extract [--seconds 0.5]

Contenders, each from an HTML string to a page's links:

- mandrill: `links.extract` (lexbor parse, a/area/base, resolution and
  canonicalisation, dedup, self-links out) -- what the crawler runs;
- regex: `href\\s*=\\s*["']...["']` over the text, hrefs only (no joining): the
  floor of what any extractor can cost;
- regex+urljoin: the same hrefs made absolute (`urljoin`, `urldefrag`, http(s)
  only, dedup): what tests/bench/baselines/naive.py does;
- lexbor+urljoin: selectolax `css("a")` hrefs, `urljoin`, `urldefrag`: what
  tests/bench/baselines/bare.py does.

Table 1, throughput: pages/s and MB/s for each contender on a generated
corpus of real-world shapes (the benchmark site's pages, navigation-heavy
pages, data tables, script-heavy pages, and 2 MB pages), best of three timed
passes of at least `--seconds` each.

Table 2, correctness on tricky cases: for each case the links a browser
would follow, and which contenders found exactly those. Links are compared
after mandrill's canonicalisation (so `http://h/x` and `HTTP://H:80/x` are the
same link): a miss is a real extraction error, not a spelling.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import time
from collections.abc import Callable
from urllib.parse import urldefrag, urljoin

import attrs
from selectolax.lexbor import LexborHTMLParser

from mandrill.domain.crawl import links, urls
from tests.bench import crawl_site

HREF = re.compile(r"""href\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
PAGE = "http://site.test/dir/page.html"

Extractor = Callable[[str, str], list[str]]


def mandrill(html: str, page_url: str) -> list[str]:
    return links.extract(html, page_url=page_url)


def regex(html: str, page_url: str) -> list[str]:
    return HREF.findall(html)


def regex_urljoin(html: str, page_url: str) -> list[str]:
    return _absolute(HREF.findall(html), page_url)


def lexbor_urljoin(html: str, page_url: str) -> list[str]:
    hrefs = [node.attributes.get("href") for node in LexborHTMLParser(html).css("a")]
    return _absolute([h for h in hrefs if h is not None], page_url)


def _absolute(hrefs: list[str], page_url: str) -> list[str]:
    found: dict[str, None] = {}
    for href in hrefs:
        link = urldefrag(urljoin(page_url, href))[0]
        if link.startswith(("http://", "https://")):
            found[link] = None
    return list(found)


EXTRACTORS: dict[str, Extractor] = {
    "mandrill": mandrill,
    "regex": regex,
    "regex+urljoin": regex_urljoin,
    "lexbor+urljoin": lexbor_urljoin,
}


# --- the corpus -------------------------------------------------------------

_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def nav_page(i: int) -> str:
    """A mega-menu of 300 links (the same on every page), a short body."""
    rng = random.Random(i)
    menu = "".join(
        f'<li class="menu-item"><a class="menu-link" href="/section/{s}/topic-{t}/">'
        f"{_text(rng, 2)}</a></li>"
        for s in range(20)
        for t in range(15)
    )
    body = "".join(
        f'<p>{_text(rng, 40)} <a href="article-{i}-{k}.html">more</a></p>' for k in range(10)
    )
    head = f"<!doctype html><html><head><title>n{i}</title></head>"
    return f"{head}<body><nav><ul>{menu}</ul></nav><main>{body}</main></body></html>"


def table_page(i: int) -> str:
    """A data table of 500 rows, two links a row, entities in the queries."""
    rng = random.Random(i)
    rows = "".join(
        f"<tr><td><a href='/item?id={r}&amp;page={i}'>{r}</a></td><td>{_text(rng, 3)}</td>"
        f"<td>{rng.randrange(10**6)}</td><td><A HREF=/owner/{r % 97}>owner</A></td></tr>\n"
        for r in range(500)
    )
    head = "<thead><tr><th>id</th><th>name</th><th>n</th><th>o</th></tr></thead>"
    return f"<html><body><table>{head}{rows}</table></body></html>"


def script_page(i: int) -> str:
    """Large inline scripts and JSON holding href-like strings; comments with old links."""
    rng = random.Random(i)
    data = ",".join(
        f'{{"href": "/api/{k}", "html": "<a href=\\"/tpl/{k}\\">"}}' for k in range(300)
    )
    script = (
        f"<script>var state = [{data}];\nfunction go(u) {{ location.href = '/go/' + u; }}</script>"
    )
    comments = "".join(f'<!-- <a href="/old/{k}">old</a> -->' for k in range(50))
    real = "".join(f'<a href="/real/{k}">{_text(rng, 3)}</a> ' for k in range(20))
    return f"<html><head>{script}</head><body>{comments}<p>{real}</p></body></html>"


def huge_page(i: int) -> str:
    """About 2 MB: 20,000 list items with a link each."""
    rng = random.Random(i)
    items = "".join(
        f'<li><a href="/p/{rng.randrange(10**6)}">{_text(rng, 4)}</a> {_text(rng, 8)}</li>\n'
        for _ in range(20_000)
    )
    return f"<html><body><ul>{items}</ul></body></html>"


def corpus() -> dict[str, list[tuple[str, str]]]:
    origin = "http://127.0.0.1:8000"
    site = [
        (crawl_site.render(i, pages=10_000, origin=origin).decode(), f"{origin}/p/{i}")
        for i in range(300)
    ]
    return {
        "site page": site,
        "nav-heavy": [(nav_page(i), f"http://site.test/a/{i}") for i in range(40)],
        "data table": [(table_page(i), f"http://site.test/t/{i}") for i in range(20)],
        "script-heavy": [(script_page(i), f"http://site.test/s/{i}") for i in range(40)],
        "huge (2 MB)": [(huge_page(i), f"http://site.test/h/{i}") for i in range(2)],
    }


def throughput(extractor: Extractor, pages: list[tuple[str, str]], *, seconds: float) -> float:
    """Pages per second, best of three passes of at least `seconds`."""
    best = 0.0
    for _ in range(3):
        done = 0
        started = time.perf_counter()
        while True:
            for html, url in pages:
                extractor(html, url)
            done += len(pages)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
        best = max(best, done / elapsed)
    return best


# --- the tricky cases -------------------------------------------------------


@attrs.frozen
class Case:
    name: str
    html: str
    expected: tuple[str, ...]
    """Canonical URLs, relative to PAGE."""


def _u(path: str) -> str:
    return f"http://site.test{path}"


CASES = (
    Case("relative href", '<a href="next.html">n</a>', (_u("/dir/next.html"),)),
    Case(
        "../ and ./ segments",
        '<a href="../up.html">u</a><a href="./here">h</a>',
        (_u("/up.html"), _u("/dir/here")),
    ),
    Case(
        "<base href> moves the base",
        '<base href="http://other.test/sub/"><a href="x">x</a>',
        ("http://other.test/sub/x",),
    ),
    Case("&amp; in a query", '<a href="/s?a=1&amp;b=2">s</a>', (_u("/s?a=1&b=2"),)),
    Case("numeric entity in a path", '<a href="/caf&#233;">c</a>', (_u("/caf%C3%A9"),)),
    Case(
        "href inside a comment", '<!-- <a href="/old">o</a> --><a href="/new">n</a>', (_u("/new"),)
    ),
    Case(
        "href inside an inline script",
        "<script>document.write('<a href=\"/fake\">f</a>')</script><a href=/real>r</a>",
        (_u("/real"),),
    ),
    Case("unquoted attribute", "<a href=/plain>p</a>", (_u("/plain"),)),
    Case("single-quoted attribute", "<a href='/single'>s</a>", (_u("/single"),)),
    Case("upper-case tags", '<A HREF="/UPPER">U</A>', (_u("/UPPER"),)),
    Case("blanks around the value", '<a href="  /trim\n ">t</a>', (_u("/trim"),)),
    Case("newline inside the value", '<a href="/a\nb">t</a>', (_u("/ab"),)),
    Case("backslashes", '<a href="\\back\\slash">b</a>', (_u("/back/slash"),)),
    Case("fragment and #top", '<a href="/doc#sec">d</a><a href="#top">t</a>', (_u("/doc"),)),
    Case(
        "non-http(s) schemes",
        '<a href="mailto:a@b.test">m</a><a href="javascript:void(0)">j</a>'
        '<a href="tel:+1">t</a><a href="data:text/html,x">d</a><a href="ftp://f.test/">f</a>',
        (),
    ),
    Case("protocol-relative", '<a href="//cdn.test/x">c</a>', ("http://cdn.test/x",)),
    Case(
        "<link> is not a link to crawl",
        '<link rel="stylesheet" href="/style.css"><a href="/a">a</a>',
        (_u("/a"),),
    ),
    Case("data-href is not href", '<a data-href="/no" href="/yes">y</a>', (_u("/yes"),)),
    Case(
        "href= inside another attribute",
        '<a title="see href=\'/trap\'" href="/real">r</a>',
        (_u("/real"),),
    ),
    Case(
        "<area> in an image map",
        '<map name="m"><area href="/region" alt="r"></map>',
        (_u("/region"),),
    ),
    Case(
        "<textarea> text", '<textarea><a href="/ta">t</a></textarea><a href="/b">b</a>', (_u("/b"),)
    ),
    Case("<template> content", '<template><a href="/tpl">t</a></template>', ()),
    Case(
        "duplicates, in document order",
        '<a href="/b">1</a><a href="/a">2</a><a href="/b">3</a>',
        (_u("/b"), _u("/a")),
    ),
    Case(
        "malformed: unclosed quote",
        '<a href="/ok">o</a><a href="/broken>b</a><a href="/x">n</a>',
        (_u("/ok"), _u("/broken%3Eb%3C/a%3E%3Ca%20href=")),
    ),
)


def judge(extractor: Extractor, case: Case) -> bool:
    """Whether the extractor found exactly the expected links (self-links aside)."""
    canonical = {urls.canonicalize(u) for u in extractor(case.html, PAGE)}
    return canonical - {PAGE, None} == set(case.expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="least time per timed pass")
    args = parser.parse_args()
    pages = corpus()
    print(
        f"\nLink extraction: {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    names = list(EXTRACTORS)
    width = 16
    print(
        f"{'corpus':<14}{'pages':>6}{'KiB/page':>9}{'links/page':>11}  "
        + "".join(f"{n:>{width}}" for n in names)
        + "   (pages/s, MB/s)"
    )
    for kind, docs in pages.items():
        kib = sum(len(h) for h, _ in docs) / len(docs) / 1024
        per_page = sum(len(mandrill(h, u)) for h, u in docs) / len(docs)
        cells = []
        for name in names:
            rate = throughput(EXTRACTORS[name], docs, seconds=args.seconds)
            cells.append(f"{rate:>8.0f} {rate * kib * 1024 / 1e6:>6.1f}")
        print(
            f"{kind:<14}{len(docs):>6}{kib:>9.1f}{per_page:>11.0f}  "
            + "".join(f"{c:>{width}}" for c in cells)
        )
    print(
        "\nregex finds hrefs only; the others return absolute links. 'links/page': distinct "
        "links mandrill returns."
    )
    print(f"\nTricky cases (page {PAGE}; links compared after canonicalisation):\n")
    print(
        f"{'case':<34}{'expected links':<44}" + "".join(f"{n:>16}" for n in names[0:1] + names[2:])
    )
    score = dict.fromkeys(names, 0)
    for case in CASES:
        expected = ", ".join(u.removeprefix("http://site.test") for u in case.expected) or "(none)"
        marks = []
        for name in names:
            if name == "regex":
                continue
            ok = judge(EXTRACTORS[name], case)
            score[name] += ok
            marks.append("yes" if ok else "NO")
        print(f"{case.name:<34}{expected[:43]:<44}" + "".join(f"{m:>16}" for m in marks))
    print(
        f"{'right':<78}"
        + "".join(f"{f'{score[n]}/{len(CASES)}':>16}" for n in names if n != "regex")
    )


if __name__ == "__main__":
    main()
