"""The UI path end to end: `dg dev` (webserver + daemon, the repo's `dagster.yaml`) on loopback,
driven over GraphQL as the UI drives it, against the simulator.

One `dg dev` serves both tests (module scope). The schedule test runs first: its daily cron is
placed a minute or two ahead (each PBX's `schedule_lag_minutes` = that instant's local minute of
day in the PBX's zone, since no mutation forces a tick) and must be turned on before that minute
comes; the backfill test then has the instance to itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
import yaml

from cdr_assets.config import CdrAssetsConfig, PbxConfigBase, load_config
from cdr_assets.simulator import Simulator, SimulatorConfig
from tests.fixtures.dagster_dev import (
    BACKFILL,
    CHECK_EXECUTIONS,
    LAUNCH_BACKFILL,
    MATERIALIZATIONS,
    SCHEDULE,
    START_SCHEDULE,
    STOP_SCHEDULE,
    TERMINAL_BACKFILL_STATUSES,
    TERMINAL_RUN_STATUSES,
    DagsterDev,
    partitions_by_assets,
    poll,
    running_dagster_dev,
)
from tests.fixtures.schedule_tick import next_tick, schedule_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRETS = {
    "UI_YEASTAR_ID": "demo-client",
    "UI_YEASTAR_SECRET": "demo-secret",
    "UI_ZORIO_TOKEN": "demo-token",
}
YEASTAR_ZONE = "Asia/Singapore"
ZORIO_ZONE = "America/New_York"
CALLS_PER_DAY = 12
#: The simulator record field each vendor's cdr_id comes from.
ID_FIELDS = {"yeastar": "uid", "zorio": "uuid"}
BACKFILL_DAYS = 14
#: The tick is the first whole minute at least this far from writing the config: dg dev must
#: have loaded and the test turned the schedules on by then (startup measured 7-16 s here).
TICK_LEAD_S = 45
CHECKS = {
    "hq": {
        "cdr": ["cdr_id_unique", "cdr_complete", "no_rejected_records", "cdr_in_query_window"],
        "recordings": ["every_recording_archived"],
    },
    "nyc": {
        "cdr": ["cdr_id_unique", "cdr_complete", "no_rejected_records"],
        "recordings": ["every_recording_archived"],
    },
}


def last_closed_day(timezone: str, at: datetime | None = None) -> date:
    return (at or datetime.now(UTC)).astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)


@dataclass
class UiSetup:
    dev: DagsterDev
    sim: Simulator
    config: CdrAssetsConfig
    location: str
    tick: datetime

    def pbx(self, name: str) -> PbxConfigBase:
        return next(p for p in self.config.pbxs if p.name == name)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Read the DuckDB file as an analyst would (read-only; no run writes it by then)."""
        with duckdb.connect(self.config.storage.duckdb_path, read_only=True) as con:
            return con.execute(sql, list(params)).fetchall()

    def expected_calls(self, pbx: str, day: date) -> list[dict[str, Any]]:
        return self.sim.calls(self.pbx(pbx).vendor, day)


def write_config(root: Path, sim: Simulator, tick: datetime) -> Path:
    data = root / "data"
    start = (datetime.now(UTC) - timedelta(days=40)).date().isoformat()
    config = {
        "storage": {
            "data_dir": str(data),
            "duckdb_path": str(data / "cdr.duckdb"),
            "recordings_dir": str(data / "recordings"),
        },
        "pbxs": [
            {
                "name": "hq",
                "vendor": "yeastar",
                "base_url": sim.base_url,
                "timezone": YEASTAR_ZONE,
                "start_date": start,
                "client_id": {"env": "UI_YEASTAR_ID"},
                "client_secret": {"env": "UI_YEASTAR_SECRET"},
                **schedule_settings(tick, YEASTAR_ZONE),
            },
            {
                "name": "nyc",
                "vendor": "zorio",
                "base_url": sim.base_url,
                "timezone": ZORIO_ZONE,
                "start_date": start,
                "api_token": {"env": "UI_ZORIO_TOKEN"},
                **schedule_settings(tick, ZORIO_ZONE),
            },
        ],
    }
    path = root / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def dg_environment(home: Path, config_path: Path) -> dict[str, str]:
    """The environment `dg dev` runs in: this venv, a fresh instance with the repo's
    dagster.yaml, the temp config and the simulator's demo credentials."""
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **SECRETS,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": sys.prefix,
        "DAGSTER_HOME": str(home),
        "CDR_ASSETS_CONFIG": str(config_path),
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
    }


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiSetup]:
    root = tmp_path_factory.mktemp("ui")
    sim_config = SimulatorConfig(calls_per_day=CALLS_PER_DAY).with_overrides(
        yeastar={"timezone": YEASTAR_ZONE}, zorio={"timezone": ZORIO_ZONE}
    )
    with Simulator(sim_config) as sim:
        tick = next_tick(datetime.now(UTC), TICK_LEAD_S)
        config_path = write_config(root, sim, tick)
        env = dg_environment(root / "dagster_home", config_path)
        dg = str(Path(sys.executable).parent / "dg")
        with running_dagster_dev(
            [dg, "dev"], cwd=REPO_ROOT, env=env, log_path=root / "dg_dev.log"
        ) as dev:
            yield UiSetup(dev, sim, load_config(config_path), dev.code_location(), tick)


def _selector(ui: UiSetup, schedule: str) -> dict[str, str]:
    return {
        "repositoryName": "__repository__",
        "repositoryLocationName": ui.location,
        "scheduleName": schedule,
    }


def _schedule(ui: UiSetup, name: str) -> dict[str, Any]:
    found = ui.dev.gql(SCHEDULE, {"selector": _selector(ui, name)})["scheduleOrError"]
    assert found["__typename"] == "Schedule", found
    return found


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def _assert_days_stored(ui: UiSetup, pbx: str, days: list[date]) -> dict[date, int]:
    """Each day's CDRs in DuckDB are exactly the simulator's calls, each once; returns rows."""
    rows = {
        (day, cdr_id): count
        for day, cdr_id, count in ui.query(
            "SELECT call_date, cdr_id, count(*) FROM cdr WHERE pbx = ? GROUP BY ALL", pbx
        )
    }
    id_field = ID_FIELDS[ui.pbx(pbx).vendor]
    counts = {}
    for day in days:
        expected = {call[id_field] for call in ui.expected_calls(pbx, day)}
        stored = {cdr_id: n for (d, cdr_id), n in rows.items() if d == day}
        assert set(stored) == expected, f"{pbx} {day}: CDR ids differ from the simulator's"
        assert set(stored.values()) == {1}, f"{pbx} {day}: CDRs stored more than once: {stored}"
        counts[day] = len(stored)
    return counts


def _finished_tick(ui: UiSetup, name: str) -> dict[str, Any]:
    """The schedule's first tick that is no longer STARTED (the cron minute must come)."""
    ticks = poll(
        lambda: [
            t for t in _schedule(ui, name)["scheduleState"]["ticks"] if t["status"] != "STARTED"
        ],
        bool,
        timeout_s=(ui.tick - datetime.now(UTC)).total_seconds() + 120,
        what=f"a finished tick of {name} (due at {ui.tick})",
        interval_s=2,
    )
    return ticks[-1]


def _finished_runs(ui: UiSetup, run_ids: list[str], *, what: str) -> list[dict[str, Any]]:
    return poll(
        lambda: ui.dev.runs(run_ids),
        lambda runs: (
            len(runs) == len(run_ids) and all(r["status"] in TERMINAL_RUN_STATUSES for r in runs)
        ),
        timeout_s=240,
        what=what,
        interval_s=2,
    )


def test_schedule_tick_requests_the_closed_day_and_the_days_before(ui: UiSetup) -> None:
    schedules = {pbx.name: f"{pbx.name}_daily" for pbx in ui.config.pbxs}
    state_ids = {}
    try:
        for name in schedules.values():
            started = ui.dev.gql(START_SCHEDULE, {"selector": _selector(ui, name)})
            result = started["startSchedule"]
            assert result["__typename"] == "ScheduleStateResult", result
            assert result["scheduleState"]["status"] == "RUNNING", result
            state_ids[name] = result["scheduleState"]["id"]
        margin = (ui.tick - datetime.now(UTC)).total_seconds()
        assert margin > 5, f"schedules turned on {-margin:.0f}s after their tick {ui.tick}"

        for pbx_name, name in schedules.items():
            pbx = ui.pbx(pbx_name)
            schedule = _schedule(ui, name)
            lag = pbx.schedule_lag_minutes
            assert schedule["cronSchedule"] == f"{lag % 60} {lag // 60} * * *"
            assert schedule["executionTimezone"] == pbx.timezone

            tick = _finished_tick(ui, name)
            assert tick["status"] == "SUCCESS", tick
            assert tick["timestamp"] == ui.tick.timestamp(), tick

            closed = last_closed_day(pbx.timezone, at=ui.tick)
            expected = [closed - timedelta(days=k) for k in range(pbx.schedule_rerun_days + 1)]
            runs = _finished_runs(ui, tick["runIds"], what=f"the runs of {name}'s tick")
            ui.dev.assert_runs_succeeded(runs)
            assert sorted(_tags(r)["dagster/partition"] for r in runs) == sorted(
                d.isoformat() for d in expected
            ), f"{name} ({pbx.timezone}) ticked at {ui.tick}: closed day {closed}"
            assert {_tags(r)["dagster/schedule_name"] for r in runs} == {name}
            assert {r["jobName"] for r in runs} == {f"{pbx_name}_daily_job"}
            _assert_days_stored(ui, pbx_name, expected)
    finally:
        for state_id in state_ids.values():
            ui.dev.gql(STOP_SCHEDULE, {"id": state_id})
    for name in schedules.values():
        assert _schedule(ui, name)["scheduleState"]["status"] == "STOPPED"


def _metadata(event: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for entry in event["metadataEntries"]:
        for field in ("intValue", "floatValue", "text"):
            if field in entry:
                values[entry["label"]] = entry[field]
    return values


def _backfill_materializations(
    ui: UiSetup, key: list[str], days: list[date], run_ids: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """partition -> metadata of each materialization the backfill's runs made of `key`."""
    found = ui.dev.gql(
        MATERIALIZATIONS,
        {
            "key": {"path": key},
            "partitions": [d.isoformat() for d in days],
        },
    )["assetOrError"]
    assert found["__typename"] == "Asset", found
    by_day: dict[str, list[dict[str, Any]]] = {}
    for event in found["assetMaterializations"]:
        if event["runId"] in run_ids:
            by_day.setdefault(event["partition"], []).append(_metadata(event))
    return by_day


def _backfill_check_results(
    ui: UiSetup, key: list[str], check: str, run_ids: set[str]
) -> dict[str, list[str]]:
    """partition -> statuses of the check's executions in the backfill's runs."""
    executions = ui.dev.gql(CHECK_EXECUTIONS, {"key": {"path": key}, "name": check, "limit": 200})[
        "assetCheckExecutions"
    ]
    by_day: dict[str, list[str]] = {}
    for execution in executions:
        if execution["runId"] in run_ids:
            partition = execution["partition"] or (execution["evaluation"] or {}).get("partition")
            by_day.setdefault(partition, []).append(execution["status"])
    return by_day


def test_backfill_of_two_pbxs_over_graphql(ui: UiSetup) -> None:
    days = {
        pbx.name: [
            last_closed_day(pbx.timezone) - timedelta(days=k)
            for k in range(BACKFILL_DAYS - 1, -1, -1)
        ]
        for pbx in ui.config.pbxs
    }
    launched = ui.dev.gql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionsByAssets": partitions_by_assets(
                    (pbx, d[0], d[-1]) for pbx, d in days.items()
                ),
                "title": "test_dagster_dev: 14 days of both PBXs",
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    backfill = poll(
        lambda: ui.dev.gql(BACKFILL, {"id": launched["backfillId"]})["partitionBackfillOrError"],
        lambda b: (
            b["__typename"] != "PartitionBackfill"
            or b["status"] in TERMINAL_BACKFILL_STATUSES
            or any(r["status"] in ("FAILURE", "CANCELED") for r in b["runs"])
        ),
        timeout_s=300,
        what=f"backfill {launched['backfillId']}",
        interval_s=2,
    )
    assert backfill["__typename"] == "PartitionBackfill", backfill
    runs = backfill["runs"]
    ui.dev.assert_runs_succeeded(runs)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    # a single-run backfill policy: one run per PBX covering its whole range
    ranges = sorted(
        (
            _tags(r)["dagster/asset_partition_range_start"],
            _tags(r)["dagster/asset_partition_range_end"],
        )
        for r in runs
    )
    assert ranges == sorted((d[0].isoformat(), d[-1].isoformat()) for d in days.values())
    run_ids = {r["runId"] for r in runs}

    for pbx, pbx_days in days.items():
        rows = _assert_days_stored(ui, pbx, pbx_days)
        assert all(n == CALLS_PER_DAY for n in rows.values()), rows

        recordings = {
            (day, cdr_id): (status, uri, sha256)
            for day, cdr_id, status, uri, sha256 in ui.query(
                "SELECT call_date, cdr_id, status, uri, sha256 FROM recordings WHERE pbx = ?", pbx
            )
        }
        with_recording = {
            (day, cdr_id)
            for day, cdr_id in ui.query(
                "SELECT call_date, cdr_id FROM cdr WHERE pbx = ? AND has_recording", pbx
            )
            if day in pbx_days
        }
        served = {
            (day, call[ID_FIELDS[ui.pbx(pbx).vendor]])
            for day in pbx_days
            for call in ui.expected_calls(pbx, day)
            if call.get("record_file") or call.get("recording_available")
        }
        assert with_recording == served, f"{pbx}: has_recording differs from the simulator's"
        assert served, f"{pbx}: the simulator served no call with a recording"
        for ref in with_recording:
            status, uri, sha256 = recordings.get(ref, (None, None, None))
            assert status == "archived", (pbx, ref, status)
            assert hashlib.sha256(Path(uri).read_bytes()).hexdigest() == sha256, (pbx, ref, uri)

        cdr = _backfill_materializations(ui, [pbx, "cdr"], pbx_days, run_ids)
        rec = _backfill_materializations(ui, [pbx, "recordings"], pbx_days, run_ids)
        for day in pbx_days:
            key = day.isoformat()
            assert len(cdr.get(key, [])) == 1, f"{pbx}/cdr {key}: {cdr.get(key)}"
            assert cdr[key][0]["dagster/partition_row_count"] == rows[day], (pbx, key, cdr[key])
            archived = sum(1 for d, _ in with_recording if d == day)
            assert len(rec.get(key, [])) == 1, f"{pbx}/recordings {key}: {rec.get(key)}"
            assert rec[key][0]["dagster/partition_row_count"] == archived, (pbx, key, rec[key])
            assert rec[key][0]["archived"] == archived, (pbx, key, rec[key])

        for asset, names in CHECKS[pbx].items():
            for check in names:
                results = _backfill_check_results(ui, [pbx, asset], check, run_ids)
                assert results == {d.isoformat(): ["SUCCEEDED"] for d in pbx_days}, (
                    f"{pbx}/{asset}:{check}: {results}"
                )


def test_tick_time_helpers() -> None:
    now = datetime(2026, 12, 1, 15, 58, 30, tzinfo=UTC)
    assert next_tick(now, 60) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert next_tick(now, 30) == datetime(2026, 12, 1, 15, 59, tzinfo=UTC)
    # 16:00 UTC is 00:00 in Singapore (the day that closed is 1 December there) and 11:00 in
    # New York; a tick at 23:59 local leaves the freshness deadline inside the day.
    assert schedule_settings(datetime(2026, 12, 1, 16, 0, tzinfo=UTC), YEASTAR_ZONE) == {
        "schedule_lag_minutes": 0,
        "freshness_grace_minutes": 120,
    }
    assert schedule_settings(datetime(2026, 12, 1, 16, 0, tzinfo=UTC), ZORIO_ZONE) == {
        "schedule_lag_minutes": 660,
        "freshness_grace_minutes": 120,
    }
    assert schedule_settings(datetime(2026, 12, 1, 15, 59, tzinfo=UTC), YEASTAR_ZONE) == {
        "schedule_lag_minutes": 1439,
        "freshness_grace_minutes": 0,
    }
    assert last_closed_day(YEASTAR_ZONE, datetime(2026, 12, 1, 16, 0, tzinfo=UTC)) == date(
        2026, 12, 1
    )
    assert last_closed_day(ZORIO_ZONE, datetime(2026, 12, 1, 16, 0, tzinfo=UTC)) == date(
        2026, 11, 30
    )
