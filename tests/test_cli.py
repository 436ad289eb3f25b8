"""The real commands a data engineer runs, against an independently started simulator.

`dg launch` from the repository root (the dg project of pyproject.toml), in separate processes:
two partitions at once while an analyst holds the DuckDB file open read-only, and a range run
that records one materialization per day, with that day's row count, in the DAGSTER_HOME
instance. No output may carry a secret or a warning.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from tests.assets.conftest import SECRETS

REPO_ROOT = Path(__file__).resolve().parents[1]
#: What a deprecation, supersession, beta or preview notice (or any warning) would print.
WARNING_WORDS = re.compile(r"warning|deprecat|supersed|beta|preview", re.IGNORECASE)


@pytest.fixture
def simulator_process() -> Iterator[str]:
    """`python -m cdr_assets.simulator` on a free port, as a separate process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cdr_assets.simulator", "--port", "0", "--calls-per-day", "16"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert "listening on " in line, line
        yield line.split("listening on ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _write_config(tmp_path: Path, base_url: str) -> Path:
    config = {
        "storage": {
            "data_dir": str(tmp_path / "data"),
            "duckdb_path": str(tmp_path / "data" / "cdr.duckdb"),
            "recordings_dir": str(tmp_path / "data" / "recordings"),
        },
        "pbxs": [
            {
                "name": "hq",
                "vendor": "yeastar",
                "base_url": base_url,
                "timezone": "Asia/Singapore",
                "start_date": "2026-06-01",
                "client_id": {"env": "T_YEASTAR_ID"},
                "client_secret": {"env": "T_YEASTAR_SECRET"},
            },
            {
                "name": "saigon",
                "vendor": "zorio",
                "base_url": base_url,
                "timezone": "Asia/Ho_Chi_Minh",
                "start_date": "2026-06-01",
                "api_token": {"env": "T_ZORIO_TOKEN"},
            },
        ],
    }
    path = tmp_path / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _dg_env(tmp_path: Path, config: Path) -> dict[str, str]:
    """The user's environment: config, secrets, an instance home, the venv `dg` runs in."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    return {
        **os.environ,
        **SECRETS,
        "CDR_ASSETS_CONFIG": str(config),
        "DAGSTER_HOME": str(home),
        "VIRTUAL_ENV": sys.prefix,
    }


def _launch(env: dict[str, str], selection: str, *partition: str) -> subprocess.Popen[str]:
    """`dg launch --assets <selection> --partition[-range] <key>` in the project root."""
    dg_command = shutil.which("dg", path=str(Path(sys.executable).parent))
    assert dg_command, "dg is not installed next to this interpreter"
    return subprocess.Popen(
        [dg_command, "launch", "--assets", selection, *partition],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output[-3000:]
    for secret in SECRETS.values():
        assert secret not in output
    noisy = [line for line in output.splitlines() if WARNING_WORDS.search(line)]
    assert noisy == [], noisy
    return output


def test_cli_materializes_both_vendors_in_parallel_beside_a_reader(
    simulator_process: str, tmp_path: Path
) -> None:
    env = _dg_env(tmp_path, _write_config(tmp_path, simulator_process))

    _finish(_launch(env, "hq/cdr,hq/recordings", "--partition", "2026-06-27"))

    duckdb_path = tmp_path / "data" / "cdr.duckdb"
    with duckdb.connect(str(duckdb_path), read_only=True) as analyst:
        running = [
            _launch(env, "saigon/cdr,saigon/recordings", "--partition", "2026-06-26"),
            _launch(env, "saigon/cdr,saigon/recordings", "--partition", "2026-06-27"),
        ]
        for process in running:
            _finish(process)
        rows = analyst.execute(
            "SELECT pbx, call_date::VARCHAR, count(*), count(DISTINCT cdr_id) FROM cdr "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        assert [r[:2] for r in rows] == [
            ("hq", "2026-06-27"),
            ("saigon", "2026-06-26"),
            ("saigon", "2026-06-27"),
        ]
        assert all(total == distinct == 16 for *_, total, distinct in rows)
        unarchived = analyst.execute(
            "SELECT count(*) FROM cdr c LEFT JOIN recordings r USING (pbx, cdr_id) "
            "WHERE c.has_recording AND coalesce(r.status, '') <> 'archived'"
        ).fetchone()
        assert unarchived == (0,)


def test_range_run_records_one_materialization_per_day_with_its_row_count(
    simulator_process: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _dg_env(tmp_path, _write_config(tmp_path, simulator_process))
    days = ["2026-06-25", "2026-06-26", "2026-06-27"]

    _finish(
        _launch(env, "saigon/cdr,saigon/recordings", "--partition-range", f"{days[0]}...{days[-1]}")
    )

    with duckdb.connect(str(tmp_path / "data" / "cdr.duckdb"), read_only=True) as con:
        stored = {
            day: (calls, with_recording)
            for day, calls, with_recording in con.execute(
                "SELECT call_date::VARCHAR, count(*), count(*) FILTER (WHERE has_recording) "
                "FROM cdr WHERE pbx = 'saigon' GROUP BY ALL"
            ).fetchall()
        }
    assert sorted(stored) == days
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        per_asset = {
            name: instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(["saigon", name])), limit=100
            ).records
            for name in ("cdr", "recordings")
        }
        run_ids = {record.run_id for records in per_asset.values() for record in records}
        assert len(run_ids) == 1, "a range run is one run"
        run = instance.get_run_by_id(run_ids.pop())
    assert run is not None
    assert run.tags["dagster/asset_partition_range_start"] == days[0]
    assert run.tags["dagster/asset_partition_range_end"] == days[-1]
    for name, column in (("cdr", 0), ("recordings", 1)):
        records = per_asset[name]
        assert sorted(record.partition_key for record in records) == days, name
        for record in records:
            assert record.asset_materialization is not None
            row_count = record.asset_materialization.metadata["dagster/partition_row_count"]
            assert row_count.value == stored[record.partition_key][column], (name, record)
