"""The real commands a data engineer runs, against an independently started simulator.

`dagster asset materialize -m cdr_assets.definitions` in separate processes, two partitions at
once, while an analyst holds the DuckDB file open read-only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.assets.conftest import SECRETS


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


def _materialize(env: dict[str, str], selection: str, partition: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "cdr_assets.definitions",
            "--select",
            selection,
            "--partition",
            partition,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output[-3000:]
    return output


def test_cli_materializes_both_vendors_in_parallel_beside_a_reader(
    simulator_process: str, tmp_path: Path
) -> None:
    config = _write_config(tmp_path, simulator_process)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, **SECRETS, "CDR_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(home)}

    output = _finish(_materialize(env, "hq/cdr,hq/recordings", "2026-06-27"))
    for secret in SECRETS.values():
        assert secret not in output

    duckdb_path = tmp_path / "data" / "cdr.duckdb"
    with duckdb.connect(str(duckdb_path), read_only=True) as analyst:
        running = [
            _materialize(env, "saigon/cdr,saigon/recordings", "2026-06-26"),
            _materialize(env, "saigon/cdr,saigon/recordings", "2026-06-27"),
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
