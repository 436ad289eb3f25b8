"""`python -m benchmarks.run --smoke` at tiny sizes: the harness produces its tables and targets
(no timing is asserted; the Dagster and latency tables are left out to stay under a minute)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_run_writes_the_loopback_recordings_and_targets_tables(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--smoke",
            "--tables",
            "loopback,recordings",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "latest.md").read_text()
    assert [p.name for p in tmp_path.glob("*-smoke.md")]
    for heading in ("## 1. Loopback", "## 4. Recordings", "## 5. Targets", "## Machine"):
        assert heading in report
    # Every cdr_assets row kept the day's 3,000 calls, through the fast path, both vendors.
    rows = [line for line in report.splitlines() if "| cdr_assets |" in line]
    assert len(rows) == 3 and all("| 3,000 |" in row for row in rows)
    assert report.count("fast path: yes") == 3
    assert "| 20 recordings: archiver | 20/20 |" in report
    assert "- cpu: " in report and "- date: " in report
