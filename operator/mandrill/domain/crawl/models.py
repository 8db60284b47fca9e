"""Values of a crawl: what to crawl, what a fetch returned, what a page yielded.

All frozen: the engine keeps its mutable state elsewhere and hands these to
the sink, which may keep them as long as it likes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import attrs

import mandrill
from mandrill.domain.crawl import urls

DEFAULT_USER_AGENT = f"mandrill/{mandrill.__version__} (link crawler)"


class ErrorKind(enum.StrEnum):
    """Why a URL yielded no links; the keys of the per-kind failure counters."""

    HTTP_STATUS = "http_status"
    """The server answered with a status >= 400 (or a redirect without Location)."""
    TIMEOUT = "timeout"
    """The per-request timeout passed (connect, headers or body)."""
    DNS = "dns"
    """The host name did not resolve."""
    TLS = "tls"
    """The TLS handshake or certificate check failed."""
    CONNECTION = "connection"
    """Refused, reset or dropped connection."""
    TOO_LARGE = "too_large"
    """The body exceeded maxResponseBytes; reading stopped there."""
    NOT_HTML = "not_html"
    """A successful response that is not HTML: recorded, never parsed."""
    UNDECODABLE = "undecodable"
    """HTML whose bytes could not be decoded as text."""
    BLOCKED = "blocked"
    """The address is one the crawler refuses to connect to (SSRF guard)."""
    ROBOTS = "robots"
    """robots.txt disallows the URL, or was unavailable (5xx) so everything is."""
    REDIRECT_LOOP = "redirect_loop"
    """A redirect chain came back to a URL it had already visited."""
    TOO_MANY_REDIRECTS = "too_many_redirects"
    """A redirect chain was longer than the limit."""
    OUT_OF_SCOPE = "out_of_scope"
    """A redirect led outside the allowed domains or patterns."""
    INVALID_URL = "invalid_url"
    """The URL (a seed or a redirect target) is not a usable http(s) URL."""
    PARSE = "parse"
    """The HTML parser failed on the document."""


@attrs.frozen
class CrawlSpec:
    """What to crawl and within which bounds; build with `create` or `from_spec`."""

    seeds: tuple[str, ...]
    """Start URLs as given; each is canonicalised (or reported invalid) by the crawl."""
    max_depth: int
    """Link hops from a seed to follow; 0 fetches the seeds only."""
    max_pages: int
    """Most URLs fetched in one crawl (seeds included)."""
    concurrency: int
    """Requests in flight at once, over all hosts."""
    per_host_concurrency: int
    """Requests in flight at once to one host[:port]."""
    request_timeout: float
    """Seconds for one request: connect, headers and body."""
    total_timeout: float | None
    """Seconds for the whole crawl; None for no limit."""
    allowed_domains: tuple[str, ...]
    """Hosts (and their subdomains) links are followed to; empty for any host."""
    include: tuple[re.Pattern[str], ...]
    """If any, a URL is followed only if one of these matches it (re.search)."""
    exclude: tuple[re.Pattern[str], ...]
    """A URL matching any of these is not followed."""
    respect_robots: bool
    """Obey robots.txt (Disallow and Crawl-delay)."""
    user_agent: str
    """User-Agent header, and the name robots.txt rules are matched against."""
    max_response_bytes: int
    """Stop reading a body past this many bytes and record the URL as too large."""
    max_redirects: int
    """Redirect hops followed from one URL."""
    max_retries: int
    """Extra attempts after a 429, a 503 or a reset connection."""
    retry_backoff: float
    """Seconds before the first retry; doubles with each attempt."""
    max_retry_delay: float
    """Upper bound on any retry wait, Retry-After included."""

    @classmethod
    def create(
        cls,
        *,
        seeds: Iterable[str],
        max_depth: int = 0,
        max_pages: int = 10_000,
        concurrency: int = 8,
        per_host_concurrency: int = 2,
        request_timeout: float = 10.0,
        total_timeout: float | None = None,
        allowed_domains: Iterable[str] = (),
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        respect_robots: bool = True,
        user_agent: str = DEFAULT_USER_AGENT,
        max_response_bytes: int = 5 * 1024 * 1024,
        max_redirects: int = 5,
        max_retries: int = 2,
        retry_backoff: float = 1.0,
        max_retry_delay: float = 30.0,
    ) -> CrawlSpec:
        """Validate and build; raises ValueError naming the first bad setting."""
        _check(max_depth >= 0, "maxDepth must be >= 0")
        _check(max_pages >= 1, "maxPages must be >= 1")
        _check(concurrency >= 1, "concurrency must be >= 1")
        _check(per_host_concurrency >= 1, "perHostConcurrency must be >= 1")
        _check(request_timeout > 0, "the request timeout must be > 0")
        _check(total_timeout is None or total_timeout > 0, "the total timeout must be > 0")
        _check(max_response_bytes >= 1, "maxResponseBytes must be >= 1")
        _check(max_redirects >= 0, "maxRedirects must be >= 0")
        _check(max_retries >= 0, "maxRetries must be >= 0")
        _check(retry_backoff >= 0 and max_retry_delay >= 0, "retry delays must be >= 0")
        _check(bool(user_agent.strip()), "userAgent must not be empty")
        return cls(
            seeds=tuple(seeds),
            max_depth=max_depth,
            max_pages=max_pages,
            concurrency=concurrency,
            per_host_concurrency=per_host_concurrency,
            request_timeout=request_timeout,
            total_timeout=total_timeout,
            allowed_domains=tuple(_domain(d) for d in allowed_domains),
            include=tuple(_pattern(p, "include") for p in include),
            exclude=tuple(_pattern(p, "exclude") for p in exclude),
            respect_robots=respect_robots,
            user_agent=user_agent.strip(),
            max_response_bytes=max_response_bytes,
            max_redirects=max_redirects,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            max_retry_delay=max_retry_delay,
        )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, seeds: Iterable[str] | None = None) -> CrawlSpec:
        """From a CrawlJob's camelCase spec; `seeds` overrides `urls` (e.g. from urlsFrom)."""
        defaults = cls.create(seeds=())
        return cls.create(
            seeds=seeds if seeds is not None else spec.get("urls", ()),
            max_depth=int(spec.get("maxDepth", defaults.max_depth)),
            max_pages=int(spec.get("maxPages", defaults.max_pages)),
            concurrency=int(spec.get("concurrency", defaults.concurrency)),
            per_host_concurrency=int(spec.get("perHostConcurrency", defaults.per_host_concurrency)),
            request_timeout=float(spec.get("requestTimeoutSeconds", defaults.request_timeout)),
            total_timeout=(
                float(spec["totalTimeoutSeconds"])
                if spec.get("totalTimeoutSeconds") is not None
                else None
            ),
            allowed_domains=spec.get("allowedDomains", ()),
            include=spec.get("include", ()),
            exclude=spec.get("exclude", ()),
            respect_robots=bool(spec.get("respectRobotsTxt", True)),
            user_agent=str(spec.get("userAgent") or defaults.user_agent),
            max_response_bytes=int(spec.get("maxResponseBytes", defaults.max_response_bytes)),
            max_redirects=int(spec.get("maxRedirects", defaults.max_redirects)),
            max_retries=int(spec.get("maxRetries", defaults.max_retries)),
        )

    def follows(self, url: str) -> bool:
        """Whether a canonical URL is within the allowed domains and patterns."""
        if self.allowed_domains:
            host = urls.host_of(url)
            if not any(host == d or host.endswith(f".{d}") for d in self.allowed_domains):
                return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)


@attrs.frozen
class FetchResult:
    """A response: status and the headers the engine needs, and the body if wanted."""

    url: str
    """The URL requested (one hop: redirects are the engine's business)."""
    status: int
    """HTTP status code."""
    content_type: str | None = None
    """Media type, lower case, without parameters."""
    charset: str | None = None
    """The charset parameter of Content-Type, if any."""
    location: str | None = None
    """The Location header, for redirects."""
    retry_after: str | None = None
    """The Retry-After header, for 429 and 503."""
    body: bytes | None = None
    """The body, when the engine asked for it; never more than the byte cap."""


@attrs.frozen
class FetchFailure:
    """A request that produced no usable response."""

    kind: ErrorKind
    """What went wrong."""
    message: str
    """One line for a human."""
    retryable: bool = False
    """Worth another attempt later (a reset or dropped connection)."""


@attrs.frozen
class PageResult:
    """The outcome for one crawled URL, success or failure."""

    url: str
    """The canonical URL that was scheduled."""
    depth: int
    """Link hops from the nearest seed."""
    final_url: str
    """Where redirects ended (the URL itself when there were none)."""
    status: int | None = None
    """The last HTTP status seen, if any response came."""
    error: ErrorKind | None = None
    """None for a page that was fetched and parsed."""
    message: str = ""
    """Detail for a failure, or a note (e.g. a charset fallback)."""
    content_type: str | None = None
    """Media type of the final response."""
    size: int = 0
    """Body bytes read."""
    links: int = 0
    """Distinct links found on the page."""
    attempts: int = 1
    """Tries it took (retries included)."""
    elapsed: float = 0.0
    """Seconds from the first request to the outcome, retry waits included."""

    @property
    def ok(self) -> bool:
        """Fetched and parsed."""
        return self.error is None


@attrs.frozen
class Edge:
    """A link from a fetched page to a URL it names."""

    source: str
    """The page's canonical (final) URL."""
    target: str
    """The canonical URL it links to."""


class EdgeList(Sequence[Edge]):
    """A page's edges as one object: its URL and a tuple of target URLs.

    A large page has tens of thousands of links; holding them as one tuple of
    strings instead of as many Edge objects keeps them out of the cyclic
    garbage collector, whose full passes would otherwise stall the event loop.
    Edge objects are made on access.
    """

    __slots__ = ("source", "targets")

    def __init__(self, source: str, targets: tuple[str, ...]) -> None:
        self.source = source
        """The page's canonical (final) URL."""
        self.targets = targets
        """Distinct canonical link targets, in document order."""

    def __len__(self) -> int:
        return len(self.targets)

    @overload
    def __getitem__(self, index: int) -> Edge: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Edge]: ...
    def __getitem__(self, index: int | slice) -> Edge | Sequence[Edge]:
        if isinstance(index, slice):
            return EdgeList(self.source, self.targets[index])
        return Edge(source=self.source, target=self.targets[index])

    def __iter__(self) -> Iterator[Edge]:
        source = self.source
        return (Edge(source=source, target=t) for t in self.targets)

    def __repr__(self) -> str:
        return f"EdgeList({self.source!r}, {len(self.targets)} targets)"


@attrs.frozen
class Progress:
    """Where the crawl stands, handed to the sink with each page."""

    done: int
    """URLs with an outcome."""
    scheduled: int
    """URLs admitted so far (done + queued + in flight + waiting to retry)."""
    failed: int
    """URLs that failed."""
    elapsed: float
    """Seconds since the crawl started."""


@attrs.frozen
class CrawlStats:
    """The summary of a finished (or stopped) crawl."""

    pages_ok: int
    """Pages fetched and parsed."""
    pages_failed: int
    """URLs recorded with an error."""
    failures: Mapping[str, int]
    """Failed URLs by ErrorKind value."""
    edges: int
    """Unique (source, target) links recorded."""
    unique_urls: int
    """Distinct canonical URLs met: seeds, fetched pages and link targets."""
    bytes: int
    """Body bytes read."""
    elapsed: float
    """Seconds the crawl ran."""
    timed_out: bool
    """The total timeout stopped the crawl before the frontier was exhausted."""

    @property
    def pages_per_second(self) -> float:
        """Outcomes (ok or failed) per second of crawl."""
        done = self.pages_ok + self.pages_failed
        return done / self.elapsed if self.elapsed > 0 else 0.0


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _domain(domain: str) -> str:
    cleaned = domain.strip().lower().rstrip(".")
    if cleaned.startswith("*."):
        cleaned = cleaned[2:]
    canonical = urls.canonicalize(f"http://{cleaned}/")
    if not cleaned or canonical is None:
        raise ValueError(f"allowedDomains: {domain!r} is not a host name")
    return urls.host_of(canonical)


def _pattern(pattern: str, field: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{field}: {pattern!r} is not a valid regular expression: {exc}") from exc
