"""The one timestamp format of everything mandrill writes: RFC 3339, UTC, microseconds.

Status fields, conditions, journal rows and crawl records all use it, so a
reader never has to guess the precision, and two moments a few milliseconds
apart (a request's start and its acknowledgement) stay distinct. The API
server accepts fractional seconds wherever a schema says `format: date-time`.
"""

from __future__ import annotations

import datetime


def format(moment: datetime.datetime) -> str:
    """`2025-03-01T12:00:00.000000Z`; a naive moment is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str | None) -> datetime.datetime | None:
    """Any RFC 3339 timestamp (with or without fractions, Z or an offset); None for none."""
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
