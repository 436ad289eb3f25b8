"""The days of `<name>/cdr`: run the ingest and describe each committed day for Dagster.

Wiring only: `cdr_assets.ingest` pages, normalizes, quarantines and writes; this module logs
what it did and turns the result into the day's materialization metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from cdr_assets.assets.metadata import preview_markdown
from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.ingest import DayIngest, WindowResult, ingest_cdr_days
from cdr_assets.recordings import ProgressLog
from cdr_assets.vendors.base import PbxClient


def ingest_days(
    client: PbxClient,
    pbx: PbxConfigBase,
    storage: StorageConfig,
    days: list[date],
    *,
    run_id: str,
    log: ProgressLog,
) -> Iterator[DayIngest]:
    """Fetch and commit local days (consecutive ones together), yielding each as it is
    committed; logs each window that needed more than one pass and each day's counts."""

    def on_window(window: WindowResult) -> None:
        if window.complete and window.passes == 1:
            return
        log.warning("%s: window %s", pbx.name, window.describe())

    results = ingest_cdr_days(
        client,
        pbx,
        storage,
        days,
        ingested_at=datetime.now(UTC),
        run_id=run_id,
        on_window=on_window,
    )
    for result in results:
        log.info(
            "%s %s: %d CDRs written (API total %d, %d distinct in %d pass(es), %d rejected, %d "
            "of other days)",
            pbx.name,
            result.day,
            result.rows,
            result.api_total,
            result.distinct,
            result.passes,
            result.rejected,
            result.outside_day,
        )
        yield result


def cdr_day_metadata(pbx: PbxConfigBase, result: DayIngest) -> dict[str, Any]:
    """The day's own materialization metadata (counts reconcile: fetched = rows + rejected +
    outside_day + duplicates_dropped)."""
    metadata: dict[str, Any] = {
        "dagster/partition_row_count": result.rows,
        "api_total": result.api_total,
        "fetched": result.fetched,
        "distinct": result.distinct,
        "passes": result.passes,
        "rejected": result.rejected,
        "outside_day": result.outside_day,
        "duplicates_dropped": result.duplicates_dropped,
        "preview": dg.MetadataValue.md(preview_markdown(result.preview)),
    }
    if result.window_bounds_known:
        metadata["outside_window"] = result.outside_window
    return metadata
