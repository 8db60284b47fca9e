"""Whether, and how fast, a host may be fetched: per-host slots, Crawl-delay, robots.txt.

Every request of a crawl (pages and robots.txt alike) goes through
`Politeness.fetch`: a per-host semaphore bounds the requests one host sees at
once, and a host whose robots.txt sets Crawl-delay gets its request starts
spaced by that delay, counted from when each request really goes: one that
waited its turn and woke late (a busy loop) pushes the next one back rather
than letting it follow closer. robots.txt is fetched once per origin, under a lock so
concurrent workers do not fetch it twice, and kept for the crawl; what a
failed fetch of it means follows RFC 9309 (see `robots`). What was read is
also told to the frontier log, so a resumed crawl starts with the same
policies (`restore`) instead of asking each origin again. Workers sharing a
frontier hand a host's next allowed start on with the host (`wait_left`,
`hold_off`; see `shared`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

import attrs

from mandrill.domain.crawl import frontier, pages, robots, urls
from mandrill.domain.crawl.models import CrawlSpec, ErrorKind, FetchFailure, FetchResult
from mandrill.domain.crawl.ports import BodyFilter, Fetcher

ROBOTS_MAX_REDIRECTS = 5


class Withdrawn(Exception):
    """A request not made after all: its URL was no longer wanted when its turn came."""


@attrs.define
class _Host:
    slots: asyncio.Semaphore
    delay: float = 0.0
    next_start: float = 0.0
    turn: asyncio.Lock = attrs.Factory(asyncio.Lock)
    """Held by the request waiting for next_start: spaced requests start one at a time."""


@attrs.define
class Politeness:
    """The per-host and per-origin state of one crawl."""

    spec: CrawlSpec
    fetcher: Fetcher
    hosts: dict[str, _Host] = attrs.Factory(dict)
    policies: dict[str, robots.RobotsPolicy | FetchFailure] = attrs.Factory(dict)
    robots_locks: dict[str, asyncio.Lock] = attrs.Factory(dict)
    log: frontier.FrontierLog = frontier.NO_LOG
    clock: Callable[[], float] = time.monotonic
    """Monotonic seconds (a seam for tests, with `sleep`)."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def restore(self, records: Iterable[frontier.RobotsRecord]) -> None:
        """Take the robots.txt policies a stored crawl had read (and their Crawl-delay)."""
        for record in records:
            policy = self.policies[record.origin] = record.policy()
            if isinstance(policy, robots.RobotsPolicy):
                self._apply_delay(record.origin, policy)

    def hold_off(self, authority: str, seconds: float) -> None:
        """No request to `authority` starts in the next `seconds` (a Crawl-delay handed on by
        the worker that held the host before)."""
        if seconds > 0:
            host = self._host(authority)
            host.next_start = max(host.next_start, self.clock() + seconds)

    def wait_left(self, authority: str) -> float:
        """Seconds until the next request to `authority` may start (0 or less: now)."""
        host = self.hosts.get(authority)
        return 0.0 if host is None else host.next_start - self.clock()

    async def refusal(self, url: str) -> pages.Failure | None:
        """Why robots.txt keeps the crawl from `url`; None when it may be fetched."""
        if not self.spec.respect_robots:
            return None
        origin = urls.origin_of(url)
        policy = self.policies.get(origin)
        if policy is None:
            lock = self.robots_locks.setdefault(origin, asyncio.Lock())
            async with lock:
                policy = self.policies.get(origin)
                if policy is None:
                    policy, text = await self._load_robots(origin)
                    self.policies[origin] = policy
                    self.log.robots(frontier.RobotsRecord.of(origin, policy, text=text))
        if isinstance(policy, FetchFailure):
            return pages.Failure(kind=policy.kind, message=f"robots.txt: {policy.message}")
        if not policy.allows(url, user_agent=self.spec.user_agent):
            return pages.Failure(
                kind=ErrorKind.ROBOTS, message=policy.reason or "disallowed by robots.txt"
            )
        return None

    async def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        want_body: BodyFilter,
        still_wanted: Callable[[], bool] | None = None,
    ) -> FetchResult | FetchFailure:
        """One hop through the fetcher, within the host's slots and Crawl-delay.

        `still_wanted` is asked once the slot is ours and the delay over, right
        before the request; Withdrawn if it says no (a shared crawl's lease ran out
        while the URL waited its turn)."""
        host = self._host(urls.authority_of(url))
        async with host.slots:
            await self._take_turn(host)
            if still_wanted is not None and not still_wanted():
                raise Withdrawn(url)
            return await self.fetcher.fetch(url, max_bytes=max_bytes, want_body=want_body)

    async def _take_turn(self, host: _Host) -> None:
        """Wait until the host's next start, then set the one after from now: from when this
        request goes, not from when it was meant to."""
        if host.delay <= 0 and host.next_start <= self.clock():
            return  # no Crawl-delay, no hold-off: requests start as slots allow
        async with host.turn:
            wait = host.next_start - self.clock()
            if wait > 0:
                await self.sleep(wait)
            host.next_start = self.clock() + host.delay

    async def _load_robots(  # noqa: PLR0911 - one return per RFC 9309 case
        self, origin: str
    ) -> tuple[robots.RobotsPolicy | FetchFailure, str | None]:
        """The origin's policy, and the robots.txt text it was parsed from (if any)."""
        url = f"{origin}/robots.txt"
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            outcome = await self.fetch(
                url, max_bytes=robots.ROBOTS_MAX_BYTES, want_body=_wants_success
            )
            if isinstance(outcome, FetchFailure):
                if outcome.kind is ErrorKind.TOO_LARGE:
                    return robots.RobotsPolicy.allow_all(), None
                return outcome, None
            if outcome.status in pages.REDIRECT_STATUSES and outcome.location is not None:
                target = pages.redirect_target(url, outcome.location)
                if target is None:
                    return robots.RobotsPolicy.allow_all(), None
                url = target
                continue
            if 200 <= outcome.status < 300:
                text = (outcome.body or b"").decode("utf-8", errors="replace")
                if len(text) > pages.INLINE_PARSE_BYTES:
                    policy = await asyncio.to_thread(robots.RobotsPolicy.parse, text)
                else:
                    policy = robots.RobotsPolicy.parse(text)
                self._apply_delay(origin, policy)
                return policy, text
            if outcome.status >= 500:
                reason = f"robots.txt unavailable (HTTP {outcome.status}), so all is disallowed"
                return robots.RobotsPolicy.unavailable(reason), None
            return robots.RobotsPolicy.allow_all(), None
        return robots.RobotsPolicy.allow_all(), None

    def _apply_delay(self, origin: str, policy: robots.RobotsPolicy) -> None:
        host = self._host(urls.authority_of(origin + "/"))
        host.delay = policy.crawl_delay(user_agent=self.spec.user_agent)
        host.next_start = self.clock() + host.delay

    def _host(self, authority: str) -> _Host:
        host = self.hosts.get(authority)
        if host is None:
            host = self.hosts[authority] = _Host(
                slots=asyncio.Semaphore(self.spec.per_host_concurrency)
            )
        return host


def _wants_success(status: int, media_type: str | None) -> bool:
    return 200 <= status < 300
