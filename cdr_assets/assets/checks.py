"""Asset checks of a PBX's `cdr` and `recordings` partitions.

Each check re-reads what was committed to storage rather than trusting the run's own counters,
so it catches a writer bug as well as an API that lied. They run inside the materialization
(`check_specs`), once per run, and cover every day the run wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
import pyarrow.compute as pc

from cdr_assets.storage.manifest import read_manifest
from cdr_assets.storage.parquet import read_partition

CDR_UNIQUE = "cdr_id_unique"
CDR_COMPLETE = "count_matches_api_total"
RECORDINGS_COVERED = "every_recording_archived"
_LIST_LIMIT = 20


@dataclass(frozen=True)
class CdrDayStats:
    """What one day's fetch saw: the API's total, what paging returned, what the day kept."""

    day: date
    api_total: int
    fetched: int
    rows: int
    outside_day: int
    duplicates_dropped: int


def cdr_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CDR_UNIQUE, asset=asset_key, description="No cdr_id appears twice in a PBX's day."
        ),
        dg.AssetCheckSpec(
            CDR_COMPLETE,
            asset=asset_key,
            description="Paging returned exactly as many CDRs as the API's own total.",
        ),
    ]


def recordings_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            RECORDINGS_COVERED,
            asset=asset_key,
            description="Every CDR with has_recording has an `archived` manifest row.",
        )
    ]


def check_cdr_unique(data_dir: str, pbx: str, days: Sequence[date]) -> dg.AssetCheckResult:
    duplicated: dict[str, int] = {}
    for day in days:
        ids = read_partition(data_dir, "cdr", pbx, day, columns=["cdr_id"])
        if ids is None:
            continue
        extra = ids.num_rows - pc.count_distinct(ids["cdr_id"]).as_py()
        if extra:
            duplicated[day.isoformat()] = extra
    return dg.AssetCheckResult(
        check_name=CDR_UNIQUE,
        passed=not duplicated,
        metadata={"duplicate_rows_by_day": duplicated, "days": len(days)},
    )


def check_cdr_complete(stats: Sequence[CdrDayStats]) -> dg.AssetCheckResult:
    short = {
        s.day.isoformat(): {"api_total": s.api_total, "fetched": s.fetched}
        for s in stats
        if s.api_total != s.fetched
    }
    return dg.AssetCheckResult(
        check_name=CDR_COMPLETE,
        passed=not short,
        metadata={
            "api_total": sum(s.api_total for s in stats),
            "fetched": sum(s.fetched for s in stats),
            "rows_in_partitions": sum(s.rows for s in stats),
            "outside_day": sum(s.outside_day for s in stats),
            "mismatched_days": short,
        },
    )


def check_recordings_covered(data_dir: str, pbx: str, days: Sequence[date]) -> dg.AssetCheckResult:
    """Lists up to 20 CDRs whose recording is not archived, with their manifest status."""
    uncovered: list[str] = []
    expected = 0
    for day in days:
        cdrs = read_partition(data_dir, "cdr", pbx, day, columns=["cdr_id", "has_recording"])
        if cdrs is None:
            continue
        wanted = cdrs.filter(cdrs["has_recording"])["cdr_id"].to_pylist()
        expected += len(wanted)
        manifest = read_manifest(data_dir, pbx, day)
        for cdr_id in wanted:
            row = manifest.get(cdr_id)
            if row is None or row.status != "archived":
                uncovered.append(f"{day} {cdr_id}: {row.status if row else 'no manifest row'}")
    return dg.AssetCheckResult(
        check_name=RECORDINGS_COVERED,
        passed=not uncovered,
        metadata={
            "recordings_expected": expected,
            "not_archived": len(uncovered),
            "examples": dg.MetadataValue.md(
                "\n".join(f"- {line}" for line in uncovered[:_LIST_LIMIT]) or "none"
            ),
        },
    )
