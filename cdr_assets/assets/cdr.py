"""The `<name>/cdr` asset: fetch a PBX's CDRs of a local day, normalize, write Parquet.

Wiring only: the vendor client pages the API, the normalizer builds Arrow, the PartitionWriter
swaps the day in atomically, `ensure_views` keeps DuckDB's `cdr` view pointing at the files.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from cdr_assets.assets.checks import (
    CdrDayStats,
    cdr_check_specs,
    check_cdr_complete,
    check_cdr_unique,
)
from cdr_assets.assets.metadata import column_schema, preview_markdown
from cdr_assets.assets.partitions import run_days
from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.errors import CdrAssetsError, RecordFormatError
from cdr_assets.normalize import NORMALIZERS, batch_pages
from cdr_assets.schema import CDR_SCHEMA, RECORDINGS_SCHEMA
from cdr_assets.storage.duckdb import DuckDBLockTimeout, ensure_views
from cdr_assets.storage.parquet import PartitionWriter
from cdr_assets.vendors.base import PbxClient

PREVIEW_COLUMNS = [
    "cdr_id",
    "start_time",
    "direction",
    "disposition",
    "caller_number",
    "callee_number",
    "talk_s",
    "has_recording",
]
VIEW_SCHEMAS = {"cdr": CDR_SCHEMA, "recordings": RECORDINGS_SCHEMA}
# Rows per Parquet row group: big enough for DuckDB to scan in parallel, small enough that the
# buffered group (raw JSON included) stays well under 100 MB.
ROW_GROUP_ROWS = 50_000


def fetch_cdr_day(
    client: PbxClient,
    pbx: PbxConfigBase,
    storage: StorageConfig,
    day: date,
    *,
    preview: list[pa.Table],
) -> CdrDayStats:
    """Fetch, normalize and atomically write one local day; earlier data survives any error."""
    normalize = NORMALIZERS[pbx.vendor]
    ingested_at = datetime.now(UTC)
    fetch = client.fetch_cdrs(day, day)
    outside_day = 0
    day_scalar = pa.scalar(day, pa.date32())
    try:
        with PartitionWriter(
            storage.data_dir, "cdr", pbx.name, day, CDR_SCHEMA, row_group_size=ROW_GROUP_ROWS
        ) as writer:
            # Arrow's fixed per-call cost is paid per ~10,000 records, not per 200-record page.
            for records in batch_pages(fetch.record_pages()):
                table = normalize(
                    records, pbx=pbx.name, timezone=pbx.timezone, ingested_at=ingested_at
                )
                in_day = table.filter(pc.equal(table["call_date"], day_scalar))
                outside_day += table.num_rows - in_day.num_rows
                writer.write(in_day)
                if not preview and in_day.num_rows:
                    preview.append(in_day.select(PREVIEW_COLUMNS).slice(0, 5))
            written = writer.commit()
    except RecordFormatError as exc:  # the vendor sent a record unlike its page
        raise dg.Failure(
            description=f"PBX {pbx.name!r}, endpoint {fetch.endpoint}, partition {day}: {exc}",
            allow_retries=False,
        ) from exc
    except CdrAssetsError as exc:  # already names the PBX and endpoint
        raise dg.Failure(
            description=f"PBX {pbx.name!r}, partition {day}: {exc}", allow_retries=True
        ) from exc
    return CdrDayStats(
        day=day,
        api_total=fetch.api_total,
        fetched=fetch.fetched,
        rows=written.rows,
        outside_day=outside_day,
        duplicates_dropped=written.duplicates_dropped,
    )


def build_cdr_asset(
    pbx: PbxConfigBase,
    storage: StorageConfig,
    partitions: dg.PartitionsDefinition,
    resource_key: str,
    retry_policy: dg.RetryPolicy | None,
) -> dg.AssetsDefinition:
    key = dg.AssetKey([pbx.name, "cdr"])

    @dg.asset(
        key=key,
        group_name=pbx.name,
        partitions_def=partitions,
        pool=f"pbx_{pbx.name}",
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys={resource_key},
        check_specs=cdr_check_specs(key),
        retry_policy=retry_policy,
        kinds={pbx.vendor, "parquet", "duckdb"},
        metadata={"dagster/column_schema": column_schema(CDR_SCHEMA)},
        description=(
            f"CDRs of PBX {pbx.name!r} ({pbx.vendor}) whose call started on the partition's "
            f"local day in {pbx.timezone}. Re-materializing a day replaces it, so re-running "
            "recent days picks up calls that ended after midnight and late status changes."
        ),
    )
    def cdr_asset(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        client: PbxClient = getattr(context.resources, resource_key)
        days = run_days(context)
        preview: list[pa.Table] = []
        stats = []
        for day in days:
            day_stats = fetch_cdr_day(client, pbx, storage, day, preview=preview)
            context.log.info(
                "%s %s: %d CDRs written (API total %d, %d outside the day)",
                pbx.name,
                day,
                day_stats.rows,
                day_stats.api_total,
                day_stats.outside_day,
            )
            stats.append(day_stats)
        try:
            ensure_views(storage.duckdb_path, storage.data_dir, VIEW_SCHEMAS)
        except DuckDBLockTimeout as exc:  # Parquet is committed; the next run refreshes the views
            context.log.warning("DuckDB views not refreshed: %s", exc)
        rows = sum(s.rows for s in stats)
        yield dg.MaterializeResult(
            metadata={
                "dagster/partition_row_count": rows,
                "rows": rows,
                "api_total": sum(s.api_total for s in stats),
                "outside_day": sum(s.outside_day for s in stats),
                "duplicates_dropped": sum(s.duplicates_dropped for s in stats),
                "rows_by_day": {s.day.isoformat(): s.rows for s in stats},
                "preview": dg.MetadataValue.md(preview_markdown(preview[0] if preview else None)),
            },
            check_results=[
                check_cdr_unique(storage.data_dir, pbx.name, days),
                check_cdr_complete(stats),
            ],
        )

    return cdr_asset
