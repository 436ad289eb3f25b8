"""Per PBX: a daily schedule (the day that just closed, plus recent days again, after a lag),
and the recordings audit's own job and schedule."""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg

from cdr_assets.assets.partitions import PARTITION_FORMAT
from cdr_assets.config import PbxConfigBase, StorageConfig


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


def build_recordings_audit_schedule(
    pbx: PbxConfigBase, storage: StorageConfig, job_name: str
) -> dg.ScheduleDefinition | None:
    """The audit job's schedule at `recordings_audit.cron` in the PBX's time zone; None when
    the cron is null (the check then runs only when launched)."""
    cron = pbx.audit_settings(storage).cron
    if cron is None:
        return None
    return dg.ScheduleDefinition(
        name=f"{pbx.name}_recordings_audit",
        job_name=job_name,
        cron_schedule=cron,
        execution_timezone=pbx.timezone,
        description=f"Re-reads {pbx.name}'s recording archive against its manifest "
        f"({cron}, {pbx.timezone}); materializes nothing.",
    )
