"""A crawl's frontier as the store keeps it, so a crawl can resume after SIGKILL.

What the engine tells the store (`FrontierLog`), and what a resumed crawl is
given back (`Resumption`). The rules, all of them here or in the engine:

- Every admitted URL is one frontier row, written in the same batch as the
  outcome of the page that found it (or, for a seed, before any outcome).
  The rows are both the frontier and the seen set: a URL is in a crawl once.
- A row stays *pending* until its outcome is stored, and becomes *done* in
  the very transaction that stores the outcome. There is no "taken" state
  for a single process: a URL dequeued but without an outcome at kill time
  is pending in the store, so it is fetched again on resume, and a URL whose
  outcome is stored is never fetched again. (Workers sharing a frontier add
  a lease on pending rows, `leased_by` / `lease_until`, which a dead
  worker's successor may take over: the same states, one more column.)
- Redirect hops are seen too (an *alias* row), written with the outcome of
  the URL that redirected, never before it: if the crawl dies mid-chain, the
  chain is followed again from its start.
- A retry writes the URL's next attempt number, so a resumed crawl does not
  grant a URL its retries again. The backoff wait itself is not kept: a
  pending retry is queued at once on resume.
- robots.txt, once read for an origin, is kept (its text, or how reading it
  failed), so a resumed crawl neither asks for it again nor changes its
  mind; the Crawl-delay follows from it.
- The counters of a resumed crawl start from the stored outcomes (pages ok,
  failed by kind, links, bytes), and the URL budget (`maxPages`) from the
  stored frontier rows, so a resumed crawl stops at exactly `maxPages`.

Because batches commit in order, the store always holds a consistent prefix
of the crawl: each admitted URL either has its outcome or is pending.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Protocol

import attrs

from mandrill.domain.crawl import robots
from mandrill.domain.crawl.models import ErrorKind, FetchFailure


class State(enum.StrEnum):
    """A frontier row's state."""

    PENDING = "pending"
    """Admitted, no outcome stored yet: crawled (again) on resume."""
    DONE = "done"
    """Its outcome is stored: never fetched again."""
    ALIAS = "alias"
    """Reached as a redirect hop: seen, never admitted by itself."""


@attrs.frozen
class RobotsRecord:
    """How robots.txt of one origin was read, in a form the store can keep."""

    origin: str
    rules: str | None = None
    """The robots.txt text, when there was one to obey."""
    unavailable: str | None = None
    """Why everything is disallowed (robots.txt answered 5xx)."""
    failure: ErrorKind | None = None
    """robots.txt could not be fetched at all (DNS, connection, ...)."""
    message: str = ""
    """The failure's message."""

    @classmethod
    def of(
        cls, origin: str, policy: robots.RobotsPolicy | FetchFailure, *, text: str | None
    ) -> RobotsRecord:
        """The record of `policy`, parsed from `text` when it came from a robots.txt."""
        if isinstance(policy, FetchFailure):
            return cls(origin=origin, failure=policy.kind, message=policy.message)
        if policy.disallow_all:
            return cls(origin=origin, unavailable=policy.reason)
        return cls(origin=origin, rules=text if policy.rules is not None else None)

    def policy(self) -> robots.RobotsPolicy | FetchFailure:
        """The policy again, as the crawl that read robots.txt had it."""
        if self.failure is not None:
            return FetchFailure(kind=self.failure, message=self.message)
        if self.unavailable is not None:
            return robots.RobotsPolicy.unavailable(self.unavailable)
        if self.rules is not None:
            return robots.RobotsPolicy.parse(self.rules)
        return robots.RobotsPolicy.allow_all()


@attrs.frozen
class PendingUrl:
    """A URL admitted but without a stored outcome."""

    url: str
    depth: int
    attempt: int = 1
    """The attempt it is on: 2 and up after a retry was scheduled."""


@attrs.frozen
class Counts:
    """The stored outcomes, summed: where a resumed crawl's counters start."""

    pages_ok: int = 0
    failures: Mapping[str, int] = attrs.Factory(dict)
    """Failed URLs by ErrorKind value."""
    edges: int = 0
    bytes: int = 0

    @property
    def outcomes(self) -> int:
        return self.pages_ok + sum(self.failures.values())


@attrs.frozen
class Resumption:
    """Everything a crawl needs to continue where a stored one stopped."""

    pending: tuple[PendingUrl, ...]
    """In the order they were admitted (the queue's order)."""
    seen: frozenset[str]
    """Every canonical URL admitted or reached as a redirect hop."""
    admitted: int
    """Frontier rows that count against maxPages (pending and done)."""
    rejected: int
    """Outcomes of seeds that were not valid URLs (they have no frontier row)."""
    counts: Counts
    linked: frozenset[str] = frozenset()
    """Link targets of the stored pages, for the count of unique URLs."""
    robots: tuple[RobotsRecord, ...] = ()

    @property
    def done(self) -> int:
        """URLs with a stored outcome."""
        return self.counts.outcomes


class FrontierLog(Protocol):
    """Where the engine notes what a resumed crawl must know besides the outcomes.

    Calls only buffer (they are on the crawl's hot path); the store writes
    them in order with the outcomes, in the sink's batches. The outcome of a
    URL (ResultSink.record) is what marks its row done.
    """

    def admitted(self, url: str, *, depth: int, parent: str | None, ordinal: int) -> None:
        """A URL joins the frontier (`ordinal`: 1, 2, ... in admission order)."""
        ...

    def redirected(self, hops: Iterable[str]) -> None:
        """Redirect hops of the URL whose outcome is recorded next."""
        ...

    def retrying(self, url: str, *, attempt: int) -> None:
        """The URL goes back to the queue for attempt `attempt`."""
        ...

    def robots(self, record: RobotsRecord) -> None:
        """robots.txt of an origin was read."""
        ...


class NoLog:
    """The FrontierLog of a crawl that is not resumable (tests, `mandrill crawl`)."""

    def admitted(self, url: str, *, depth: int, parent: str | None, ordinal: int) -> None:
        """Nothing to keep."""

    def redirected(self, hops: Iterable[str]) -> None:
        """Nothing to keep."""

    def retrying(self, url: str, *, attempt: int) -> None:
        """Nothing to keep."""

    def robots(self, record: RobotsRecord) -> None:
        """Nothing to keep."""


NO_LOG = NoLog()
