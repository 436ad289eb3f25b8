"""A whole pipeline in a temp dir: a simulator, a config pointing at it, and materialize()."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from cdr_assets.assets import build_definitions
from cdr_assets.config import CdrAssetsConfig, parse_config
from cdr_assets.simulator import Simulator

SECRETS = {
    "T_YEASTAR_ID": "demo-client",
    "T_YEASTAR_SECRET": "demo-secret",
    "T_ZORIO_TOKEN": "demo-token",
}


def pipeline_config(
    sim: Simulator,
    root: Path,
    *,
    yeastar: dict[str, Any] | None = None,
    zorio: dict[str, Any] | None = None,
    storage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config dict with one PBX of each vendor, matching the simulator's time zones."""
    return {
        "storage": {
            "data_dir": str(root / "data"),
            "duckdb_path": str(root / "data" / "cdr.duckdb"),
            "recordings_dir": str(root / "data" / "recordings"),
            **(storage or {}),
        },
        "pbxs": [
            {
                "name": "hq",
                "vendor": "yeastar",
                "base_url": sim.base_url,
                "timezone": sim.config.yeastar.timezone,
                "start_date": "2026-01-01",
                "client_id": {"env": "T_YEASTAR_ID"},
                "client_secret": {"env": "T_YEASTAR_SECRET"},
                "page_size": 7,
                "max_retries": 2,
                **(yeastar or {}),
            },
            {
                "name": "saigon",
                "vendor": "zorio",
                "base_url": sim.base_url,
                "timezone": sim.config.zorio.timezone,
                "start_date": "2026-01-01",
                "api_token": {"env": "T_ZORIO_TOKEN"},
                "per_page": 9,
                "max_retries": 2,
                **(zorio or {}),
            },
        ],
    }


@dataclass
class Pipeline:
    sim: Simulator
    config: CdrAssetsConfig
    instance: dg.DagsterInstance
    #: The step retry policy (none by default: a test that wants one sets a quick one).
    retry_policy: dg.RetryPolicy | None = None

    @property
    def defs(self) -> dg.Definitions:
        return build_definitions(self.config, retry_policy=self.retry_policy)

    def materialize(
        self,
        selection: str | dg.AssetSelection,
        partition: str | None = None,
        *,
        partition_range: tuple[str, str] | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        defs = self.defs
        tags = {}
        if partition_range:
            tags = {
                "dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1],
            }
        if isinstance(selection, dg.AssetSelection):  # e.g. checks alone: run them as a job
            # As the UI does for checks: the partition goes in a tag (Dagster 1.13 derives a
            # job's partitions from its selected assets, and checks alone select none).
            if partition is not None:
                tags["dagster/partition"] = partition
            job = dg.define_asset_job("selected", selection=selection)
            selected = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
            return selected.resolve_job_def("selected").execute_in_process(
                instance=self.instance, tags=tags, raise_on_error=raise_on_error
            )
        return dg.materialize(
            list(defs.assets or []),
            resources=defs.resources,
            partition_key=partition,
            selection=[dg.AssetKey.from_user_string(key) for key in selection.split(",")],
            instance=self.instance,
            tags=tags,
            raise_on_error=raise_on_error,
        )

    def materializations(
        self, result: dg.ExecuteInProcessResult, key: str
    ) -> dict[str | None, dict[str, Any]]:
        """Each partition's materialization metadata (plain values) of asset `key` in a run."""
        pbx = key.split("/", 1)[0]
        out: dict[str | None, dict[str, Any]] = {}
        for event in result.asset_materializations_for_node(f"{pbx}_cdr_and_recordings"):
            if event.asset_key.to_user_string() == key:
                out[event.partition] = {k: v.value for k, v in event.metadata.items()}
        return out

    @staticmethod
    def checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str, str | None], bool]:
        """(asset key, check name, partition) -> passed, for every check result of a run."""
        return {
            (e.asset_key.to_user_string(), e.check_name, e.partition): e.passed
            for e in result.get_asset_check_evaluations()
        }

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with duckdb.connect(self.config.storage.duckdb_path, read_only=True) as con:
            return con.execute(sql, list(params)).fetchall()


@pytest.fixture
def make_pipeline(
    make_simulator: Callable[..., Simulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Pipeline]]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    instances: list[dg.DagsterInstance] = []

    def build(
        sim: Simulator | None = None,
        *,
        yeastar: dict[str, Any] | None = None,
        zorio: dict[str, Any] | None = None,
        storage: dict[str, Any] | None = None,
        sim_overrides: dict[str, Any] | None = None,
        calls_per_day: int = 24,
    ) -> Pipeline:
        """PBX/storage overrides go to the config; `sim_overrides` to the simulator."""
        sim = sim or make_simulator(calls_per_day=calls_per_day, **(sim_overrides or {}))
        config = parse_config(
            pipeline_config(sim, tmp_path, yeastar=yeastar, zorio=zorio, storage=storage)
        )
        instance = dg.DagsterInstance.ephemeral()
        instances.append(instance)
        return Pipeline(sim=sim, config=config, instance=instance)

    yield build
    for instance in instances:
        instance.dispose()


DAY = date(2026, 6, 27)
