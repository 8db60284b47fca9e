"""Links of an HTML document, as canonical absolute URLs.

A real HTML5 parser (selectolax's lexbor) builds the tree, so markup inside
comments, <script>, <style> and <template> never yields links, tags and
attributes are case-insensitive, entities in attribute values are decoded and
malformed markup is repaired the way browsers repair it. Links are the href of
<a> and <area>, joined onto the first <base href> (itself resolved against the
document URL) and canonicalised; fragments are dropped, non-http(s) schemes
are dropped, and a document's links to itself are left out.

The tree is walked with `traverse()` rather than a CSS query: the query runs
in C holding the GIL for tens of milliseconds on a large page, which would
stall the event loop even when parsing runs in a worker thread; the walk
gives the GIL back at the interpreter's usual switch interval.
"""

from __future__ import annotations

from selectolax.lexbor import LexborHTMLParser

from mandrill.domain.crawl import urls

_LINK_TAGS = frozenset({"a", "area"})


def extract(html: str, *, page_url: str) -> list[str]:
    """The distinct links of `html`, in document order; `page_url` is canonical."""
    tree = LexborHTMLParser(html)
    root = tree.root
    if root is None:
        return []
    base_href: str | None = None
    hrefs: list[str] = []
    for node in root.traverse():
        tag = node.tag
        if tag in _LINK_TAGS:
            href = node.attributes.get("href")
            if href is not None:
                hrefs.append(href)
        elif tag == "base" and base_href is None:
            base_href = node.attributes.get("href")
    document = urls.BaseURL.parse(page_url)
    if document is None:
        return []
    base = document
    if base_href is not None:
        resolved = urls.resolve(document, base_href)
        parsed = urls.BaseURL.parse(resolved) if resolved is not None else None
        if parsed is not None:
            base = parsed
    return resolve_all(base, hrefs, exclude=document.url)


def resolve_all(base: urls.BaseURL, hrefs: list[str], *, exclude: str) -> list[str]:
    """Resolve hrefs against `base`, dropping duplicates, non-http(s) links and `exclude`."""
    found: dict[str, None] = {}
    cache: dict[str, str | None] = {}
    for href in hrefs:
        if href in cache:
            continue
        url = cache[href] = urls.resolve(base, href)
        if url is not None and url != exclude:
            found[url] = None
    return list(found)
