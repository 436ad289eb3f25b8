"""The daily schedule: the day that just closed plus re-run days, after the lag, local time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from tests.assets.conftest import Pipeline


def test_schedule_runs_the_closed_day_and_reruns_the_one_before(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(yeastar={"schedule_lag_minutes": 90, "schedule_rerun_days": 1})
    schedule = pipeline.defs.resolve_schedule_def("hq_daily")
    assert schedule.cron_schedule == "30 1 * * *"
    assert schedule.execution_timezone == pipeline.config.pbxs[0].timezone
    tick = datetime(2026, 6, 28, 1, 30, tzinfo=ZoneInfo(schedule.execution_timezone))
    context = dg.build_schedule_context(
        scheduled_execution_time=tick, repository_def=pipeline.defs.get_repository_def()
    )
    requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert [r.partition_key for r in requests] == ["2026-06-26", "2026-06-27"]
    assert len({r.run_key for r in requests}) == 2


def test_schedule_never_asks_for_days_before_start_date(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(yeastar={"start_date": "2026-06-27", "schedule_rerun_days": 3})
    schedule = pipeline.defs.resolve_schedule_def("hq_daily")
    tick = datetime(2026, 6, 28, 2, 0, tzinfo=ZoneInfo(schedule.execution_timezone))
    context = dg.build_schedule_context(
        scheduled_execution_time=tick, repository_def=pipeline.defs.get_repository_def()
    )
    requests = schedule.evaluate_tick(context)
    assert [r.partition_key for r in requests.run_requests or []] == ["2026-06-27"]
