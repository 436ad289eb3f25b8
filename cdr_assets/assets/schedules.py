"""A daily schedule per PBX: the day that just closed, plus recent days again, after a lag."""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg

from cdr_assets.assets.partitions import PARTITION_FORMAT
from cdr_assets.config import PbxConfigBase


def build_daily_schedule(pbx: PbxConfigBase, job_name: str) -> dg.ScheduleDefinition:
    """Runs at local midnight + `schedule_lag_minutes`, so calls that ended after midnight and
    late CDRs are in; it also re-runs the `schedule_rerun_days` days before, which picks up
    recordings and status changes that arrived late (a re-run replaces, never duplicates).
    One run per day, so each day's checks are tied to its own materialization."""
    hour, minute = divmod(pbx.schedule_lag_minutes, 60)

    @dg.schedule(
        name=f"{pbx.name}_daily",
        cron_schedule=f"{minute} {hour} * * *",
        execution_timezone=pbx.timezone,
        job_name=job_name,
        description=f"Materializes {pbx.name}'s last closed day and "
        f"{pbx.schedule_rerun_days} day(s) before it, {pbx.schedule_lag_minutes} min after "
        "local midnight.",
    )
    def daily_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        closed_day = context.scheduled_execution_time.date() - timedelta(days=1)
        for back in range(pbx.schedule_rerun_days, -1, -1):
            day = closed_day - timedelta(days=back)
            if day < pbx.start_date:
                continue
            key = day.strftime(PARTITION_FORMAT)
            yield dg.RunRequest(
                run_key=f"{pbx.name}:{key}:{context.scheduled_execution_time.date()}",
                partition_key=key,
            )

    return daily_schedule
