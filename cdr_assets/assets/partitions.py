"""Daily partitions in a PBX's own time zone, and the days a run covers."""

from __future__ import annotations

from datetime import date

import dagster as dg

from cdr_assets.config import PbxConfigBase

PARTITION_FORMAT = "%Y-%m-%d"


def daily_partitions(pbx: PbxConfigBase) -> dg.DailyPartitionsDefinition:
    """One partition per PBX-local day (23, 24 or 25 hours long), newest = the last closed day."""
    return dg.DailyPartitionsDefinition(
        start_date=pbx.start_date.strftime(PARTITION_FORMAT),
        timezone=pbx.timezone,
        fmt=PARTITION_FORMAT,
    )


def run_days(context: dg.AssetExecutionContext) -> list[date]:
    """The local days of this run: one partition, or every day of a backfill range."""
    return [date.fromisoformat(key) for key in context.partition_keys]
