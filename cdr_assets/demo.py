"""The embedded demo behind `make demo` and `make dev`.

`python -m cdr_assets.demo run` starts the simulator, materializes the last three closed days
of both demo PBXs in `cdr_assets.yaml` with the real `dagster asset materialize` command, and
prints a DuckDB summary; `python -m cdr_assets.demo ui` serves the Dagster UI on the same setup.
The demo credentials below are the simulator's, not anybody's secrets.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from cdr_assets.config import CdrAssetsConfig, load_config

DEMO_DAYS = 3
DEMO_PORT = 8765
DEMO_CALLS_PER_DAY = 40
DEMO_ENV = {
    "CDR_DEMO_YEASTAR_CLIENT_ID": "demo-client",
    "CDR_DEMO_YEASTAR_CLIENT_SECRET": "demo-secret",
    "CDR_DEMO_ZORIO_TOKEN": "demo-token",
}


def demo_environment(root: Path) -> dict[str, str]:
    """Environment for the Dagster commands: config path, instance home, demo credentials."""
    home = root / ".dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(root / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **DEMO_ENV}
    env.setdefault("CDR_ASSETS_CONFIG", str(root / "cdr_assets.yaml"))
    env["DAGSTER_HOME"] = str(home)
    return env


@contextlib.contextmanager
def running_simulator(port: int = DEMO_PORT) -> Iterator[subprocess.Popen[str]]:
    """Start `python -m cdr_assets.simulator` and wait until it listens; stop it on exit."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cdr_assets.simulator",
            "--port",
            str(port),
            "--calls-per-day",
            str(DEMO_CALLS_PER_DAY),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "listening" not in line:
            raise SystemExit(
                f"the simulator did not start on port {port} (is the port in use?): {line!r}"
            )
        yield process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


def closed_days(timezone: str, count: int, now: datetime | None = None) -> tuple[date, date]:
    """The last `count` days that have ended on the PBX's local clock."""
    today = (now or datetime.now(ZoneInfo(timezone))).astimezone(ZoneInfo(timezone)).date()
    return today - timedelta(days=count), today - timedelta(days=1)


def materialize_recent_days(config: CdrAssetsConfig, env: dict[str, str]) -> None:
    for pbx in config.pbxs:
        first, last = closed_days(pbx.timezone, DEMO_DAYS)
        selection = f"{pbx.name}/cdr" + (
            f",{pbx.name}/recordings" if pbx.archive_recordings else ""
        )
        print(f"materializing {selection} for {first}...{last}", flush=True)
        subprocess.run(
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
                "--partition-range",
                f"{first}...{last}",
            ],
            env=env,
            check=True,
        )


def print_summary(config: CdrAssetsConfig) -> None:
    """Counts per PBX and day, plus the archive's own verification, read-only."""
    with duckdb.connect(config.storage.duckdb_path, read_only=True) as con:
        print("\nCDRs per PBX and day:")
        for row in con.execute(
            "SELECT pbx, vendor, call_date, count(*) AS calls, "
            "count(*) FILTER (WHERE has_recording) AS with_recording "
            "FROM cdr GROUP BY ALL ORDER BY pbx, call_date"
        ).fetchall():
            print("  {} ({}) {}: {} calls, {} with recording".format(*row))
        duplicates = con.execute(
            "SELECT count(*) - count(DISTINCT (pbx, cdr_id)) FROM cdr"
        ).fetchone()[0]
        unarchived = con.execute(
            "SELECT count(*) FROM cdr c LEFT JOIN recordings r USING (pbx, cdr_id) "
            "WHERE c.has_recording AND coalesce(r.status, '') <> 'archived'"
        ).fetchone()[0]
        archived = con.execute(
            "SELECT uri, sha256 FROM recordings WHERE status = 'archived'"
        ).fetchall()
    bad_files = sum(1 for uri, sha in archived if _sha256(uri) != sha)
    print(f"\nduplicate (pbx, cdr_id): {duplicates}")
    print(f"recordings archived: {len(archived)}, files failing sha256: {bad_files}")
    print(f"has_recording rows without an archived recording: {unarchived}")
    print(f"\nDuckDB file: {config.storage.duckdb_path} (open it read-only to query)")
    if duplicates or unarchived or bad_files:
        raise SystemExit("demo verification failed")


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cdr_assets.demo", description=__doc__)
    parser.add_argument("command", choices=["run", "ui"])
    args = parser.parse_args(argv)
    root = Path.cwd()
    env = demo_environment(root)
    config = load_config(env["CDR_ASSETS_CONFIG"])
    with running_simulator():
        if args.command == "run":
            materialize_recent_days(config, env)
            print_summary(config)
        else:
            subprocess.run(
                [sys.executable, "-m", "dagster", "dev", "-m", "cdr_assets.definitions"],
                env=env,
                check=False,
            )


if __name__ == "__main__":
    main()
