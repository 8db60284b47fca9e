"""What the crawl engine needs from outside: a Fetcher for one hop, a ResultSink for each outcome.

The adapters implement them (aiohttp behind the address guard; the SQLite
store, or the CLI's output); the tests pass in-memory ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mandrill.domain.crawl.models import Edge, FetchFailure, FetchResult, PageResult, Progress

BodyFilter = Callable[[int, str | None], bool]
"""Given (status, media type), whether the engine wants the body read."""


class Fetcher(Protocol):
    """Fetches one URL, one hop: no redirect following, no retries."""

    async def fetch(
        self, url: str, *, max_bytes: int, want_body: BodyFilter
    ) -> FetchResult | FetchFailure:
        """GET `url`; read the body only if `want_body(status, media_type)`.

        A body longer than `max_bytes` is a TOO_LARGE failure. Every network
        failure is returned as a FetchFailure, never raised;
        asyncio.CancelledError is always raised.
        """
        ...


class ResultSink(Protocol):
    """Receives each URL's outcome as soon as it is known."""

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        """Store or show one outcome; `edges` are the page's unique links (empty on failure)."""
        ...
