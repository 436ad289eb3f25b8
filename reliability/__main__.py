"""`python -m reliability`: the fault matrix, one Markdown row per fault (`make reliability`).

Sets up the starting point once per vendor (the earlier day stored by a clean `dg launch`, and a
clean run of the day every case fetches), runs every case in a workspace of its own (`--jobs`
at a time), prints the table, writes it to `reliability/results/latest.md`, and exits 1 when
any row failed its verdict.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reliability.cases import CASES, Start, run_case
from reliability.daemon import run_daemon_session
from reliability.kills import (
    BIG_DAY,
    BIG_DAY_PBX,
    kill_during_parquet_write,
    kill_during_recordings,
)
from reliability.outcome import Reference, Row, markdown_table
from reliability.workspace import (
    EARLIER_DAY,
    REPO_ROOT,
    RUN_DAY,
    YEASTAR,
    ZORIO,
    PbxSpec,
    Workspace,
    copy_data,
    simulator_config,
    started_simulator,
)

RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"


def prepare(pbx: PbxSpec, scratch: Path, label: str, **simulator: Any) -> Start:
    """The earlier day stored by a clean run, and the clean run of RUN_DAY on a copy of it."""
    sim = started_simulator(simulator_config(**simulator))
    try:
        earlier = Workspace(scratch / f"start-{label}", (pbx,), sim.base_url)
        earlier.write_config()
        clean = Workspace(scratch / f"clean-{label}", (pbx,), sim.base_url)
        for workspace, day in ((earlier, EARLIER_DAY), (clean, RUN_DAY)):
            if workspace is clean:
                copy_data(earlier.data_dir, clean.data_dir)
                clean.write_config()
            launch = workspace.launch(pbx, day)
            if launch.returncode != 0:
                raise SystemExit(
                    f"the clean run of {pbx.name} {day} failed:\n{launch.output[-3000:]}"
                )
        recordings = simulator.get("recording_ratio", 1.0) > 0
        return Start(
            earlier.data_dir,
            earlier.earlier_fingerprint(pbx),
            Reference.of(clean, pbx, recordings=recordings),
            dict(simulator),
        )
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--only", help="run only the faults whose name contains this text")
    parser.add_argument("--jobs", type=int, default=3, help="cases run at once (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="cdr-reliability-"))
    print(f"[reliability] scratch {scratch}", flush=True)
    try:
        with ThreadPoolExecutor(3) as pool:
            starting = {
                "yeastar": pool.submit(prepare, YEASTAR, scratch, "yeastar"),
                "zorio": pool.submit(prepare, ZORIO, scratch, "zorio"),
                "big": pool.submit(prepare, BIG_DAY_PBX, scratch, "big", **BIG_DAY),
            }
            starts = {name: future.result() for name, future in starting.items()}
        print(f"[reliability] clean runs done in {time.monotonic() - began:.0f} s", flush=True)

        work: list[tuple[str, Callable[[], list[Row]]]] = [
            ("daemon", lambda: run_daemon_session(scratch)),
            ("kill parquet", lambda: [kill_during_parquet_write(starts["big"], scratch)]),
            ("kill recordings", lambda: [kill_during_recordings(starts["zorio"], scratch)]),
        ] + [
            (case.fault, lambda c=case: [run_case(c, starts[c.pbx.vendor], scratch)])
            for case in CASES
        ]
        if args.only:
            work = [(name, job) for name, job in work if args.only.lower() in name.lower()]

        def run(item: tuple[str, Callable[[], list[Row]]]) -> list[Row]:
            name, job = item
            rows = job()
            for row in rows:
                print(
                    f"[reliability] {'pass' if row.passed else 'FAIL'} {row.fault} "
                    f"({row.seconds:.0f} s) {'; '.join(row.problems)}",
                    flush=True,
                )
            return rows

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rows = [row for rows in pool.map(run, work) for row in rows]
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    elapsed = time.monotonic() - began
    report = render(rows, elapsed, args.only)
    print(report)
    if not args.only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    failed = [row for row in rows if not row.passed]
    print(
        f"[reliability] {len(rows) - len(failed)}/{len(rows)} rows pass in {elapsed:.0f} s",
        flush=True,
    )
    return 1 if failed else 0


def render(rows: list[Row], elapsed: float, only: str | None) -> str:
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    return "\n".join(
        [
            "# Fault matrix",
            "",
            "Each fault through `dg launch` (or `dg dev`'s daemon) with its own DAGSTER_HOME and "
            f"the repository's `dagster.yaml`, against the simulator, for partition {RUN_DAY}, "
            f'starting from {EARLIER_DAY} already stored. "warehouse = clean run": the day\'s rows '
            "equal a clean run's (the simulator's current records, each once) and every recording "
            "is archived with the clean run's bytes. Requests: every request the simulator "
            "answered during the case.",
            "",
            markdown_table(rows),
            "",
            f"{sum(r.passed for r in rows)}/{len(rows)} rows pass; whole matrix {elapsed:.0f} s"
            + (f" (only {only!r})" if only else "")
            + ".",
            "",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; commit {commit}",
            f"- python {platform.python_version()}, {platform.platform()}",
            "- command: `make reliability` (`python -m reliability`)",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
