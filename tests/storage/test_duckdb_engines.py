"""The storage tests again on the newest DuckDB that DuckDB's own httpfs is on PyPI for.

The suite runs on the DuckDB `pyproject.toml` resolves (2.x), whose httpfs is not on PyPI, so
there the S3 views are read through s3fs. `duckdb-extension-httpfs` ships httpfs for exactly one
DuckDB version (and pins `duckdb` to it), so this test installs the pair into a directory of its
own beside the venv and runs `tests/storage` in a child process with that directory first on
the path: the S3 reader must read through httpfs with a secret from the environment, and the
views must hold on an engine without `read_parquet(allow_empty)`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.storage.test_object_storage import READ_VIA_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
# The newest DuckDB line with a PyPI httpfs build; the package pins `duckdb` to its own version.
HTTPFS_REQUIREMENT = "duckdb-extension-httpfs>=1.5,<1.6"
TARGET = Path(sys.prefix) / "duckdb-httpfs-1.5"


def _httpfs_dir() -> Path:
    """`TARGET` with duckdb and its httpfs in it, installed from PyPI on first use."""
    if not (TARGET / "duckdb_extension_httpfs").is_dir():
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--target", str(TARGET), HTTPFS_REQUIREMENT,
            ],
            check=True,
        )  # fmt: skip
    return TARGET


def _env(target: Path) -> dict[str, str]:
    path = [str(target), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, path)),
        READ_VIA_ENV: "httpfs",
    }


def test_the_storage_tests_pass_on_duckdb_1_5_reading_s3_through_httpfs() -> None:
    env = _env(_httpfs_dir())
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb; from cdr_assets.storage.duckdb import allow_empty_scans, load_httpfs;"
            "print(duckdb.__version__, load_httpfs(duckdb.connect()), allow_empty_scans())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    version, httpfs, allow_empty = probe.stdout.split()
    assert version.startswith("1.5.") and version != duckdb.__version__, probe.stdout
    assert (httpfs, allow_empty) == ("True", "False"), probe.stdout

    here = Path(__file__).relative_to(REPO_ROOT)
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            str(here.parent), f"--ignore={here}",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=900,
    )  # fmt: skip
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
