"""`analytics/cdr_daily_kpis` materialized in process on a real (ephemeral) instance: its
metadata against numbers worked out by hand from the calls each test writes, its partitions
and mapping against PBXs of different zones and start dates, and its read-only connection."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from cdr_assets.assets import CdrAssetProps, CdrAssetsTranslator, build_definitions
from cdr_assets.assets.analytics import ANALYTICS_KEY, ANALYTICS_TIMEZONE
from cdr_assets.config import CdrAssetsConfig, parse_config
from cdr_assets.schema import TABLE_SCHEMAS
from cdr_assets.storage.duckdb import ensure_views
from tests.assets.conftest import DAY, Pipeline
from tests.storage.helpers import cdr_table, recordings_table, write_day

MAR9, MAR10 = date(2026, 3, 9), date(2026, 3, 10)


def _config(root: Path) -> CdrAssetsConfig:
    def pbx(name: str, zone: str, start: str) -> dict[str, Any]:
        return {
            "name": name,
            "vendor": "zorio",
            "base_url": "http://127.0.0.1:9",
            "timezone": zone,
            "start_date": start,
            "api_token": {"env": "T_UNUSED_TOKEN"},
        }

    return parse_config(
        {
            "storage": {
                "data_dir": str(root / "data"),
                "duckdb_path": str(root / "data" / "cdr.duckdb"),
                "recordings_dir": str(root / "data" / "recordings"),
            },
            "pbxs": [
                pbx("hq", "Asia/Kathmandu", "2026-03-01"),
                pbx("branch", "America/New_York", "2026-03-09"),
                pbx("quiet", "Europe/Berlin", "2026-03-05"),  # no calls at all
            ],
        }
    )


@pytest.fixture
def fleet(tmp_path: Path) -> CdrAssetsConfig:
    """Two days written through the package's writer (call_date = each PBX's local date)."""
    config = _config(tmp_path)
    data = config.storage.data_dir
    write_day(data, "cdr", cdr_table("hq", MAR9, [dict(disposition="no_answer", ring_s=15)]))
    write_day(data, "cdr", cdr_table("hq", MAR10, [
        dict(direction="inbound", disposition="answered", ring_s=4, talk_s=100,
             has_recording=True),
        dict(direction="inbound", disposition="no_answer", ring_s=20),
        dict(direction="outbound", disposition="busy", ring_s=0),
    ]))  # fmt: skip
    write_day(data, "recordings", recordings_table("hq", MAR10, {"hq-2026-03-10-0": "archived"}))
    write_day(data, "cdr", cdr_table("branch", MAR10, [
        dict(direction="inbound", disposition="answered", ring_s=6, talk_s=50,
             has_recording=True),
        dict(direction="outbound", disposition="answered", ring_s=10, talk_s=150),
    ]))  # fmt: skip
    write_day(
        data, "recordings", recordings_table("branch", MAR10, {"branch-2026-03-10-0": "missing"})
    )
    return config


def _materialize(config: CdrAssetsConfig, instance: dg.DagsterInstance, first: str, last: str):
    defs = build_definitions(config)
    return dg.materialize(
        list(defs.assets or []),
        resources=defs.resources,
        selection=[ANALYTICS_KEY],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )


def _recorded(instance: dg.DagsterInstance) -> dict[str, dict[str, Any]]:
    records = instance.fetch_materializations(ANALYTICS_KEY, limit=100).records
    return {
        r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
        if r.partition_key and r.asset_materialization
    }


def test_each_day_records_the_fleet_kpis(fleet: CdrAssetsConfig) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(fleet, instance, "2026-03-09", "2026-03-10")
        assert result.success
        days = _recorded(instance)
    assert set(days) == {"2026-03-09", "2026-03-10"}  # a range run records each day

    mar10 = days["2026-03-10"]  # hq: 3 calls (1 answered, 1 busy); branch: 2 answered
    assert (mar10["calls"], mar10["answered"]) == (5, 3)
    assert mar10["asr"] == pytest.approx(3 / 5)
    assert mar10["answer_rate"] == pytest.approx(3 / 4)  # the busy call was not offered
    assert mar10["inbound_calls"] == 3
    assert mar10["inbound_answer_rate"] == pytest.approx(2 / 3)
    assert mar10["acd_s"] == pytest.approx((100 + 50 + 150) / 3)
    assert mar10["avg_ring_s"] == pytest.approx((4 + 20 + 0 + 6 + 10) / 5)
    assert mar10["talk_minutes"] == pytest.approx((100 + 50 + 150) / 60)
    assert (mar10["recordings_archived"], mar10["recordings_missing"]) == (1, 1)
    assert mar10["pbxs_with_calls"] == 2
    table = mar10["by_pbx"]
    assert "| hq | Asia/Kathmandu | 3 | 1 | 0.500 | 0.333 | 100.0 | 8.0 | 1.7 | 1 | 0 | 0 |" in (
        table
    )
    assert "| branch | America/New_York | 2 | 2 | 1.000 | 1.000 | 100.0 | 8.0 | 3.3 | 0 | 1 |" in (
        table
    )
    assert "| quiet | Europe/Berlin | 0 | 0 | – | – | – | – | 0.0 | 0 | 0 | 0 |" in table

    mar9 = days["2026-03-09"]  # one unanswered hq call, nothing else
    assert (mar9["calls"], mar9["answered"], mar9["asr"]) == (1, 0, 0.0)
    assert mar9["acd_s"] is None  # no answered call: no ACD, not a division error
    assert mar9["pbxs_with_calls"] == 1


def test_deps_map_each_pbx_local_day_to_the_same_date(tmp_path: Path) -> None:
    class Prefixed(CdrAssetsTranslator):
        def get_asset_spec(self, props: CdrAssetProps) -> dg.AssetSpec:
            spec = super().get_asset_spec(props)
            return spec.replace_attributes(key=spec.key.with_prefix("telephony"))

    config = _config(tmp_path)
    defs = build_definitions(config, translator=Prefixed())
    graph = defs.resolve_asset_graph()
    analytics = graph.get(ANALYTICS_KEY)
    cdr_keys = {dg.AssetKey(["telephony", p.name, "cdr"]) for p in config.pbxs}
    assert set(analytics.parent_keys) == cdr_keys
    assert analytics.partitions_def.timezone == ANALYTICS_TIMEZONE
    first = analytics.partitions_def.get_first_partition_key()
    assert first == "2026-03-09"  # the first date every PBX has (branch's start)
    assets_def = graph.assets_def_for_key(ANALYTICS_KEY)
    for key in cdr_keys:
        upstream = graph.get(key).partitions_def
        mapping = assets_def.get_partition_mapping(key)
        assert isinstance(mapping, dg.IdentityPartitionMapping)
        for day in (first, "2026-03-25"):
            mapped = mapping.get_upstream_mapped_partitions_result_for_partitions(
                analytics.partitions_def.subset_with_partition_keys([day]),
                analytics.partitions_def,
                upstream,
            )
            assert list(mapped.partitions_subset.get_partition_keys()) == [day]
            # what an asset backfill refuses: an analytics day without the PBX's day
            assert mapped.required_but_nonexistent_subset.is_empty


def test_reads_while_an_analyst_holds_the_file(fleet: CdrAssetsConfig) -> None:
    db = fleet.storage.duckdb_path
    ensure_views(db, fleet.storage.data_dir, TABLE_SCHEMAS)
    analyst = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({db!r}, read_only=True)\n"
            "con.execute('SELECT count(*) FROM cdr_daily_kpis').fetchall()\n"
            "print('open', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert analyst.stdout is not None and analyst.stdout.readline().strip() == "open"
        started = time.monotonic()
        with dg.DagsterInstance.ephemeral() as instance:
            assert _materialize(fleet, instance, "2026-03-10", "2026-03-10").success
            assert _recorded(instance)["2026-03-10"]["calls"] == 5
        assert time.monotonic() - started < 30  # no waiting on the analyst's lock
    finally:
        analyst.kill()
        analyst.wait()


def test_after_the_pbx_assets_of_a_simulated_day(make_pipeline: Callable[..., Pipeline]) -> None:
    """The PBXs' own run writes the day; analytics then counts what `cdr` holds for it."""
    pipeline = make_pipeline(calls_per_day=30)
    for key in ("hq/cdr", "saigon/cdr"):
        assert pipeline.materialize(key, DAY.isoformat()).success
    day = DAY.isoformat()
    result = pipeline.materialize("analytics/cdr_daily_kpis", day)
    assert result.success
    [event] = result.asset_materializations_for_node("analytics_cdr_daily_kpis")
    assert event.partition == day
    metadata = {k: v.value for k, v in event.metadata.items()}
    [(calls, answered)] = pipeline.query(
        "SELECT count(*), count(*) FILTER (WHERE disposition = 'answered') FROM cdr "
        "WHERE call_date = ?",
        DAY,
    )
    assert calls > 0 and (metadata["calls"], metadata["answered"]) == (calls, answered)
    assert pipeline.query("SELECT pbx, timezone FROM pbxs ORDER BY pbx") == [
        ("hq", pipeline.config.pbxs[0].timezone),
        ("saigon", pipeline.config.pbxs[1].timezone),
    ]
