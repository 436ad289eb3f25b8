"""The six-PBX fleet of `examples/fleet/`: it loads with each PBX's assets, checks, schedule and
pool, and one backfill materializes a week of every PBX through `dg dev` with every check green.

The PBXs are the example's simulated ones (`examples/fleet/simulator.yaml`: three Yeastar, three
Zorio, each under `/pbx/<name>` of one simulator, with its own credentials, zone, seed and
format), the instance uses the example's `dagster.yaml` (a pool of one slot per PBX, no
instance-wide cap of 4 runs). The week holds Lord Howe's 23.5-hour day (4 October 2026).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml

from cdr_assets import CdrAssetsComponent
from cdr_assets.config import CdrAssetsConfig, PbxConfigBase, load_config
from cdr_assets.errors import ConfigError
from cdr_assets.simulator import FleetPbxConfig, HostedPbx, Simulator, load_fleet
from tests.fixtures.dagster_dev import (
    BACKFILL,
    CHECK_EXECUTIONS,
    LAUNCH_BACKFILL,
    MATERIALIZATIONS,
    TERMINAL_BACKFILL_STATUSES,
    DagsterDev,
    partitions_by_assets,
    poll,
    running_dagster_dev,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "fleet"
FIRST_DAY, LAST_DAY = date(2026, 9, 29), date(2026, 10, 5)
WEEK = [FIRST_DAY + timedelta(days=k) for k in range((LAST_DAY - FIRST_DAY).days + 1)]
#: Small days keep a week of six PBXs quick: ~3 recordings a day each.
CALLS_PER_DAY, RECORDING_RATIO = 20, 0.2
ID_FIELDS = {"yeastar": "uid", "zorio": "uuid"}

ASSET_NODES = """
{ assetNodes { assetKey { path } groupName pools
    partitionDefinition { description }
    assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } } } }"""

POOLS_AND_RUN_TIMES = """
query PoolsAndRunTimes($ids: [String]) {
  instance { concurrencyLimits { concurrencyKey slotCount } }
  runsOrError(filter: {runIds: $ids}) { __typename
    ... on Runs { results { runId startTime endTime } } } }"""

SCHEDULES = """
query Schedules($selector: RepositorySelector!) {
  schedulesOrError(repositorySelector: $selector) { __typename
    ... on Schedules { results { name cronSchedule executionTimezone } }
    ... on PythonError { message } } }"""


MATERIALIZATION_METADATA = """
query Metadata($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) { __typename
    ... on Asset { assetMaterializations(partitions: $partitions) { runId partition
      metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""

CHECK_EXECUTIONS_METADATA = """
query CheckExecutions($key: AssetKeyInput!, $name: String!, $limit: Int!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: $limit) {
    runId status evaluation { success
      metadataEntries { label ... on IntMetadataEntry { intValue } } } } }"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } } } }"""


def fleet_env() -> dict[str, str]:
    """The example's credentials file (`KEY=VALUE` lines), as `set -a; . fleet.env` reads it."""
    pairs = {}
    for line in (EXAMPLE / "fleet.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _load_definitions(monkeypatch: pytest.MonkeyPatch, config: Path) -> dg.Definitions:
    monkeypatch.setenv("CDR_ASSETS_CONFIG", str(config))
    sys.modules.pop("cdr_assets.definitions", None)
    return importlib.import_module("cdr_assets.definitions").defs


def _check_names(defs: dg.Definitions, key: dg.AssetKey) -> set[str]:
    return {k.name for k in defs.resolve_assets_def(key).check_keys if k.asset_key == key}


def test_the_example_fleet_loads_each_pbx_with_assets_checks_schedule_and_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defs = _load_definitions(monkeypatch, EXAMPLE / "cdr_assets.yaml")
    dg.Definitions.validate_loadable(defs)
    config = load_config(EXAMPLE / "cdr_assets.yaml")
    names = [pbx.name for pbx in config.pbxs]
    assert len(names) == 6 and {pbx.vendor for pbx in config.pbxs} == {"yeastar", "zorio"}
    assert {"Asia/Kathmandu", "Australia/Lord_Howe"} <= {pbx.timezone for pbx in config.pbxs}
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    pbx_keys = {f"{name}/{asset}" for name in names for asset in ("cdr", "recordings")}
    assert keys == pbx_keys | {"analytics/cdr_daily_kpis"}
    schedules = {s.name: s for s in defs.schedules or []}
    assert set(schedules) == {
        f"{name}_{kind}" for name in names for kind in ("daily", "recordings_audit")
    }
    for pbx in config.pbxs:
        cdr = dg.AssetKey([pbx.name, "cdr"])
        assets = defs.resolve_assets_def(cdr)
        assert assets.partitions_def.timezone == pbx.timezone
        assert assets.op.pool == f"cdr_assets/{pbx.name}"
        assert {"cdr_id_unique", "cdr_complete"} <= _check_names(defs, cdr)
        recordings = dg.AssetKey([pbx.name, "recordings"])
        assert _check_names(defs, recordings) == {"every_recording_archived"}
        assert schedules[f"{pbx.name}_daily"].execution_timezone == pbx.timezone
    # the dg Component builds the same fleet from the same blocks
    component = CdrAssetsComponent(storage=config.storage, pbxs=config.pbxs)
    from_component = dg.component_defs(component=component)
    assert {key.to_user_string() for key in from_component.resolve_all_asset_keys()} == keys


def test_adding_a_pbx_is_one_config_block(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    document = yaml.safe_load((EXAMPLE / "cdr_assets.yaml").read_text())
    document["pbxs"].append(
        {
            "name": "tokyo",
            "vendor": "zorio",
            "base_url": "http://127.0.0.1:8766/pbx/tokyo",
            "timezone": "Asia/Tokyo",
            "start_date": "2026-11-01",
            "api_token": {"env": "FLEET_TOKYO_TOKEN"},
            "pool": "zorio_account",  # an override: a pool it could share with other PBXs
        }
    )
    path = tmp_path / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    defs = _load_definitions(monkeypatch, path)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {"tokyo/cdr", "tokyo/recordings"} <= keys and len(keys) == 15
    assert "tokyo_daily" in {s.name for s in defs.schedules or []}
    assert defs.resolve_assets_def(dg.AssetKey(["tokyo", "cdr"])).op.pool == "zorio_account"


def test_a_pool_name_with_whitespace_fails_at_load_naming_the_key(tmp_path: Path) -> None:
    document = yaml.safe_load((EXAMPLE / "cdr_assets.yaml").read_text())
    document["pbxs"][1]["pool"] = "kathmandu pool"
    path = tmp_path / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ConfigError, match=r"pbxs\[1\]: pool 'kathmandu pool' must not contain"):
        load_config(path)


def test_the_example_credentials_are_the_simulated_fleets() -> None:
    env = fleet_env()
    config = load_config(EXAMPLE / "cdr_assets.yaml")
    simulated = {pbx.name: pbx for pbx in load_fleet(EXAMPLE / "simulator.yaml")}
    assert set(simulated) == {pbx.name for pbx in config.pbxs}
    for pbx in config.pbxs:
        sim = simulated[pbx.name]
        assert sim.vendor == pbx.vendor and sim.timezone == pbx.timezone
        assert pbx.base_url == f"http://127.0.0.1:8766/pbx/{pbx.name}"
        if pbx.vendor == "yeastar":
            assert env[pbx.client_id.env] == sim.config.yeastar.client_id
            assert env[pbx.client_secret.env] == sim.config.yeastar.client_secret
        else:
            assert env[pbx.api_token.env] == sim.config.zorio.api_token


# --------------------------------------------------------------------------- dg dev


@dataclass
class Fleet:
    dev: DagsterDev
    sim: Simulator
    config: CdrAssetsConfig
    location: str

    def pbx(self, name: str) -> PbxConfigBase:
        return next(p for p in self.config.pbxs if p.name == name)

    def simulated(self, name: str) -> HostedPbx:
        return self.sim.pbx(name)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with duckdb.connect(self.config.storage.duckdb_path, read_only=True) as con:
            return con.execute(sql, list(params)).fetchall()


def small_fleet() -> list[FleetPbxConfig]:
    return [
        dataclasses.replace(
            pbx,
            config=pbx.config.with_overrides(
                calls_per_day=CALLS_PER_DAY, recording_ratio=RECORDING_RATIO
            ),
        )
        for pbx in load_fleet(EXAMPLE / "simulator.yaml")
    ]


def write_config(root: Path, sim: Simulator) -> Path:
    """The example's config with this simulator's port and a temp data directory."""
    document = yaml.safe_load((EXAMPLE / "cdr_assets.yaml").read_text())
    data = root / "data"
    document["storage"] = {
        "data_dir": str(data),
        "duckdb_path": str(data / "cdr.duckdb"),
        "recordings_dir": str(data / "recordings"),
        # the week lies months back: audit every day (a sample larger than the week's files)
        "recordings_audit": {"days": "all"},
    }
    for block in document["pbxs"]:
        block["base_url"] = sim.pbx(block["name"]).base_url
    path = root / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    with Simulator(fleet=small_fleet()) as sim:
        config_path = write_config(root, sim)
        home = root / "dagster_home"
        home.mkdir()
        shutil.copyfile(EXAMPLE / "dagster.yaml", home / "dagster.yaml")
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            **fleet_env(),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": sys.prefix,
            "DAGSTER_HOME": str(home),
            "CDR_ASSETS_CONFIG": str(config_path),
            "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        }
        with running_dagster_dev(
            [str(Path(bin_dir) / "dg"), "dev"],
            cwd=REPO_ROOT,
            env=env,
            log_path=root / "dg_dev.log",
        ) as dev:
            yield Fleet(dev, sim, load_config(config_path), dev.code_location())


def _asset_nodes(fleet: Fleet) -> dict[str, dict[str, Any]]:
    return {"/".join(n["assetKey"]["path"]): n for n in fleet.dev.gql(ASSET_NODES)["assetNodes"]}


def test_the_ui_shows_each_pbxs_assets_checks_schedule_and_pool(fleet: Fleet) -> None:
    nodes = _asset_nodes(fleet)
    selector = {"repositoryName": "__repository__", "repositoryLocationName": fleet.location}
    found = fleet.dev.gql(SCHEDULES, {"selector": selector})["schedulesOrError"]
    assert found["__typename"] == "Schedules", found
    schedules = {s["name"]: s for s in found["results"]}
    assert len(nodes) == 13 and len(schedules) == 12  # + analytics; daily + recordings_audit
    for pbx in fleet.config.pbxs:
        for asset in ("cdr", "recordings"):
            node = nodes[f"{pbx.name}/{asset}"]
            assert node["groupName"] == pbx.name and node["pools"] == [f"cdr_assets/{pbx.name}"]
            assert pbx.timezone in node["partitionDefinition"]["description"], node
            assert node["assetChecksOrError"]["__typename"] == "AssetChecks", node
        assert schedules[f"{pbx.name}_daily"]["executionTimezone"] == pbx.timezone


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def test_the_fleet_materializes_a_week_in_one_backfill_with_every_check_green(
    fleet: Fleet,
) -> None:
    names = [pbx.name for pbx in fleet.config.pbxs]
    launched = fleet.dev.gql(
        LAUNCH_BACKFILL,
        {
            "params": {
                # Each PBX's days are its own partitions definition (its zone): one backfill
                # over all of them names each asset's range.
                "partitionsByAssets": partitions_by_assets(
                    (name, FIRST_DAY, LAST_DAY) for name in names
                )
                + partitions_by_assets([("analytics", FIRST_DAY, LAST_DAY)], ["cdr_daily_kpis"]),
                "title": "test_fleet: a week of six PBXs",
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = poll(
        lambda: fleet.dev.gql(BACKFILL, {"id": launched["backfillId"]})["partitionBackfillOrError"],
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
    fleet.dev.assert_runs_succeeded(runs)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    # single-run backfill policy: one run per PBX (zone), each over the whole week; the fleet's
    # KPIs run as their dates' PBX days land (one run or a few, each a range of dates)
    analytics = ["analytics", "cdr_daily_kpis"]
    pbx_runs = [r for r in runs if analytics not in [a["path"] for a in r["assetSelection"]]]
    assert len(pbx_runs) == len(names), [_tags(r) for r in pbx_runs]
    assert {
        (
            _tags(r)["dagster/asset_partition_range_start"],
            _tags(r)["dagster/asset_partition_range_end"],
        )
        for r in pbx_runs
    } == {(FIRST_DAY.isoformat(), LAST_DAY.isoformat())}
    assert len(runs) > len(pbx_runs), "no run materialized analytics/cdr_daily_kpis"
    run_ids = {r["runId"] for r in runs}
    _assert_a_pool_per_pbx_and_runs_side_by_side(fleet, names, run_ids)
    nodes = _asset_nodes(fleet)
    for name in names:
        _assert_week_stored(fleet, name)
        _assert_recordings_archived(fleet, name)
        for asset in ("cdr", "recordings"):
            _assert_one_materialization_a_day(fleet, [name, asset], run_ids)
            checks = nodes[f"{name}/{asset}"]["assetChecksOrError"]["checks"]
            assert checks, f"{name}/{asset} has no checks"
            for check in checks:
                if check["name"] != "recordings_audit":  # not a day's check: its own job below
                    _assert_check_green_every_day(fleet, [name, asset], check["name"], run_ids)
    _assert_fleet_kpis_every_day(fleet, names, run_ids)
    _assert_recordings_audit_green(fleet, names)


def _assert_a_pool_per_pbx_and_runs_side_by_side(
    fleet: Fleet, names: list[str], run_ids: set[str]
) -> None:
    """Each PBX's step took a slot of its own pool (dagster.yaml's default_limit of 1 each), and
    the PBXs' runs overlapped: the instance is not throttled as a whole."""
    found = fleet.dev.gql(POOLS_AND_RUN_TIMES, {"ids": sorted(run_ids)})
    pools = {p["concurrencyKey"]: p["slotCount"] for p in found["instance"]["concurrencyLimits"]}
    assert pools == {f"cdr_assets/{name}": 1 for name in names}, pools
    spans = [(r["startTime"], r["endTime"]) for r in found["runsOrError"]["results"]]
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlap >= 2, f"the PBXs' runs never overlapped: {spans}"


def _assert_week_stored(fleet: Fleet, name: str) -> None:
    """DuckDB `cdr` holds each local day's calls exactly as the PBX served them, each once."""
    rows: dict[date, list[str]] = {}
    for day, cdr_id in fleet.query("SELECT call_date, cdr_id FROM cdr WHERE pbx = ?", name):
        rows.setdefault(day, []).append(cdr_id)
    assert set(rows) == set(WEEK), f"{name}: days stored {sorted(rows)}"
    id_field = ID_FIELDS[fleet.pbx(name).vendor]
    for day in WEEK:
        served = [call[id_field] for call in fleet.simulated(name).calls(day)]
        assert len(served) == CALLS_PER_DAY
        assert sorted(rows[day]) == sorted(served), f"{name} {day}: CDRs differ from the PBX's"


def _assert_recordings_archived(fleet: Fleet, name: str) -> None:
    """Every recording the PBX served in the week is archived, byte for byte."""
    simulated = fleet.simulated(name)
    served = {
        call["record_file"] if simulated.vendor == "yeastar" else call["uuid"]: day
        for day in WEEK
        for call in simulated.calls(day)
        if call.get("record_file") or call.get("recording_available")
    }
    assert served, f"{name}: the simulator served no recording in the week"
    archived = {
        ref: (day, status, uri, sha256)
        for ref, day, status, uri, sha256 in fleet.query(
            "SELECT c.recording_ref, r.call_date, r.status, r.uri, r.sha256 FROM recordings r "
            "JOIN cdr c USING (pbx, cdr_id, call_date) WHERE r.pbx = ?",
            name,
        )
    }
    assert set(archived) == set(served), f"{name}: archived refs differ from the served ones"
    for ref, (day, status, uri, sha256) in archived.items():
        assert (day, status) == (served[ref], "archived"), (name, ref, status)
        assert sha256 == simulated.recording_sha256(ref), (name, ref)
        assert hashlib.sha256(Path(uri).read_bytes()).hexdigest() == sha256, (name, ref, uri)


def _assert_one_materialization_a_day(fleet: Fleet, key: list[str], run_ids: set[str]) -> None:
    found = fleet.dev.gql(
        MATERIALIZATIONS,
        {
            "key": {"path": key},
            "partitions": [d.isoformat() for d in WEEK],
        },
    )["assetOrError"]
    assert found["__typename"] == "Asset", found
    days = sorted(e["partition"] for e in found["assetMaterializations"] if e["runId"] in run_ids)
    assert days == [d.isoformat() for d in WEEK], f"{'/'.join(key)}: materialized {days}"


def _assert_fleet_kpis_every_day(fleet: Fleet, names: list[str], run_ids: set[str]) -> None:
    """`analytics/cdr_daily_kpis` recorded each date's fleet total: every PBX's calls of its own
    local day."""
    found = fleet.dev.gql(
        MATERIALIZATION_METADATA,
        {
            "key": {"path": ["analytics", "cdr_daily_kpis"]},
            "partitions": [d.isoformat() for d in WEEK],
        },
    )["assetOrError"]
    assert found["__typename"] == "Asset", found
    calls = {
        e["partition"]: next(m["intValue"] for m in e["metadataEntries"] if m["label"] == "calls")
        for e in found["assetMaterializations"]
        if e["runId"] in run_ids
    }
    assert calls == {d.isoformat(): CALLS_PER_DAY * len(names) for d in WEEK}, calls


def _assert_recordings_audit_green(fleet: Fleet, names: list[str]) -> None:
    """Each PBX's `<name>_recordings_audit_job` (what its schedule runs) re-reads the week's
    archive and passes, having read every file (the sample exceeds the week's recordings)."""
    run_ids = {}
    for name in names:
        launched = fleet.dev.gql(
            LAUNCH_RUN,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": fleet.location,
                        "repositoryName": "__repository__",
                        "jobName": f"{name}_recordings_audit_job",
                    },
                    "runConfigData": {},
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_ids[name] = launched["run"]["runId"]
    runs = poll(
        lambda: fleet.dev.runs(list(run_ids.values())),
        lambda rs: all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in rs),
        timeout_s=240,
        what="the recordings_audit runs",
        interval_s=2,
    )
    fleet.dev.assert_runs_succeeded(runs)
    for name, run_id in run_ids.items():
        archived = fleet.query(
            "SELECT count(*) FROM recordings WHERE pbx = ? AND status = 'archived'", name
        )[0][0]
        executions = fleet.dev.gql(
            CHECK_EXECUTIONS_METADATA,
            {"key": {"path": [name, "recordings"]}, "name": "recordings_audit", "limit": 10},
        )["assetCheckExecutions"]
        mine = [e for e in executions if e["runId"] == run_id]
        assert [(e["status"], e["evaluation"]["success"]) for e in mine] == [("SUCCEEDED", True)]
        metadata = {m["label"]: m.get("intValue") for m in mine[0]["evaluation"]["metadataEntries"]}
        assert archived and metadata["checked"] == archived, (name, archived, metadata)


def _assert_check_green_every_day(
    fleet: Fleet, key: list[str], check: str, run_ids: set[str]
) -> None:
    executions = fleet.dev.gql(
        CHECK_EXECUTIONS, {"key": {"path": key}, "name": check, "limit": 100}
    )["assetCheckExecutions"]
    by_day: dict[str, list[tuple[str, bool | None]]] = {}
    for execution in executions:
        if execution["runId"] in run_ids:
            evaluation = execution["evaluation"] or {}
            partition = execution["partition"] or evaluation.get("partition")
            by_day.setdefault(partition, []).append(
                (execution["status"], evaluation.get("success"))
            )
    assert by_day == {d.isoformat(): [("SUCCEEDED", True)] for d in WEEK}, (
        f"{'/'.join(key)}:{check}: {by_day}"
    )
