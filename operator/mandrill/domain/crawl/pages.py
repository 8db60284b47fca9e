"""One fetched response to its links, or to the reason its URL failed.

Pure apart from the thread hop: decoding and parsing of a body larger than
INLINE_PARSE_BYTES runs in a worker thread, so the event loop never stalls on
one page. The engine decides what happens next (retry, redirect, admit the
links); this module only looks at the response.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

import attrs

from mandrill.domain.crawl import content, links, urls
from mandrill.domain.crawl.models import CrawlSpec, EdgeList, ErrorKind, FetchResult

INLINE_PARSE_BYTES = 16 * 1024
"""Bodies up to this size are parsed on the loop: a thread hop costs more than the parse."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 503})


@attrs.frozen
class Analysis:
    """What an HTML page links to."""

    edges: EdgeList
    """Every unique link on the page."""
    follow: tuple[str, ...]
    """The links the crawl may follow: those in scope, none when the page is at maxDepth.
    Not yet checked against what the crawl has seen."""
    note: str
    """A remark from decoding (e.g. a charset fallback), for the page's message."""


@attrs.frozen
class Failure:
    """Why one URL ends failed, and what its response (if any) said."""

    kind: ErrorKind
    message: str
    status: int | None = None
    content_type: str | None = None
    size: int = 0


def wants_html(status: int, media_type: str | None) -> bool:
    """The engine's BodyFilter for pages: read the body of a 2xx HTML response only."""
    return 200 <= status < 300 and content.is_html(media_type)


def redirect_target(url: str, location: str) -> str | None:
    """The canonical URL a Location header points to from `url`; None if not http(s)."""
    base = urls.BaseURL.parse(url)
    return urls.resolve(base, location) if base is not None else None


async def examine(spec: CrawlSpec, response: FetchResult, *, depth: int) -> Analysis | Failure:
    """A final (non-redirect, non-retried) response: its links, or why it failed.

    Not 2xx, not HTML, undecodable, or a parser error are failures of this URL
    only: one unparseable page must not end the crawl."""
    status = response.status
    if not 200 <= status < 300:
        return Failure(
            kind=ErrorKind.HTTP_STATUS,
            message=f"HTTP {status}",
            status=status,
            content_type=response.content_type,
        )
    if not content.is_html(response.content_type):
        return Failure(
            kind=ErrorKind.NOT_HTML,
            message=f"content type {response.content_type or 'missing'}",
            status=status,
            content_type=response.content_type,
        )
    body = response.body or b""
    failure: Failure
    try:
        if len(body) <= INLINE_PARSE_BYTES:
            return analyse(spec, body, response, depth)
        return await asyncio.to_thread(analyse, spec, body, response, depth)
    except content.UndecodableError as exc:
        failure = Failure(kind=ErrorKind.UNDECODABLE, message=str(exc))
    except Exception as exc:  # one unparseable page must not end the crawl
        failure = Failure(kind=ErrorKind.PARSE, message=f"{type(exc).__name__}: {exc}")
    return attrs.evolve(failure, status=status, content_type=response.content_type, size=len(body))


def analyse(spec: CrawlSpec, body: bytes, response: FetchResult, depth: int) -> Analysis:
    """Decode, extract and filter: pure, so it can run in a worker thread."""
    decoded = content.decode(body, declared=response.charset)
    targets = tuple(links.extract(decoded.text, page_url=response.url))
    follow: tuple[str, ...] = ()
    if depth < spec.max_depth:
        follow = tuple(t for t in targets if spec.follows(t))
    return Analysis(
        edges=EdgeList(response.url, targets),
        follow=follow,
        note=decoded.note,
    )


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
