"""When runs may start: weekly windows and dated exclusions, in the schedule's zone.

A run is *allowed* at a moment when that moment, read as a local time in the
schedule's zone, lies inside one of the windows (or there are no windows)
and inside none of the exclusions. Both are judged on the local wall clock,
so "Sunday 02:00-05:00 Europe/Berlin" means what a person in Berlin means,
summer and winter.

- A window opens on each of its `days` at `start` and closes at `end`. An
  `end` at or before `start` closes the next day: Friday 22:00-04:00 holds
  from Friday 22:00 until Saturday 04:00. `days` names the day a window
  opens.
- An exclusion is a range of whole days, both ends included: `2026-12-24`
  to `2027-01-02` once, or `12-18` to `12-31` every year. A yearly range
  whose end comes before its start crosses the year end: `12-20` to
  `01-06` covers Christmas and New Year each winter.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs


class InvalidWindow(ValueError):
    """A window or an exclusion cannot be read; the message names it."""


class Weekday(enum.IntEnum):
    """datetime.weekday() numbering; the names are the CRD's."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6

    @classmethod
    def named(cls, name: str) -> Weekday:
        try:
            return cls[name[:3].upper()]
        except KeyError:
            raise InvalidWindow(f"{name!r} is not a weekday (Mon ... Sun)") from None


ALL_DAYS = frozenset(Weekday)
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_YEARLY = re.compile(r"(\d{2})-(\d{2})")


def parse_clock(text: str, what: str) -> datetime.time:
    """ "HH:MM", 24-hour; "24:00" is not a time (use 00:00 as the end of a day)."""
    m = _CLOCK.fullmatch(text)
    if m is None:
        raise InvalidWindow(f"{what} {text!r} is not a time like 03:00 (24-hour HH:MM)")
    return datetime.time(int(m[1]), int(m[2]))


@attrs.frozen
class Window:
    """Runs may start while a window is open."""

    days: frozenset[Weekday]
    """The days the window opens on."""
    start: datetime.time
    end: datetime.time
    """At or before `start`: the window closes on the next day."""

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> Window:
        days = frozenset(Weekday.named(d) for d in raw.get("days") or ()) or ALL_DAYS
        start = parse_clock(str(raw.get("start", "")), "window start")
        end = parse_clock(str(raw.get("end", "")), "window end")
        if start == end:
            raise InvalidWindow(f"window {start:%H:%M}-{end:%H:%M} is empty: start equals end")
        return cls(days=days, start=start, end=end)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def contains(self, local: datetime.datetime) -> bool:
        """Whether the window is open at this local wall-clock time."""
        clock, day = local.time().replace(tzinfo=None), Weekday(local.weekday())
        if not self.crosses_midnight:
            return day in self.days and self.start <= clock < self.end
        yesterday = Weekday((local.weekday() - 1) % 7)
        return (day in self.days and clock >= self.start) or (
            yesterday in self.days and clock < self.end
        )

    def describe(self) -> str:
        days = ",".join(d.name.title() for d in sorted(self.days))
        days = "every day" if self.days == ALL_DAYS else days
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}"


@attrs.frozen
class Exclusion:
    """Whole days on which no run starts: once (with years) or every year (MM-DD)."""

    start: tuple[int, int, int]
    """(year, month, day); year 0 for a yearly range."""
    end: tuple[int, int, int]
    reason: str = ""

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> Exclusion:
        start_text, end_text = str(raw.get("start", "")), str(raw.get("end", raw.get("start", "")))
        start, end = _day(start_text), _day(end_text)
        if (start[0] == 0) != (end[0] == 0):
            raise InvalidWindow(
                f"exclusion {start_text}..{end_text}: give both ends as YYYY-MM-DD or both as MM-DD"
            )
        if start[0] != 0 and end < start:
            raise InvalidWindow(f"exclusion {start_text}..{end_text} ends before it starts")
        return cls(start=start, end=end, reason=str(raw.get("reason", "")))

    @property
    def yearly(self) -> bool:
        return self.start[0] == 0

    def contains(self, local: datetime.datetime) -> bool:
        if not self.yearly:
            return self.start <= (local.year, local.month, local.day) <= self.end
        today = (0, local.month, local.day)
        if self.start <= self.end:
            return self.start <= today <= self.end
        return today >= self.start or today <= self.end  # crosses the year end

    def describe(self) -> str:
        def text(d: tuple[int, int, int]) -> str:
            return f"{d[1]:02d}-{d[2]:02d}" if d[0] == 0 else f"{d[0]:04d}-{d[1]:02d}-{d[2]:02d}"

        span = text(self.start)
        if self.end != self.start:
            span += f"..{text(self.end)}"
        return f"{span} ({self.reason})" if self.reason else span


def _day(text: str) -> tuple[int, int, int]:
    """A checked date: "2026-12-24" -> (2026, 12, 24); "12-24" -> (0, 12, 24)."""
    if m := _DATE.fullmatch(text):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif m := _YEARLY.fullmatch(text):
        year, month, day = 0, int(m[1]), int(m[2])
    else:
        raise InvalidWindow(f"exclusion date {text!r} is not YYYY-MM-DD or MM-DD")
    try:
        datetime.date(year or 2000, month, day)  # 2000 is a leap year: 02-29 is a date
    except ValueError:
        raise InvalidWindow(f"exclusion date {text!r} is not a date") from None
    return (year, month, day)


@attrs.frozen
class Verdict:
    """Whether a run may start at a moment, and if not, why (for Events and the CLI)."""

    allowed: bool
    reason: str = ""
    """"Window" or "Exclusion" when not allowed."""
    message: str = ""


def judge(
    local: datetime.datetime, windows: Sequence[Window], exclusions: Sequence[Exclusion]
) -> Verdict:
    """The verdict for a start at `local` (an aware time in the schedule's zone)."""
    for e in exclusions:
        if e.contains(local):
            return Verdict(False, "Exclusion", f"{local:%Y-%m-%d} is excluded: {e.describe()}")
    if windows and not any(w.contains(local) for w in windows):
        allowed = "; ".join(w.describe() for w in windows)
        return Verdict(False, "Window", f"{local:%a %H:%M} is outside the windows ({allowed})")
    return Verdict(True)
