"""`<name>/cdr` end to end: simulator over HTTP -> Parquet -> DuckDB `cdr`, with its checks."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from cdr_assets.storage.parquet import partition_path
from tests.assets.conftest import DAY, Pipeline


def _check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


CDR_CHECKS = {"cdr_id_unique": True, "cdr_complete": True, "no_rejected_records": True}


def _ids(pipeline: Pipeline, pbx: str, day: date) -> list[str]:
    rows = pipeline.query(
        "SELECT cdr_id FROM cdr WHERE pbx = ? AND call_date = ? ORDER BY cdr_id", pbx, day
    )
    return [row[0] for row in rows]


def _sim_ids(pipeline: Pipeline, vendor: str, day: date) -> list[str]:
    key = "uid" if vendor == "yeastar" else "uuid"
    return sorted(record[key] for record in pipeline.sim.calls(vendor, day))


@pytest.mark.parametrize(("pbx", "vendor"), [("hq", "yeastar"), ("saigon", "zorio")])
def test_partition_holds_exactly_the_days_calls(
    make_pipeline: Callable[..., Pipeline], pbx: str, vendor: str
) -> None:
    pipeline = make_pipeline()
    result = pipeline.materialize(f"{pbx}/cdr", DAY.isoformat())
    assert _ids(pipeline, pbx, DAY) == _sim_ids(pipeline, vendor, DAY)
    window = {"cdr_in_query_window": True} if vendor == "yeastar" else {}
    assert _check_results(result) == CDR_CHECKS | window
    metadata = pipeline.materializations(result, f"{pbx}/cdr")[str(DAY)]
    assert metadata["dagster/partition_row_count"] == len(_sim_ids(pipeline, vendor, DAY))
    assert "cdr_id" in metadata["preview"]


def test_rerun_replaces_the_partition_without_duplicates(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()
    pipeline.materialize("hq/cdr", DAY.isoformat())
    first = pipeline.query("SELECT cdr_id, start_time, raw FROM cdr ORDER BY cdr_id")
    pipeline.materialize("hq/cdr", DAY.isoformat())
    assert pipeline.query("SELECT cdr_id, start_time, raw FROM cdr ORDER BY cdr_id") == first
    assert pipeline.query("SELECT count(*) - count(DISTINCT cdr_id) FROM cdr") == [(0,)]


def test_normalized_columns_reach_duckdb_with_types(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline()
    pipeline.materialize("saigon/cdr", DAY.isoformat())
    types = dict(pipeline.query("SELECT column_name, column_type FROM (DESCRIBE cdr)"))
    assert types["start_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["call_date"] == "DATE"
    assert types["talk_s"] == "INTEGER"
    assert types["has_recording"] == "BOOLEAN"
    record = pipeline.sim.calls("zorio", DAY)[0]
    (row,) = pipeline.query(
        "SELECT caller_number, callee_number, talk_s, disposition_raw, "
        "epoch(start_time)::BIGINT FROM cdr WHERE cdr_id = ?",
        record["uuid"],
    )
    start = datetime.fromisoformat(record["start_time"])
    assert row == (
        record["caller_number"],
        record["destination_number"],
        record["billsec"],
        record["result"],
        int(start.timestamp()),
    )


@pytest.mark.parametrize("day", [date(2026, 3, 8), date(2026, 11, 1)], ids=["spring", "fall"])
def test_dst_change_day_is_one_whole_local_day(
    make_pipeline: Callable[..., Pipeline], day: date
) -> None:
    zone = "America/New_York"
    pipeline = make_pipeline(
        sim_overrides={"yeastar": {"timezone": zone}, "zorio": {"timezone": zone}},
        calls_per_day=200,
    )
    for pbx, vendor in (("hq", "yeastar"), ("saigon", "zorio")):
        pipeline.materialize(f"{pbx}/cdr", day.isoformat())
        assert _ids(pipeline, pbx, day) == _sim_ids(pipeline, vendor, day)
    starts = [s for (s,) in pipeline.query("SELECT start_time FROM cdr")]
    local = [s.astimezone(ZoneInfo(zone)) for s in starts]
    assert {t.date() for t in local} == {day}
    span_hours = (max(starts) - min(starts)).total_seconds() / 3600
    if day.month == 11:  # 25-hour day: the 01:00 hour happens twice, both kept
        assert span_hours > 24
        assert {t.fold for t in local if t.hour == 1} == {0, 1}
    else:  # 23-hour day
        assert 22 < span_hours < 23


def test_bad_api_body_fails_naming_pbx_endpoint_partition_and_keeps_data(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()
    pipeline.materialize("hq/cdr", DAY.isoformat())
    before = pipeline.query("SELECT count(*) FROM cdr")
    pipeline.sim.faults.fail_next(
        "/openapi/v1.0/cdr/search",
        200,
        times=10,
        body=b"<html><body>Gateway error</body></html>",
        content_type="text/html",
    )
    result = pipeline.materialize("hq/cdr", DAY.isoformat(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert "'hq'" in message and "cdr/search" in message and str(DAY) in message
    assert pipeline.query("SELECT count(*) FROM cdr") == before


def test_a_record_of_the_wrong_type_is_quarantined_and_holds_back_the_days_recordings(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()
    record = pipeline.sim.calls("zorio", DAY)[0]
    pipeline.sim.faults.override_record("zorio", record["uuid"], duration="forty")
    result = pipeline.materialize(
        "saigon/cdr,saigon/recordings", DAY.isoformat(), raise_on_error=False
    )
    assert not result.success  # a blocking check failed
    ids = _ids(pipeline, "saigon", DAY)
    assert record["uuid"] not in ids and len(ids) == len(_sim_ids(pipeline, "zorio", DAY)) - 1
    checks = pipeline.checks(result)
    assert checks[("saigon/cdr", "no_rejected_records", str(DAY))] is False
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_rejected_records"
    )
    listed = evaluation.metadata["first_rejected"].value
    assert record["uuid"] in listed and "duration" in listed
    assert re.search(r"page \d+, position \d+", listed)
    (rejected,) = pipeline.query("SELECT cdr_id, field FROM cdr_rejects")
    assert rejected == (record["uuid"], "duration")
    assert "saigon/recordings" not in {
        e.asset_key.to_user_string()
        for e in result.asset_materializations_for_node("saigon_cdr_and_recordings")
    }
    assert pipeline.query("SELECT count(*) FROM recordings") == [(0,)]


def test_partition_range_runs_as_one_run(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline()
    result = pipeline.materialize("saigon/cdr", partition_range=("2026-06-25", "2026-06-27"))
    assert result.success
    for offset in (25, 26, 27):
        day = date(2026, 6, offset)
        assert _ids(pipeline, "saigon", day) == _sim_ids(pipeline, "zorio", day)


def test_parquet_is_hive_laid_out(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline()
    pipeline.materialize("hq/cdr", DAY.isoformat())
    path = Path(partition_path(pipeline.config.storage.data_dir, "cdr", "hq", DAY))
    assert path.exists()
    assert path.parent.name == f"call_date={DAY}" and path.parent.parent.name == "pbx=hq"


def test_local_dates_follow_the_pbx_zone(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline()
    pipeline.materialize("saigon/cdr", DAY.isoformat())
    zone = ZoneInfo(pipeline.config.pbxs[1].timezone)
    starts = pipeline.query("SELECT start_time FROM cdr WHERE pbx = 'saigon'")
    assert starts and all(start.astimezone(zone).date() == DAY for (start,) in starts)
