"""Windows and exclusions on the schedule's wall clock: crossing midnight, crossing a
year end, one-off and yearly dates, and the checks on what a user wrote."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from mandrill.domain.schedule.windows import Exclusion, InvalidWindow, Window, judge

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def local(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


# 2026-12-04 is a Friday.
FRIDAY_NIGHT = Window.from_spec({"days": ["Fri"], "start": "22:00", "end": "04:00"})


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        (local(2026, 12, 4, 21, 59), False),
        (local(2026, 12, 4, 22, 0), True),
        (local(2026, 12, 4, 23, 59), True),
        (local(2026, 12, 5, 0, 0), True),  # Saturday, still Friday's window
        (local(2026, 12, 5, 3, 59), True),
        (local(2026, 12, 5, 4, 0), False),  # the end is not included
        (local(2026, 12, 5, 22, 30), False),  # Saturday night: not a window day
        (local(2026, 12, 4, 2, 0), False),  # Friday early: Thursday's window, none
    ],
)
def test_window_crossing_midnight(moment: datetime.datetime, open_: bool) -> None:
    assert FRIDAY_NIGHT.crosses_midnight
    assert FRIDAY_NIGHT.contains(moment) is open_


def test_window_within_a_day_on_every_day_by_default() -> None:
    w = Window.from_spec({"start": "02:00", "end": "05:00"})

    assert not w.crosses_midnight
    assert all(w.contains(local(2026, 12, d, 3, 0)) for d in range(1, 8))
    assert not w.contains(local(2026, 12, 1, 5, 0))
    assert not w.contains(local(2026, 12, 1, 1, 59))


# "never in December's last two weeks", every year, and one winter's freeze crossing the year end.
LAST_TWO_WEEKS = Exclusion.from_spec({"start": "12-18", "end": "12-31", "reason": "year-end"})
WINTER = Exclusion.from_spec({"start": "12-20", "end": "01-06"})
ONE_OFF = Exclusion.from_spec({"start": "2026-12-28", "end": "2027-01-03"})


@pytest.mark.parametrize(
    ("exclusion", "moment", "excluded"),
    [
        (LAST_TWO_WEEKS, local(2026, 12, 17, 23, 59), False),
        (LAST_TWO_WEEKS, local(2026, 12, 18, 0, 0), True),
        (LAST_TWO_WEEKS, local(2027, 12, 31, 23, 59), True),  # every year
        (LAST_TWO_WEEKS, local(2027, 1, 1, 0, 0), False),
        (WINTER, local(2026, 12, 19, 12, 0), False),
        (WINTER, local(2026, 12, 31, 12, 0), True),
        (WINTER, local(2027, 1, 1, 0, 0), True),  # across the year end
        (WINTER, local(2027, 1, 6, 23, 59), True),
        (WINTER, local(2027, 1, 7, 0, 0), False),
        (WINTER, local(2027, 6, 1, 0, 0), False),
        (ONE_OFF, local(2026, 12, 27, 23, 0), False),
        (ONE_OFF, local(2027, 1, 1, 3, 0), True),
        (ONE_OFF, local(2027, 1, 3, 23, 59), True),
        (ONE_OFF, local(2027, 12, 30, 3, 0), False),  # once, not yearly
    ],
)
def test_exclusions(exclusion: Exclusion, moment: datetime.datetime, excluded: bool) -> None:
    assert exclusion.contains(moment) is excluded


def test_exclusions_are_judged_on_the_local_date() -> None:
    """23:30 UTC on 17 December is already the 18th in Berlin."""
    utc_evening = datetime.datetime(2026, 12, 17, 23, 30, tzinfo=datetime.UTC)

    verdict = judge(utc_evening.astimezone(BERLIN), (), (LAST_TWO_WEEKS,))

    assert not verdict.allowed
    assert verdict.reason == "Exclusion"
    assert "12-18..12-31 (year-end)" in verdict.message


def test_exclusion_wins_over_a_window_and_windows_say_which() -> None:
    sunday = Window.from_spec({"days": ["Sun"], "start": "02:00", "end": "05:00"})
    assert judge(local(2026, 12, 6, 3, 0), (sunday,), (LAST_TWO_WEEKS,)).allowed
    assert judge(local(2026, 12, 20, 3, 0), (sunday,), (LAST_TWO_WEEKS,)).reason == "Exclusion"
    outside = judge(local(2026, 12, 7, 3, 0), (sunday,), ())
    assert outside.reason == "Window"
    assert "Sun 02:00-05:00" in outside.message


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"start": "25:00", "end": "04:00"}, "not a time"),
        ({"start": "3:00", "end": "04:00"}, "not a time"),
        ({"start": "04:00", "end": "04:00"}, "empty"),
        ({"days": ["Caturday"], "start": "01:00", "end": "02:00"}, "not a weekday"),
    ],
)
def test_bad_window(raw: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidWindow, match=words):
        Window.from_spec(raw)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"start": "2026-12-31", "end": "2026-12-01"}, "ends before it starts"),
        ({"start": "12-01", "end": "2026-12-31"}, "both ends"),
        ({"start": "02-30"}, "not a date"),
        ({"start": "Christmas"}, "not YYYY-MM-DD or MM-DD"),
    ],
)
def test_bad_exclusion(raw: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidWindow, match=words):
        Exclusion.from_spec(raw)


def test_february_29_is_a_yearly_date() -> None:
    leap = Exclusion.from_spec({"start": "02-29"})
    assert leap.contains(local(2028, 2, 29, 12, 0))
    assert not leap.contains(local(2027, 3, 1, 12, 0))
