"""Cron expressions in an IANA time zone: when the runs of a schedule fall.

The arithmetic is cronsim's (https://github.com/cuu508/cronsim), chosen over
croniter because it works on `zoneinfo` directly and follows Debian cron
through DST changes, which is what an operator restarting a fleet wants:

- **Spring forward.** A run whose local time does not exist that day (02:30
  in Europe/Berlin on the last Sunday of March) happens once, right after
  the gap (03:00 local).
- **Fall back.** A run whose local time happens twice (02:30 on the last
  Sunday of October) happens once, at the first of the two. croniter 7 runs
  it twice, an hour apart: two fleet restarts in one night.

Jobs that run more often than hourly (`*/15 * * * *`) are scheduled by the
clock, as Debian cron does. We accept exactly five fields (cronsim would also
take a sixth, for seconds) and the usual macros, which we spell out here
(cronsim has none). Every moment that comes out of this module is aware; the
callers compare them in UTC: Python compares two times of the *same* zone by
their wall clocks, fold ignored, so the two 02:30s of a fall-back night
would be equal.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Iterator

import attrs
import cronsim

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The macros of Vixie cron, except @reboot (a schedule has no boot)."""

_ONE_SECOND = datetime.timedelta(seconds=1)


def utc(moment: datetime.datetime) -> datetime.datetime:
    """`moment` in UTC, for comparing (see the module docstring)."""
    return moment.astimezone(datetime.UTC)


class InvalidCron(ValueError):
    """The expression or the zone cannot be used; the message says which and why."""


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; InvalidCron if the tz database has no such zone."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidCron(f"timeZone {name!r} is not an IANA time zone name") from None


@attrs.frozen
class Cron:
    """A parsed five-field expression (or macro) in a zone."""

    expression: str
    """As the user wrote it, for messages."""
    fields: str
    """Five fields, macros spelled out."""
    tz: zoneinfo.ZoneInfo

    @classmethod
    def parse(cls, expression: str, time_zone: str = "UTC") -> Cron:
        """Check the expression and the zone; InvalidCron with a one-line reason if bad."""
        text = " ".join(expression.split())
        fields = MACROS.get(text.lower(), text)
        if fields.startswith("@"):
            known = ", ".join(MACROS)
            raise InvalidCron(f"schedule {expression!r}: unknown macro (known: {known})")
        if len(fields.split()) != 5:
            raise InvalidCron(
                f"schedule {expression!r}: needs five fields (minute hour day month weekday)"
            )
        tz = zone(time_zone)
        try:
            cronsim.CronSim(fields, datetime.datetime(2000, 1, 1, tzinfo=tz))
        except cronsim.CronSimError as e:
            raise InvalidCron(f"schedule {expression!r}: {e}") from None
        return cls(expression=expression, fields=fields, tz=tz)

    def after(self, moment: datetime.datetime) -> Iterator[datetime.datetime]:
        """The runs strictly after `moment`, in order, as aware times in the zone."""
        start = moment.astimezone(self.tz)
        # cronsim drops microseconds and yields strictly later matches.
        it = cronsim.CronSim(self.fields, start)
        while True:
            try:
                run = next(it)
            except StopIteration:  # nothing within 50 years (e.g. 30 February)
                return
            if utc(run) > utc(moment):
                yield run

    def next_after(self, moment: datetime.datetime) -> datetime.datetime | None:
        return next(self.after(moment), None)

    def latest_at_or_before(self, moment: datetime.datetime) -> datetime.datetime | None:
        """The last run at or before `moment` (within cronsim's 50 years), or None."""
        # Reverse iteration yields strictly earlier matches of the truncated
        # second; one second later makes `moment` itself count.
        start = moment.astimezone(self.tz).replace(microsecond=0) + _ONE_SECOND
        try:
            latest = next(cronsim.CronSim(self.fields, start, reverse=True))
        except StopIteration:
            return None
        # cronsim reverses on the wall clock: inside a fall-back's repeated hour it
        # can land a day early. Walking forward from there is exact (and mostly
        # one step).
        for run in self.after(latest):
            if utc(run) > utc(moment):
                break
            latest = run
        return latest
