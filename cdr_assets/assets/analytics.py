"""`analytics/cdr_daily_kpis`: the fleet's KPIs of each date, as metadata Dagster's UI plots.

One asset downstream of every configured PBX's `<name>/cdr`. For a date D it reads the
`cdr_daily_kpis` view (every PBX's local day D) through `dagster-duckdb`'s `DuckDBResource` and
records fleet totals and ratios as numeric metadata (one point per partition, so the asset's
Plots tab draws calls, answer rate, ASR, ACD ... over time) and a per-PBX Markdown table. It
stores nothing: the numbers live in the views, the materialization is their daily record.

Partitions and their mapping. Each PBX's days are its own zone's (`call_date`), and PBXs have
different zones and start dates. Dagster's default between time-window partitions,
`TimeWindowPartitionMapping`, maps by overlapping instants and refuses definitions in different
zones ("Timezones ... don't match"); were it allowed, the analytics day D would overlap two
local days of each PBX, which is not what an analyst means by "the fleet's D". So each dep uses
`IdentityPartitionMapping`, which maps keys: analytics "2026-06-01" <- each PBX's local day
"2026-06-01", the same `call_date` the view groups by. The analytics partitions are daily in
`Etc/GMT+12` (UTC-12, "Anywhere on Earth", the last zone in which a date ends), so its day D
exists only once every PBX's day D has closed, and start at the fleet's latest `start_date`, the
first date every PBX has: an analytics day mapped to a PBX day that does not exist is one
Dagster's asset backfills refuse ("depends on non-existent partitions"). Earlier dates stay in
the `cdr_daily_kpis` view; a PBX added later moves the start to its first day.

It must not fetch from PBXs or write Parquet. It reads the DuckDB file read-only, after
`ensure_views`, which writes only a view definition that changed (as every PBX step does).
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource

from cdr_assets.assets.partitions import PARTITION_FORMAT, run_days
from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.schema import TABLE_SCHEMAS
from cdr_assets.storage.duckdb import (
    DuckDBLockTimeout,
    enable_object_store,
    ensure_views,
    view_protocols,
)

ANALYTICS_KEY = dg.AssetKey(["analytics", "cdr_daily_kpis"])
DUCKDB_RESOURCE_KEY = "cdr_duckdb"
#: UTC-12 all year: a date ends here after it has ended in every zone a PBX can be in.
ANALYTICS_TIMEZONE = "Etc/GMT+12"

# Sums per PBX and day from `cdr_daily_kpis`; ACD and average ring are re-weighted by their
# denominators so the fleet's ratios are ratios of totals, not averages of ratios (calls whose
# ring_s is NULL count as the group's average ring).
_DAY_SQL = """
SELECT pbx, call_date,
  CAST(sum(calls) AS BIGINT) AS calls,
  CAST(sum(answered) AS BIGINT) AS answered,
  CAST(sum(offered) AS BIGINT) AS offered,
  CAST(coalesce(sum(calls) FILTER (WHERE direction = 'inbound'), 0) AS BIGINT) AS inbound,
  CAST(coalesce(sum(answered) FILTER (WHERE direction = 'inbound'), 0) AS BIGINT)
    AS inbound_answered,
  CAST(coalesce(sum(offered) FILTER (WHERE direction = 'inbound'), 0) AS BIGINT)
    AS inbound_offered,
  coalesce(sum(acd_s * answered), 0) AS answered_talk_s,
  sum(avg_ring_s * calls) AS ring_s,
  sum(talk_minutes) AS talk_minutes,
  CAST(sum(recordings_archived) AS BIGINT) AS recordings_archived,
  CAST(sum(recordings_missing) AS BIGINT) AS recordings_missing,
  CAST(sum(recordings_failed) AS BIGINT) AS recordings_failed
FROM cdr_daily_kpis
WHERE call_date BETWEEN ? AND ? AND list_contains(?, pbx)
GROUP BY pbx, call_date
"""


@dataclass(frozen=True)
class DayTotals:
    """One PBX's (or the fleet's) sums for one date, and the KPIs they give."""

    calls: int = 0
    answered: int = 0
    offered: int = 0
    inbound: int = 0
    inbound_answered: int = 0
    inbound_offered: int = 0
    answered_talk_s: float = 0.0
    ring_s: float = 0.0
    talk_minutes: float = 0.0
    recordings_archived: int = 0
    recordings_missing: int = 0
    recordings_failed: int = 0

    def __add__(self, other: "DayTotals") -> "DayTotals":
        return DayTotals(*(a + b for a, b in zip(_values(self), _values(other), strict=True)))

    @property
    def answer_rate(self) -> float | None:
        return _ratio(self.answered, self.offered)

    @property
    def inbound_answer_rate(self) -> float | None:
        return _ratio(self.inbound_answered, self.inbound_offered)

    @property
    def asr(self) -> float | None:
        return _ratio(self.answered, self.calls)

    @property
    def acd_s(self) -> float | None:
        return _ratio(self.answered_talk_s, self.answered)

    @property
    def avg_ring_s(self) -> float | None:
        return _ratio(self.ring_s, self.calls)


def _values(totals: DayTotals) -> list[float]:
    return [getattr(totals, name) for name in DayTotals.__dataclass_fields__]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def read_day_totals(
    duckdb: DuckDBResource, pbxs: Sequence[str], first: date, last: date
) -> dict[tuple[str, date], DayTotals]:
    """(pbx, call_date) -> sums from `cdr_daily_kpis`, for the days and PBXs asked."""
    with duckdb.get_connection() as con:
        enable_object_store(con, view_protocols(con))  # data_dir on S3: views read the bucket
        cursor = con.execute(_DAY_SQL, [first, last, list(pbxs)])
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    found: dict[tuple[str, date], DayTotals] = {}
    for row in rows:
        values = dict(zip(names, row, strict=True))
        key = (values.pop("pbx"), values.pop("call_date"))
        found[key] = DayTotals(**{k: v if v is not None else 0 for k, v in values.items()})
    return found


def _float(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.null() if value is None else dg.MetadataValue.float(value)


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def pbx_table_markdown(pbxs: Sequence[PbxConfigBase], totals: Mapping[str, DayTotals]) -> str:
    """One row per configured PBX (its own local day), then the fleet's."""
    header = (
        "| PBX | zone | calls | answered | answer rate | ASR | ACD (s) | avg ring (s) | "
        "talk (min) | recordings archived | missing | failed |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def line(name: str, zone: str, t: DayTotals) -> str:
        cells = [
            name,
            zone,
            str(t.calls),
            str(t.answered),
            _cell(t.answer_rate, 3),
            _cell(t.asr, 3),
            _cell(t.acd_s, 1),
            _cell(t.avg_ring_s, 1),
            f"{t.talk_minutes:.1f}",
            str(t.recordings_archived),
            str(t.recordings_missing),
            str(t.recordings_failed),
        ]
        return "| " + " | ".join(cells) + " |"

    for pbx in pbxs:
        lines.append(line(pbx.name, pbx.timezone, totals.get(pbx.name, DayTotals())))
    fleet = sum(totals.values(), DayTotals())
    lines.append(line("**fleet**", "", fleet))
    return "\n".join(lines)


def day_metadata(
    pbxs: Sequence[PbxConfigBase], totals: Mapping[str, DayTotals]
) -> dict[str, dg.MetadataValue]:
    """The fleet's KPIs of one date as plottable numbers, and the per-PBX table."""
    fleet = sum(totals.values(), DayTotals())
    return {
        "calls": dg.MetadataValue.int(fleet.calls),
        "answered": dg.MetadataValue.int(fleet.answered),
        "answer_rate": _float(fleet.answer_rate),
        "inbound_calls": dg.MetadataValue.int(fleet.inbound),
        "inbound_answer_rate": _float(fleet.inbound_answer_rate),
        "asr": _float(fleet.asr),
        "acd_s": _float(fleet.acd_s),
        "avg_ring_s": _float(fleet.avg_ring_s),
        "talk_minutes": dg.MetadataValue.float(fleet.talk_minutes),
        "recordings_archived": dg.MetadataValue.int(fleet.recordings_archived),
        "recordings_missing": dg.MetadataValue.int(fleet.recordings_missing),
        "recordings_failed": dg.MetadataValue.int(fleet.recordings_failed),
        "pbxs_with_calls": dg.MetadataValue.int(sum(1 for t in totals.values() if t.calls)),
        "by_pbx": dg.MetadataValue.md(pbx_table_markdown(pbxs, totals)),
    }


def analytics_partitions(pbxs: Sequence[PbxConfigBase]) -> dg.DailyPartitionsDefinition:
    """Daily, from the first date every PBX has, in the zone where a date ends last (above)."""
    return dg.DailyPartitionsDefinition(
        start_date=max(p.start_date for p in pbxs).strftime(PARTITION_FORMAT),
        timezone=ANALYTICS_TIMEZONE,
        fmt=PARTITION_FORMAT,
    )


def duckdb_resource(storage: StorageConfig) -> DuckDBResource:
    """The analysts' file, opened read-only (`access_mode`: DuckDBResource itself always asks
    for read-write), so the asset shares the file with analysts' sessions and never takes the
    writer's lock that ingestion's view refresh needs."""
    return DuckDBResource(
        database=storage.duckdb_path, connection_config={"access_mode": "READ_ONLY"}
    )


def build_analytics_definitions(
    pbxs: Sequence[PbxConfigBase],
    storage: StorageConfig,
    cdr_keys: Mapping[str, dg.AssetKey],
) -> dg.Definitions:
    """`analytics/cdr_daily_kpis` over the PBXs' `cdr` assets (`cdr_keys`: PBX name -> key, as
    the translator named them) and its read-only `DuckDBResource`."""
    names = [p.name for p in pbxs]
    spec = dg.AssetSpec(
        key=ANALYTICS_KEY,
        deps=[
            dg.AssetDep(cdr_keys[name], partition_mapping=dg.IdentityPartitionMapping())
            for name in names
        ],
        group_name="analytics",
        kinds={"duckdb"},
        description=(
            "The fleet's telephony KPIs of each date (every PBX's own local day, its "
            "call_date) from the DuckDB view cdr_daily_kpis: calls, answer rate, ASR, ACD and "
            "recordings as plottable metadata, and a table per PBX. Re-materialize a date after "
            "re-ingesting it; nothing is stored but the materialization."
        ),
        skippable=True,
    )

    @dg.multi_asset(
        name="analytics_cdr_daily_kpis",
        specs=[spec],
        partitions_def=analytics_partitions(pbxs),
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys={DUCKDB_RESOURCE_KEY},
        can_subset=False,
    )
    def cdr_daily_kpis(context: dg.AssetExecutionContext) -> Iterator[dg.AssetMaterialization]:
        """Each day of the run is its own materialization, with its own numbers (a range run
        from a backfill records every day, as the PBX assets do)."""
        duckdb: DuckDBResource = getattr(context.resources, DUCKDB_RESOURCE_KEY)
        try:  # views current (written only if their definition changed), then read-only
            ensure_views(storage.duckdb_path, storage.data_dir, TABLE_SCHEMAS)
        except DuckDBLockTimeout as exc:
            context.log.warning("DuckDB views not refreshed, reading them as they are: %s", exc)
        days = run_days(context)
        found = read_day_totals(duckdb, names, min(days), max(days))
        for day in days:
            totals = {name: found[(name, day)] for name in names if (name, day) in found}
            metadata = day_metadata(pbxs, totals)
            context.log.info(
                "%s: %d calls on %d of %d PBXs",
                day,
                sum(t.calls for t in totals.values()),
                len(totals),
                len(names),
            )
            yield dg.AssetMaterialization(
                asset_key=ANALYTICS_KEY, partition=day.isoformat(), metadata=metadata
            )

    return dg.Definitions(
        assets=[cdr_daily_kpis], resources={DUCKDB_RESOURCE_KEY: duckdb_resource(storage)}
    )
