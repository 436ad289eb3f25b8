"""`cdr_assets verify-archive`, the installed console command, against an archive on disk."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import yaml

from tests.fixtures.archive_day import archive_day

DAY = date(2026, 6, 27)


def _config(tmp_path: Path) -> Path:
    config = {
        "storage": {
            "data_dir": str(tmp_path),
            "recordings_dir": str(tmp_path / "recordings"),
            "duckdb_path": str(tmp_path / "cdr.duckdb"),
        },
        "pbxs": [
            {
                "name": "saigon",
                "vendor": "zorio",
                "base_url": "http://127.0.0.1:9",
                "timezone": "Asia/Ho_Chi_Minh",
                "start_date": "2026-06-01",
                "api_token": {"env": "UNUSED_TOKEN"},
            }
        ],
    }
    path = tmp_path / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("cdr_assets", path=str(Path(sys.executable).parent))
    assert command, "the cdr_assets console script is not installed next to this interpreter"
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=120)


def test_verify_archive_lists_what_changed_and_exits_1(make_simulator, tmp_path: Path) -> None:
    config = _config(tmp_path)
    rows = archive_day(make_simulator(calls_per_day=20), tmp_path, "saigon", DAY, 3)

    clean = _run("verify-archive", "--config", str(config))
    assert clean.returncode == 0, clean.stderr
    assert "checked 3 of 3 archived recordings in 1 day (" in clean.stdout
    assert "no problems" in clean.stdout

    Path(rows[1].uri).unlink()
    broken = _run("verify-archive", "--config", str(config), "--from", "2026-06-27")
    assert broken.returncode == 1
    assert f"saigon 2026-06-27 {rows[1].cdr_id}: file is missing" in broken.stdout
    assert "1 problem" in broken.stdout


def test_verify_archive_names_a_bad_argument(tmp_path: Path) -> None:
    result = _run("verify-archive", "--config", str(_config(tmp_path)), "--pbx", "nope")
    assert result.returncode == 2 and "no PBX 'nope'" in result.stderr
    assert _run("frobnicate").returncode == 2
