"""The RestartSchedule samples mean what their comments say (crds/samples/; that the API
server accepts every sample is tests/crawljob/test_samples.py's job)."""

from __future__ import annotations

import datetime

import yaml

from mandrill.domain.restart.models import Kind, RestartSpec, Strategy
from mandrill.domain.schedule import decide
from mandrill.domain.schedule.models import ScheduleSpec
from tests.schedule.conftest import REPO

WEEKLY_WEB = REPO / "crds" / "samples" / "restartschedule-weekly-web.yaml"


def test_weekly_web_rolls_tier_web_one_at_a_time_sundays_at_three_in_berlin() -> None:
    body = yaml.safe_load(WEEKLY_WEB.read_text())
    spec = ScheduleSpec.from_spec(body["spec"])
    template = RestartSpec.from_spec(spec.template)

    assert (template.kind, template.strategy) == (Kind.DEPLOYMENT, Strategy.ROLLOUT_RESTART)
    assert template.selector is not None
    assert template.selector.to_query() == "tier=web"
    assert template.max_concurrent == 1
    assert template.wait_for_ready
    runs = decide.upcoming(spec, after=datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC), count=6)
    assert [(t.isoformat(), v.allowed) for t, v in runs] == [
        ("2026-12-06T03:00:00+01:00", True),
        ("2026-12-13T03:00:00+01:00", True),
        ("2026-12-20T03:00:00+01:00", False),  # December's last two weeks
        ("2026-12-27T03:00:00+01:00", False),
        ("2027-01-03T03:00:00+01:00", True),
        ("2027-01-10T03:00:00+01:00", True),
    ]
    summer = decide.upcoming(
        spec, after=datetime.datetime(2027, 7, 1, tzinfo=datetime.UTC), count=1
    )
    assert summer[0][0].isoformat() == "2027-07-04T03:00:00+02:00"  # 03:00 in summer too
