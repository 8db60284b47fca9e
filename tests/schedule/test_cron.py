"""Cron expressions in IANA zones: macros, five fields only, bad zones, and DST.

The DST cases are the point: in Europe/Berlin and America/New_York, a daily
run at a local time that a spring-forward skips happens once, right after
the gap; one at a local time a fall-back repeats happens once, at the first
of the two; an every-30-minutes schedule keeps its pace through both.
"""

from __future__ import annotations

import datetime
import itertools
import zoneinfo

import pytest

from mandrill.domain.schedule.cron import Cron, InvalidCron

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
UTC = datetime.UTC


def at(tz: datetime.tzinfo, *args: int, fold: int = 0) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[misc]


def runs(cron: Cron, after: datetime.datetime, n: int) -> list[datetime.datetime]:
    return list(itertools.islice(cron.after(after), n))


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
    ],
)
def test_macros_are_spelled_out(macro: str, fields: str) -> None:
    assert Cron.parse(macro).fields == fields


def test_weekly_sunday_three_in_berlin() -> None:
    cron = Cron.parse("0 3 * * SUN", "Europe/Berlin")

    got = runs(cron, at(UTC, 2026, 12, 1), 3)

    assert [r.isoformat() for r in got] == [
        "2026-12-06T03:00:00+01:00",
        "2026-12-13T03:00:00+01:00",
        "2026-12-20T03:00:00+01:00",
    ]


@pytest.mark.parametrize(
    ("expression", "zone", "words"),
    [
        ("0 3 * *", "UTC", "five fields"),
        ("0 0 3 * * *", "UTC", "five fields"),  # cronsim's seconds field: not ours
        ("61 * * * *", "UTC", "Bad minute"),
        ("0 25 * * *", "UTC", "Bad hour"),
        ("0 0 30 2 *", "UTC", "Bad day-of-month"),
        ("@reboot", "UTC", "unknown macro"),
        ("", "UTC", "five fields"),
        ("0 3 * * *", "Europe/Atlantis", "not an IANA time zone"),
        ("0 3 * * *", "../etc/passwd", "not an IANA time zone"),
        ("0 3 * * *", "", "not an IANA time zone"),
    ],
)
def test_invalid_expression_or_zone_says_what(expression: str, zone: str, words: str) -> None:
    with pytest.raises(InvalidCron, match=words):
        Cron.parse(expression, zone)


@pytest.mark.parametrize(
    ("tz", "expression", "day", "expected"),
    [
        # Berlin springs forward on 2026-03-29 at 02:00 -> 03:00.
        (
            BERLIN,
            "30 2 * * *",
            (2026, 3, 28),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        # New York springs forward on 2026-03-08 at 02:00 -> 03:00.
        (
            NEW_YORK,
            "30 2 * * *",
            (2026, 3, 7),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
    ],
)
def test_run_at_a_skipped_local_time_happens_once_right_after_the_gap(
    tz: datetime.tzinfo, expression: str, day: tuple[int, int, int], expected: list[str]
) -> None:
    cron = Cron.parse(expression, str(tz))

    got = runs(cron, at(tz, *day, 12), 2)

    assert [r.isoformat() for r in got] == expected


@pytest.mark.parametrize(
    ("tz", "expression", "day", "expected"),
    [
        # Berlin falls back on 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice.
        (
            BERLIN,
            "30 2 * * *",
            (2026, 10, 24),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        # New York falls back on 2026-11-01 at 02:00 -> 01:00: 01:30 happens twice.
        (
            NEW_YORK,
            "30 1 * * *",
            (2026, 10, 31),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
    ],
)
def test_run_at_a_repeated_local_time_happens_once(
    tz: datetime.tzinfo, expression: str, day: tuple[int, int, int], expected: list[str]
) -> None:
    cron = Cron.parse(expression, str(tz))

    got = runs(cron, at(tz, *day, 12), 2)

    assert [r.isoformat() for r in got] == expected


def test_resuming_inside_the_repeated_hour_does_not_run_it_again() -> None:
    """An operator that wakes at the second 02:15 (the run at the first 02:30 is an hour
    ago) must not find a 02:30 still ahead that night."""
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    second_0215 = at(BERLIN, 2026, 10, 25, 2, 15, fold=1)

    assert cron.next_after(second_0215) == at(BERLIN, 2026, 10, 26, 2, 30)
    latest = cron.latest_at_or_before(second_0215)
    assert latest is not None
    assert latest.astimezone(UTC) == datetime.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_frequent_schedule_keeps_its_pace_through_fall_back() -> None:
    cron = Cron.parse("*/30 * * * *", "Europe/Berlin")

    got = runs(cron, at(UTC, 2026, 10, 24, 23, 45), 5)  # 01:45 CEST

    gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(got)}
    assert gaps == {datetime.timedelta(minutes=30)}
    assert len({r.astimezone(UTC) for r in got}) == 5


def test_latest_at_or_before_counts_the_moment_itself() -> None:
    cron = Cron.parse("0 3 * * *", "Europe/Berlin")
    three = at(BERLIN, 2026, 12, 6, 3, 0)

    assert cron.latest_at_or_before(three) == three
    assert cron.latest_at_or_before(three - datetime.timedelta(seconds=1)) == at(
        BERLIN, 2026, 12, 5, 3, 0
    )
    assert cron.next_after(three) == at(BERLIN, 2026, 12, 7, 3, 0)
