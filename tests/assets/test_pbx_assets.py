"""The per-PBX step as Dagster records it: a day is a day in every run.

Range runs record each day's own materialization and check results as the day is committed; a
failing day leaves the earlier ones materialized, and a retry or a re-execution does not fetch
them again; blocking checks hold back a day's recordings; subsets do only their part.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cdr_assets.assets import build_definitions
from cdr_assets.config import load_config
from cdr_assets.ingest import read_day_ingest
from cdr_assets.storage.parquet import read_partition
from tests.assets.conftest import SECRETS, Pipeline, pipeline_config

DAYS = [date(2026, 6, 26), date(2026, 6, 27), date(2026, 6, 28)]
RANGE = (DAYS[0].isoformat(), DAYS[-1].isoformat())
HTML = b"<html><body>Bad gateway</body></html>"
LIST_PAGES = "/api/pbx/cdr"


def stored_rows(pipeline: Pipeline, pbx: str, day: date) -> int:
    table = read_partition(pipeline.config.storage.data_dir, "cdr", pbx, day, ["cdr_id"])
    return -1 if table is None else table.num_rows


def window_of(day: date) -> dict[str, str]:
    """The query of a Zorio day fetched without `query_timezone` (one day of margin)."""
    return {"from": (day - timedelta(days=1)).isoformat()}


#: A Zorio account capped at 3 dates a window: a day and its margins, so each day of a range
#: is a window of its own (how a range behaves across windows, in miniature).
ONE_DAY_WINDOWS = {"max_window_days": 3}


def test_a_range_run_records_each_day_with_its_own_metadata_and_checks(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(calls_per_day=30, sim_overrides={"seed": 4})
    result = pipeline.materialize("saigon/cdr,saigon/recordings", partition_range=RANGE)
    cdr = pipeline.materializations(result, "saigon/cdr")
    assert sorted(cdr) == [d.isoformat() for d in DAYS]
    for day in DAYS:
        metadata = cdr[day.isoformat()]
        assert metadata["dagster/partition_row_count"] == stored_rows(pipeline, "saigon", day)
        assert metadata["fetched"] == (
            metadata["dagster/partition_row_count"]
            + metadata["rejected"]
            + metadata["outside_day"]
            + metadata["duplicates_dropped"]
        )
    assert len({m["preview"] for m in cdr.values()}) == 3  # each day shows its own calls
    checks = pipeline.checks(result)
    for day in DAYS:
        for name in ("cdr_id_unique", "cdr_complete", "no_rejected_records"):
            assert checks[("saigon/cdr", name, day.isoformat())] is True
        assert checks[("saigon/recordings", "every_recording_archived", day.isoformat())] is True
    assert sorted(pipeline.materializations(result, "saigon/recordings")) == sorted(cdr)
    status = pipeline.instance.get_status_by_partition(
        dg.AssetKey(["saigon", "cdr"]),
        [d.isoformat() for d in DAYS],
        pipeline.defs.resolve_asset_graph().get(dg.AssetKey(["saigon", "cdr"])).partitions_def,
    )
    assert set(status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}


def test_a_failing_middle_day_leaves_the_earlier_day_materialized_and_names_itself(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(zorio=ONE_DAY_WINDOWS)
    faults = pipeline.sim.faults
    faults.fail_next(
        LIST_PAGES, 200, times=50, body=HTML, content_type="text/html", query=window_of(DAYS[1])
    )
    result = pipeline.materialize("saigon/cdr", partition_range=RANGE, raise_on_error=False)
    assert not result.success
    assert sorted(pipeline.materializations(result, "saigon/cdr")) == [DAYS[0].isoformat()]
    assert stored_rows(pipeline, "saigon", DAYS[0]) == 24
    assert stored_rows(pipeline, "saigon", DAYS[2]) == -1  # never reached
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    for part in ("'saigon'", "/api/pbx/cdr", "partition 2026-06-27", "HTML", "Not retried"):
        assert part in message
    materialized = pipeline.instance.get_materialized_partitions(dg.AssetKey(["saigon", "cdr"]))
    assert materialized == {DAYS[0].isoformat()}


def test_a_step_retry_does_not_fetch_the_days_it_already_committed(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(zorio=ONE_DAY_WINDOWS)
    pipeline.retry_policy = dg.RetryPolicy(max_retries=1, delay=0)
    # 503 three times: the client's own two retries give up, the step is retried once.
    pipeline.sim.faults.fail_next(LIST_PAGES, 503, times=3, query=window_of(DAYS[1]))
    result = pipeline.materialize("saigon/cdr", partition_range=RANGE)
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1
    assert sorted(pipeline.materializations(result, "saigon/cdr")) == [d.isoformat() for d in DAYS]
    # Each day is 8 pages; day 1 was not fetched again by the retry (else 8 more).
    assert pipeline.sim.stats.count(LIST_PAGES) == 3 * 8 + 3
    for day in DAYS:
        assert stored_rows(pipeline, "saigon", day) == 24


def saigon_job() -> dg.JobDefinition:
    """The saigon job of the config in $CDR_ASSETS_CONFIG (reconstructable for re-execution)."""
    return build_definitions(load_config(), retry_policy=None).resolve_job_def("saigon_daily_job")


def test_a_re_execution_from_failure_does_not_fetch_the_committed_days_again(
    make_pipeline: Callable[..., Pipeline], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = make_pipeline(zorio=ONE_DAY_WINDOWS)
    config = tmp_path / "cdr_assets.yaml"
    config.write_text(
        yaml.safe_dump(pipeline_config(pipeline.sim, tmp_path, zorio=ONE_DAY_WINDOWS))
    )
    monkeypatch.setenv("CDR_ASSETS_CONFIG", str(config))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    faults = pipeline.sim.faults
    faults.fail_next(
        LIST_PAGES, 200, times=50, body=HTML, content_type="text/html", query=window_of(DAYS[2])
    )
    tags = {
        "dagster/asset_partition_range_start": RANGE[0],
        "dagster/asset_partition_range_end": RANGE[1],
    }
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        job = dg.reconstructable(saigon_job)
        first = dg.execute_job(job, instance=instance, tags=tags)
        assert not first.success
        faults.clear()
        before = pipeline.sim.stats.count(LIST_PAGES)
        options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
        # (The UI copies the parent's tags into a re-execution; execute_job needs them given.)
        second = dg.execute_job(job, instance=instance, tags=tags, reexecution_options=options)
        failures = [
            e.step_failure_data.error.to_string() for e in second.all_events if e.is_step_failure
        ]
        assert second.success, failures
        fetched = pipeline.sim.stats.count(LIST_PAGES) - before
        assert fetched == 8  # only the failed day's pages
        key = dg.AssetKey(["saigon", "cdr"])
        assert instance.get_materialized_partitions(key) == {d.isoformat() for d in DAYS}
        # The skipped days' checks are reported again in the re-execution, per day.
        evaluations = {
            (e.event_specific_data.check_name, e.event_specific_data.partition)
            for e in second.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        for day in DAYS:
            assert ("cdr_complete", day.isoformat()) in evaluations


def test_recordings_alone_refuse_a_day_whose_cdrs_failed_a_blocking_check(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()
    victim = pipeline.sim.calls("zorio", DAYS[1])[2]["uuid"]
    pipeline.sim.faults.override_record("zorio", victim, start_time="not a time")
    pipeline.materialize("saigon/cdr", DAYS[1].isoformat(), raise_on_error=False)
    audio = pipeline.sim.stats.count("/api/public/recordings/{id}/audio")
    result = pipeline.materialize("saigon/recordings", DAYS[1].isoformat(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "2026-06-27" in failure.step_failure_data.error.message
    assert pipeline.sim.stats.count("/api/public/recordings/{id}/audio") == audio


def test_every_recording_archived_can_be_evaluated_alone_without_downloading(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()
    pipeline.materialize("saigon/cdr,saigon/recordings", DAYS[1].isoformat())
    downloads = pipeline.sim.stats.count("/api/public/recordings/{id}/audio")
    details = pipeline.sim.stats.count("/api/pbx/cdr/{uuid}")
    check = dg.AssetCheckKey(dg.AssetKey(["saigon", "recordings"]), "every_recording_archived")
    result = pipeline.materialize(dg.AssetSelection.checks(check), DAYS[1].isoformat())
    assert pipeline.checks(result) == {
        ("saigon/recordings", "every_recording_archived", DAYS[1].isoformat()): True
    }
    assert pipeline.materializations(result, "saigon/recordings") == {}
    assert pipeline.sim.stats.count("/api/public/recordings/{id}/audio") == downloads
    assert pipeline.sim.stats.count("/api/pbx/cdr/{uuid}") == details


def test_a_count_that_never_matches_is_a_failed_check_not_a_crash(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(zorio={"completeness_passes": 2})
    pipeline.sim.faults.total_offset = 1
    result = pipeline.materialize(
        "saigon/cdr,saigon/recordings", DAYS[1].isoformat(), raise_on_error=False
    )
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "cdr_complete"
    )
    assert evaluation.passed is False and evaluation.partition == DAYS[1].isoformat()
    for key in ("fetched", "distinct", "api_total", "passes"):
        assert key in evaluation.metadata
    assert evaluation.metadata["passes"].value == 2
    assert evaluation.metadata["api_total"].value == evaluation.metadata["distinct"].value + 1
    assert stored_rows(pipeline, "saigon", DAYS[1]) == 24  # the day is kept, once
    assert pipeline.materializations(result, "saigon/recordings") == {}  # held back


# --------------------------------------------------------------------------- range traffic

WEEK = [date(2026, 6, 22) + timedelta(days=n) for n in range(7)]
PBX_ZONE = "Asia/Ho_Chi_Minh"


def stored_table(pipeline: Pipeline, pbx: str, day: date) -> list[dict]:
    table = read_partition(pipeline.config.storage.data_dir, "cdr", pbx, day)
    assert table is not None, f"{pbx} {day} not committed"
    rows = table.drop_columns(["ingested_at"]).to_pylist()
    return sorted(rows, key=lambda row: row["cdr_id"])


def test_a_zorio_week_without_query_timezone_costs_at_most_1_3x_the_requests_with_it(
    make_pipeline: Callable[..., Pipeline], make_simulator
) -> None:
    # The server reads dates in the PBX's own zone: with it configured, 7 server dates.
    sim = make_simulator(calls_per_day=60, zorio={"date_timezone": PBX_ZONE})
    week = (WEEK[0].isoformat(), WEEK[-1].isoformat())
    requests, rows = {}, {}
    for mode, zorio in (("known", {"query_timezone": PBX_ZONE}), ("unknown", {})):
        pipeline = make_pipeline(sim, zorio=zorio)
        sim.stats.reset()
        result = pipeline.materialize("saigon/cdr", partition_range=week)
        requests[mode] = sim.stats.count(LIST_PAGES)
        assert sorted(pipeline.materializations(result, "saigon/cdr")) == list(map(str, WEEK))
        checks = pipeline.checks(result)
        assert all(checks[("saigon/cdr", "cdr_complete", d.isoformat())] for d in WEEK)
        rows[mode] = {day: stored_table(pipeline, "saigon", day) for day in WEEK}
    assert rows["unknown"] == rows["known"]
    assert all(len(rows["known"][day]) == 60 for day in WEEK)
    # One window of 9 dates (the week and a margin date each side) against one of 7 dates;
    # fetched day by day it was 7 windows of 3 dates (3x).
    assert requests["known"] == -(-7 * 60 // 9)
    assert requests["unknown"] == -(-9 * 60 // 9)
    assert requests["unknown"] <= 1.3 * requests["known"]


def test_a_yeastar_range_is_one_search_window_with_a_materialization_per_day(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()
    result = pipeline.materialize("hq/cdr", partition_range=RANGE)
    assert sorted(pipeline.materializations(result, "hq/cdr")) == [d.isoformat() for d in DAYS]
    labels = {
        tuple(w.label for w in read_day_ingest(pipeline.config.storage.data_dir, "hq", d).windows)
        for d in DAYS
    }
    assert len(labels) == 1  # every day was paged from the same cdr/search window
    for day in DAYS:
        assert stored_rows(pipeline, "hq", day) == 24


def test_a_failed_range_window_fails_the_step_naming_each_of_its_days(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()
    pipeline.sim.faults.fail_next(LIST_PAGES, 200, times=50, body=HTML, content_type="text/html")
    result = pipeline.materialize("saigon/cdr", partition_range=RANGE, raise_on_error=False)
    assert not result.success
    assert pipeline.materializations(result, "saigon/cdr") == {}
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "partitions 2026-06-26, 2026-06-27, 2026-06-28 (one query window)" in message
    assert "'saigon'" in message and "/api/pbx/cdr" in message
    assert all(stored_rows(pipeline, "saigon", day) == -1 for day in DAYS)
    assert pipeline.instance.get_materialized_partitions(dg.AssetKey(["saigon", "cdr"])) == set()


def test_a_pbx_step_joins_the_pool_its_config_names(tmp_path: Path) -> None:
    """`pool:` puts the PBX's step in that Dagster concurrency pool; without it, in its own
    (`cdr_assets/<name>`)."""
    config = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "pbxs": [
            {
                "name": "hq",
                "vendor": "zorio",
                "base_url": "http://127.0.0.1:9",
                "timezone": "UTC",
                "start_date": "2026-01-01",
                "api_token": {"env": "T"},
                "pool": "pbx_wan",
            },
            {
                "name": "branch",
                "vendor": "zorio",
                "base_url": "http://127.0.0.1:9",
                "timezone": "UTC",
                "start_date": "2026-01-01",
                "api_token": {"env": "T"},
            },
        ],
    }
    path = tmp_path / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    defs = build_definitions(load_config(path))
    pools = {
        key.path[0]: defs.get_assets_def(key).op.pool
        for key in (dg.AssetKey(["hq", "cdr"]), dg.AssetKey(["branch", "cdr"]))
    }
    assert pools == {"hq": "pbx_wan", "branch": "cdr_assets/branch"}
