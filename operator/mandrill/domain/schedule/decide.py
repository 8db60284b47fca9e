"""What a RestartSchedule should do now: a pure function of (spec, what status remembers,
the runs that exist, now).

The controller calls `decide` whenever it wakes (at a run's time, on a
change, after a restart) and carries the decision out; nothing here sleeps
or reads a clock, so every rule is tested on a fake one.

- **Only the latest due run counts.** Runs due since the last one handled
  (`lastHandledScheduleTime`, or the schedule's creation) are looked at
  together: the latest is decided on, the earlier ones (due while the
  operator was down) are counted as missed. Never a burst of catch-up
  runs, and never a cliff: however many were missed, the count is kept
  and scheduling goes on (a Kubernetes CronJob stops after 100).
- **A run that exists is done.** Each run's RestartRequest is named from the
  schedule and the run's time (`run_name`), so creating it twice is an
  AlreadyExists, and a run found among the schedule's requests is taken as
  created, whatever else would be decided now. Two operators, or one that
  crashed between creating a run and recording it, never make two.
- **Then, in order:** a run whose time falls outside the windows or inside
  an exclusion is skipped; one that can no longer start within
  `startingDeadlineSeconds`, or only outside a window, is missed; with
  `Forbid`, one that would overlap an unacknowledged run is skipped;
  otherwise it is created. While suspended nothing is created, and what
  falls due then is neither run nor counted as missed.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence

import attrs

from mandrill.domain.schedule.cron import utc
from mandrill.domain.schedule.models import ConcurrencyPolicy, Run, RunPhase, ScheduleSpec
from mandrill.domain.schedule.windows import Verdict, judge

MAX_COUNTED = 100_000
"""Missed runs counted at one wake-up at most (a per-minute schedule over two months)."""
NAME_LIMIT = 253
"""A RestartRequest's name is a DNS subdomain."""
_STAMP = "%Y%m%d%H%M"


class Action(enum.StrEnum):
    CREATE = "Create"
    EXISTS = "Exists"
    """Created before (by this or another instance): nothing to do but record it."""
    SKIP = "Skip"
    MISS = "Miss"
    SUSPENDED = "Suspended"


@attrs.frozen
class Due:
    """The run decided on now."""

    scheduled: datetime.datetime
    action: Action
    reason: str = ""
    """Why it is skipped or missed: Window, Exclusion, Forbid or Deadline."""
    message: str = ""


@attrs.frozen
class Decision:
    due: Due | None
    """None: nothing fell due since the last run handled."""
    missed_earlier: int = 0
    """Runs due before `due` that were never started (counted as missed)."""
    next_run: datetime.datetime | None = None
    """The schedule's next time after now, in its zone."""
    next_verdict: Verdict | None = None
    """Whether the windows and exclusions will let `next_run` start."""

    @property
    def handled_through(self) -> datetime.datetime | None:
        return self.due.scheduled if self.due is not None else None

    @property
    def missed(self) -> int:
        """Runs this decision adds to the missed count."""
        own = 1 if self.due is not None and self.due.action is Action.MISS else 0
        return self.missed_earlier + own


def run_name(schedule: str, scheduled: datetime.datetime) -> str:
    """The RestartRequest name of the run at `scheduled`: `<schedule>-<UTC yyyymmddhhmm>`.

    UTC, so the two 02:30s of a fall-back night are two names."""
    stamp = scheduled.astimezone(datetime.UTC).strftime(_STAMP)
    return f"{schedule[: NAME_LIMIT - len(stamp) - 1]}-{stamp}"


def decide(
    spec: ScheduleSpec,
    *,
    now: datetime.datetime,
    created: datetime.datetime | None,
    last_handled: datetime.datetime | None,
    runs: Sequence[Run],
) -> Decision:
    """See the module docstring."""
    cron = spec.cron
    next_run = cron.next_after(now)
    upcoming = judge(next_run, spec.windows, spec.exclusions) if next_run is not None else None
    since = max((t for t in (created, last_handled) if t is not None), default=None)
    latest = cron.latest_at_or_before(now)
    if latest is None or (since is not None and utc(latest) <= utc(since)):
        return Decision(due=None, next_run=next_run, next_verdict=upcoming)
    earlier = 0 if since is None else _count_between(spec, since, latest)
    if spec.suspend:
        return Decision(
            due=Due(latest, Action.SUSPENDED, "Suspended", "the schedule is suspended"),
            next_run=next_run,
            next_verdict=upcoming,
        )
    due = _judge_latest(spec, latest, now=now, runs=runs)
    return Decision(due=due, missed_earlier=earlier, next_run=next_run, next_verdict=upcoming)


def _judge_latest(
    spec: ScheduleSpec, latest: datetime.datetime, *, now: datetime.datetime, runs: Sequence[Run]
) -> Due:
    if any(utc(r.scheduled) == utc(latest) for r in runs):
        return Due(latest, Action.EXISTS)
    at_time = judge(latest, spec.windows, spec.exclusions)
    if not at_time.allowed:
        return Due(latest, Action.SKIP, at_time.reason, at_time.message)
    late = utc(now) - utc(latest)
    if spec.starting_deadline is not None and late > spec.starting_deadline:
        seconds = int(spec.starting_deadline.total_seconds())
        return Due(
            latest,
            Action.MISS,
            "Deadline",
            f"found {int(late.total_seconds())}s late, past startingDeadlineSeconds ({seconds})",
        )
    at_start = judge(now.astimezone(spec.cron.tz), spec.windows, spec.exclusions)
    if not at_start.allowed:
        return Due(latest, Action.MISS, at_start.reason, f"found late, by then: {at_start.message}")
    active = [r for r in runs if r.phase is RunPhase.ACTIVE]
    if spec.concurrency is ConcurrencyPolicy.FORBID and active:
        names = ", ".join(sorted(r.name for r in active))
        return Due(
            latest, Action.SKIP, "Forbid", f"concurrencyPolicy Forbid: {names} still running"
        )
    return Due(latest, Action.CREATE)


def _count_between(spec: ScheduleSpec, since: datetime.datetime, latest: datetime.datetime) -> int:
    """Runs strictly between `since` and `latest`, up to MAX_COUNTED."""
    count = 0
    for run in spec.cron.after(since):
        if utc(run) >= utc(latest) or count >= MAX_COUNTED:
            break
        count += 1
    return count


def upcoming(
    spec: ScheduleSpec, *, after: datetime.datetime, count: int
) -> list[tuple[datetime.datetime, Verdict]]:
    """The next `count` runs after `after`, each with whether it would be allowed to start."""
    found: list[tuple[datetime.datetime, Verdict]] = []
    for run in spec.cron.after(after):
        if len(found) >= count:
            break
        found.append((run, judge(run, spec.windows, spec.exclusions)))
    return found


def to_prune(runs: Sequence[Run], *, successful: int, failed: int) -> list[Run]:
    """The finished runs beyond the history limits, oldest first; active runs are kept."""
    doomed: list[Run] = []
    for phase, keep in ((RunPhase.SUCCEEDED, successful), (RunPhase.FAILED, failed)):
        finished = sorted((r for r in runs if r.phase is phase), key=lambda r: utc(r.scheduled))
        doomed += finished[: max(0, len(finished) - keep)]
    return sorted(doomed, key=lambda r: utc(r.scheduled))
