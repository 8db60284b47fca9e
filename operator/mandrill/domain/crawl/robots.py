"""robots.txt policy for one origin, after RFC 9309.

Parsing is Protego's (the parser Scrapy uses): it follows RFC 9309 longest-
match precedence with Allow, `*` and `$` wildcards, and reads Crawl-delay,
which the stdlib's urllib.robotparser matches only by prefix and in file
order. What to do when robots.txt cannot be read is this module's rule, from
the RFC: a 4xx means no rules (allow all), a 5xx means disallow all, and a
robots.txt too large to read is treated as absent.
"""

from __future__ import annotations

import attrs
from protego import Protego

ROBOTS_MAX_BYTES = 512 * 1024
"""RFC 9309 asks crawlers to read at least 500 KiB."""
MAX_CRAWL_DELAY = 60.0
"""A Crawl-delay above this is clamped, so one host cannot park the crawl for hours."""


@attrs.frozen
class RobotsPolicy:
    """Whether a user agent may fetch a URL of this origin, and how often."""

    rules: Protego | None
    """The parsed file; None when there are no rules."""
    disallow_all: bool = False
    """robots.txt was unavailable (5xx), so nothing may be fetched."""
    reason: str = ""
    """Why everything is disallowed, for the page's error message."""

    @classmethod
    def allow_all(cls) -> RobotsPolicy:
        """No robots.txt (4xx, or not asked to obey it)."""
        return cls(rules=None)

    @classmethod
    def unavailable(cls, reason: str) -> RobotsPolicy:
        """robots.txt could not be fetched for a server-side reason: disallow all."""
        return cls(rules=None, disallow_all=True, reason=reason)

    @classmethod
    def parse(cls, text: str) -> RobotsPolicy:
        """Rules from the text of a robots.txt."""
        return cls(rules=Protego.parse(text))

    def allows(self, url: str, *, user_agent: str) -> bool:
        """Whether `user_agent` may fetch `url`."""
        if self.disallow_all:
            return False
        return self.rules is None or self.rules.can_fetch(url, user_agent)

    def crawl_delay(self, *, user_agent: str) -> float:
        """Seconds between requests to this host; 0 when robots.txt sets none."""
        if self.rules is None:
            return 0.0
        delay = self.rules.crawl_delay(user_agent)
        if delay is None or delay <= 0:
            return 0.0
        return min(float(delay), MAX_CRAWL_DELAY)
