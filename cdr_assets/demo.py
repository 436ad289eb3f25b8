"""The embedded demo behind `make demo` and `make dev`: the simulator plus the real `dg` commands.

`python -m cdr_assets.demo run` serves both simulated PBX APIs of `cdr_assets.yaml`, materializes
the last three closed days of each PBX with one `dg launch --assets <pbx>/cdr,<pbx>/recordings
--partition-range A...B` run, and prints a short progress view (per PBX and day: CDRs and
recordings from the warehouse, check results from the Dagster instance in `.dagster_home`) while
each command's full output, Dagster's DEBUG stream, goes to `<data_dir>/demo.log`. It ends with a
DuckDB verification and exits non-zero when anything did not verify. `python -m cdr_assets.demo
dev` serves the simulator and `dg dev` on the same config and instance.

This module only drives the demo: it must not ingest, archive or check anything itself (the runs
do that), and it refuses a config whose PBXs are not the simulator it serves. The credentials
below are the simulator's, not anybody's secrets.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, NoReturn
from zoneinfo import ZoneInfo

import dagster as dg
import fsspec

from cdr_assets.assets.checks import RECORDINGS_ARCHIVED, cdr_check_names
from cdr_assets.config import CdrAssetsConfig, ConfigError, PbxConfigBase, load_config
from cdr_assets.simulator import Simulator, SimulatorConfig
from cdr_assets.storage.duckdb import connect_readonly
from cdr_assets.storage.manifest import read_manifest
from cdr_assets.storage.parquet import read_partition

DEMO_DAYS = 3
DEMO_PORT = 8765
DEMO_CALLS_PER_DAY = 40
UI_HOST = "127.0.0.1"
UI_PORT = 3000
DEMO_ENV = {
    "CDR_DEMO_YEASTAR_CLIENT_ID": "demo-client",
    "CDR_DEMO_YEASTAR_CLIENT_SECRET": "demo-secret",
    "CDR_DEMO_ZORIO_TOKEN": "demo-token",
}
#: How often the progress view looks at the instance while a run goes on.
POLL_INTERVAL_S = 0.5
#: How long a `dg` command gets to stop on its own (a run to finish its step, `dg dev` its
#: webserver, daemon and code server) before what is left of it is killed.
STOP_GRACE_S = 15.0
_RANGE_START_TAG = "dagster/asset_partition_range_start"
_RANGE_END_TAG = "dagster/asset_partition_range_end"
#: An exception's last line in a command's output, e.g. `dagster._core.errors.XError: ...`.
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Failure): \S")


class DemoError(Exception):
    """A demo that cannot start or finish as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------- setup


def demo_environment(
    config_path: Path, dagster_home: Path, repo_dagster_yaml: Path
) -> dict[str, str]:
    """Environment for the `dg` commands: the config file, an instance home holding a copy of
    the repository's `dagster.yaml`, the simulator's credentials, and `VIRTUAL_ENV` naming this
    interpreter's venv (else `dg` warns that the active venv does not match the project's)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(repo_dagster_yaml, dagster_home / "dagster.yaml")
    env = {**os.environ, **DEMO_ENV}
    env["CDR_ASSETS_CONFIG"] = str(config_path.resolve())
    env["DAGSTER_HOME"] = str(dagster_home.resolve())
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    return env


def check_simulated(config: CdrAssetsConfig, port: int) -> None:
    """Refuse to run the demo against anything but the simulator it serves on `port`."""
    simulator_url = f"http://127.0.0.1:{port}"
    for pbx in config.pbxs:
        if pbx.base_url != simulator_url:
            raise DemoError(
                f"PBX {pbx.name!r}: base_url {pbx.base_url!r} is not the demo simulator "
                f"{simulator_url} (give --port its port, or use dg launch for real PBXs)"
            )


@contextlib.contextmanager
def serving_simulator(port: int) -> Iterator[Simulator]:
    """Both simulated vendor APIs on loopback `port` for as long as the demo runs."""
    simulator = Simulator(SimulatorConfig(calls_per_day=DEMO_CALLS_PER_DAY), port=port)
    try:
        simulator.start()
    except OSError as exc:
        raise DemoError(f"the simulator cannot listen on 127.0.0.1:{port}: {exc}") from None
    try:
        yield simulator
    finally:
        simulator.stop()


def closed_days(timezone: str, count: int, now: datetime | None = None) -> list[date]:
    """The last `count` days that have ended on the PBX's local clock, oldest first."""
    today = (now or datetime.now(ZoneInfo(timezone))).astimezone(ZoneInfo(timezone)).date()
    return [today - timedelta(days=back) for back in range(count, 0, -1)]


def dg_executable() -> str:
    """The `dg` of this interpreter's environment (not whichever is first on PATH)."""
    found = shutil.which("dg", path=str(Path(sys.executable).parent)) or shutil.which("dg")
    if found is None:
        raise DemoError("the `dg` command is missing: pip install -e '.[ui]'")
    return found


def launch_args(pbx: PbxConfigBase, days: Sequence[date]) -> list[str]:
    """`dg launch` arguments for the PBX's assets over `days`, as one range run."""
    selection = f"{pbx.name}/cdr" + (f",{pbx.name}/recordings" if pbx.archive_recordings else "")
    return [
        "launch",
        "--assets",
        selection,
        "--partition-range",
        f"{days[0].isoformat()}...{days[-1].isoformat()}",
    ]


def shown(path: str | Path) -> str:
    """A path as short as the user can still use it from the working directory."""
    absolute = Path(path).resolve()
    with contextlib.suppress(ValueError):
        return str(absolute.relative_to(Path.cwd()))
    return str(absolute)


# ------------------------------------------------------------------------------------- progress


@dataclass
class DayProgress:
    """One PBX day as the demo reports it: the warehouse's counts, the run's check results."""

    pbx: str
    day: date
    check_names: tuple[str, ...]
    archive_recordings: bool
    materialized: bool = False
    cdrs: int | None = None
    recordings_expected: int = 0
    recordings_archived: int = 0
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every check of the day has a result from the run."""
        return all(name in self.checks for name in self.check_names)

    @property
    def failed_checks(self) -> list[str]:
        return sorted(name for name, passed in self.checks.items() if not passed)

    @property
    def verified(self) -> bool:
        return (
            self.materialized
            and self.complete
            and not self.failed_checks
            and self.cdrs is not None
            and self.recordings_archived == self.recordings_expected
        )

    def line(self) -> str:
        """e.g. `hq 2026-11-29: 40 CDRs, 17/17 recordings, checks 5/5 passed`."""
        head = f"{self.pbx} {self.day}: "
        if not self.materialized or self.cdrs is None:
            return head + "not materialized by this run"
        if self.archive_recordings:
            recordings = f"{self.recordings_archived}/{self.recordings_expected} recordings"
        else:
            recordings = "recordings not archived (archive_recordings: false)"
        passed = sum(self.checks.get(name, False) for name in self.check_names)
        checks = f"checks {passed}/{len(self.check_names)} passed"
        missing = [name for name in self.check_names if name not in self.checks]
        if self.failed_checks:
            checks += f" (failed: {', '.join(self.failed_checks)})"
        if missing:
            checks += f" (not reported: {', '.join(missing)})"
        return f"{head}{self.cdrs} CDRs, {recordings}, {checks}"


def read_warehouse_day(config: CdrAssetsConfig, progress: DayProgress) -> None:
    """Fill in the day's CDRs and archived recordings from its committed Parquet partitions
    (only for a day this run materialized: an older partition would tell nothing of it)."""
    if not progress.materialized:
        return
    data_dir = config.storage.data_dir
    cdrs = read_partition(
        data_dir, "cdr", progress.pbx, progress.day, columns=["cdr_id", "has_recording"]
    )
    if cdrs is None:
        return
    progress.cdrs = cdrs.num_rows
    wanted = cdrs.filter(cdrs["has_recording"])["cdr_id"].to_pylist()
    manifest = read_manifest(data_dir, progress.pbx, progress.day)
    progress.recordings_expected = len(wanted)
    progress.recordings_archived = sum(
        1 for cdr_id in wanted if (row := manifest.get(cdr_id)) and row.status == "archived"
    )


class RunWatcher:
    """Follows the range run that `dg launch` started for one PBX, through the instance.

    The run is the one created after `started_at` with the PBX's range tags and its `cdr`
    asset; its `cdr` materializations and check evaluations (one per check and day) are read
    incrementally, so a day is reported as soon as its last check result is stored.
    """

    def __init__(
        self,
        instance: dg.DagsterInstance,
        pbx: PbxConfigBase,
        days: Sequence[date],
        started_at: datetime,
    ) -> None:
        self.instance = instance
        self.pbx = pbx
        self.started_at = started_at
        self.range = (days[0].isoformat(), days[-1].isoformat())
        names = [*cdr_check_names(pbx), *([RECORDINGS_ARCHIVED] if pbx.archive_recordings else [])]
        self.days = {
            day: DayProgress(pbx.name, day, tuple(names), pbx.archive_recordings) for day in days
        }
        self.cdr_key = dg.AssetKey([pbx.name, "cdr"])
        self.run_id: str | None = None
        self._cursor: str | None = None
        self._reported: set[date] = set()

    def _find_run(self) -> str | None:
        records = self.instance.get_run_records(
            filters=dg.RunsFilter(
                created_after=self.started_at,
                tags={_RANGE_START_TAG: self.range[0], _RANGE_END_TAG: self.range[1]},
            ),
            limit=10,
        )
        for record in records:
            if self.cdr_key in (record.dagster_run.asset_selection or ()):
                return record.dagster_run.run_id
        return None

    def poll(self, config: CdrAssetsConfig) -> list[DayProgress]:
        """The days whose check results all came in since the last poll."""
        self.run_id = self.run_id or self._find_run()
        if self.run_id is None:
            return []
        has_more = True
        while has_more:
            connection = self.instance.get_records_for_run(
                self.run_id,
                cursor=self._cursor,
                of_type={
                    dg.DagsterEventType.ASSET_MATERIALIZATION,
                    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                },
            )
            for record in connection.records:
                self._record(record.event_log_entry)
            self._cursor, has_more = connection.cursor, connection.has_more
        return self._take(config, lambda progress: progress.complete)

    def _record(self, entry: dg.EventLogEntry) -> None:
        materialization = entry.asset_materialization
        evaluation = entry.asset_check_evaluation
        if materialization is not None and materialization.asset_key == self.cdr_key:
            if progress := self._day(materialization.partition):
                progress.materialized = True
        elif evaluation is not None and (progress := self._day(evaluation.partition)):
            progress.checks[evaluation.check_name] = evaluation.passed

    def _day(self, partition: str | None) -> DayProgress | None:
        return self.days.get(date.fromisoformat(partition)) if partition else None

    def remaining(self, config: CdrAssetsConfig) -> list[DayProgress]:
        """The days not reported yet (the run ended without all their check results)."""
        return self._take(config, lambda progress: True)

    def _take(
        self, config: CdrAssetsConfig, ready: Callable[[DayProgress], bool]
    ) -> list[DayProgress]:
        taken = []
        for day, progress in self.days.items():
            if day not in self._reported and ready(progress):
                read_warehouse_day(config, progress)
                self._reported.add(day)
                taken.append(progress)
        return taken

    def failure(self) -> str | None:
        """What the run's failed step said, if a step failed."""
        if self.run_id is None:
            return None
        connection = self.instance.get_records_for_run(
            self.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        )
        for record in connection.records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            if data.error is not None:
                return data.error.message.strip().splitlines()[-1]
        return None


# ---------------------------------------------------------------------------------------- run


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Let a `dg` command stop on SIGTERM (it finishes as on Ctrl-C), kill it if it hangs."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def materialize_pbx(
    pbx: PbxConfigBase,
    config: CdrAssetsConfig,
    env: dict[str, str],
    instance: dg.DagsterInstance,
    log: IO[str],
) -> tuple[list[DayProgress], str | None]:
    """One `dg launch` range run over the PBX's last closed days, its output to `log`, each
    day printed as soon as its checks are in; returns the days and why the run failed."""
    days = closed_days(pbx.timezone, DEMO_DAYS)
    args = launch_args(pbx, days)
    print(f"{pbx.name} ({pbx.vendor}, {pbx.timezone}): dg {' '.join(args)}", flush=True)
    log.write(f"\n$ dg {' '.join(args)}\n")
    log.flush()
    output_start = log.tell()
    watcher = RunWatcher(instance, pbx, days, datetime.now(UTC))
    # Its own session: Ctrl-C reaches only the demo, which stops the run exactly once.
    process = subprocess.Popen(
        [dg_executable(), *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while process.poll() is None:
            for progress in watcher.poll(config):
                print(f"  {progress.line()}", flush=True)
            time.sleep(POLL_INTERVAL_S)
    finally:
        stop_process(process)
    for progress in [*watcher.poll(config), *watcher.remaining(config)]:
        print(f"  {progress.line()}", flush=True)
    failure = None
    if process.returncode != 0:
        reason = watcher.failure() or last_error_line(Path(log.name), output_start)
        failure = f"{pbx.name}: dg launch exited {process.returncode}: {reason or 'see the log'}"
        print(f"  {failure}", flush=True)
    return list(watcher.days.values()), failure


def last_error_line(log_path: Path, offset: int) -> str | None:
    """The last exception line a command wrote to the log from `offset` on."""
    with log_path.open(encoding="utf-8", errors="replace") as file:
        file.seek(offset)
        lines = [line.strip() for line in file if _ERROR_LINE.match(line)]
    return lines[-1] if lines else None


def verify_warehouse(config: CdrAssetsConfig, days: Sequence[DayProgress]) -> list[str]:
    """Print the end view and the DuckDB summary; return what did not verify.

    DuckDB (the analysts' view of the Parquet files) must agree with each day's partitions,
    hold no duplicate (pbx, cdr_id), and every archived recording must match its sha256."""
    problems = [progress.line() for progress in days if not progress.verified]
    duckdb_path = config.storage.duckdb_path
    print(f"\nSummary ({shown(duckdb_path)}):")
    for progress in days:
        print(f"  {progress.line()}")
    if not Path(duckdb_path).exists():
        return [*problems, f"no DuckDB file at {duckdb_path}"]
    with connect_readonly(duckdb_path) as con:
        per_day = {
            (pbx, call_date): counts
            for pbx, call_date, *counts in con.execute(
                "SELECT c.pbx, c.call_date, count(*), "
                "count(*) FILTER (WHERE c.has_recording), "
                "count(*) FILTER (WHERE c.has_recording AND r.status = 'archived') "
                "FROM cdr c LEFT JOIN recordings r USING (pbx, cdr_id) GROUP BY ALL"
            ).fetchall()
        }
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
    options = config.storage.recordings_storage_options
    bad_files = sum(1 for uri, sha in archived if sha256_of(uri, options) != sha)
    print(f"  duplicate (pbx, cdr_id): {duplicates}")
    print(f"  recordings archived: {len(archived)}, files failing sha256: {bad_files}")
    print(f"  has_recording rows without an archived recording: {unarchived}")
    for progress in days:
        if progress.cdrs is None:
            continue
        warehouse = [progress.cdrs, progress.recordings_expected, progress.recordings_archived]
        in_duckdb = per_day.get((progress.pbx, progress.day), [0, 0, 0])
        if in_duckdb != warehouse:
            problems.append(
                f"{progress.pbx} {progress.day}: DuckDB counts (CDRs, with recording, archived) "
                f"{tuple(in_duckdb)} differ from the Parquet partitions' {tuple(warehouse)}"
            )
    if duplicates:
        problems.append(f"{duplicates} duplicate (pbx, cdr_id) rows in DuckDB")
    if bad_files:
        problems.append(f"{bad_files} archived recordings fail their sha256")
    if unarchived:
        problems.append(f"{unarchived} CDRs with has_recording lack an archived recording")
    return problems


def sha256_of(uri: str, storage_options: dict[str, Any]) -> str | None:
    """The file's sha256, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with fsspec.open(uri, "rb", **storage_options) as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def run_demo(config: CdrAssetsConfig, env: dict[str, str], port: int) -> list[str]:
    """Materialize every PBX's last closed days, print progress and the verification; returns
    what did not verify (empty: all good)."""
    check_simulated(config, port)
    log_path = Path(config.storage.data_dir) / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    days: list[DayProgress] = []
    problems: list[str] = []
    with serving_simulator(port) as simulator, log_path.open("w", encoding="utf-8") as log:
        print(
            f"simulator on {simulator.base_url}; each command's full output goes to "
            f"{shown(log_path)}; instance: {shown(env['DAGSTER_HOME'])}",
            flush=True,
        )
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            for pbx in config.pbxs:
                pbx_days, failure = materialize_pbx(pbx, config, env, instance, log)
                days += pbx_days
                problems += [failure] if failure else []
    problems += verify_warehouse(config, days)
    print(f"\nDuckDB file: {shown(config.storage.duckdb_path)} (open it read-only to query)")
    print(f"Dagster's output: {shown(log_path)}; the runs, in the UI: make dev")
    return problems


# ---------------------------------------------------------------------------------------- dev


def stop_process_group(process: subprocess.Popen[Any]) -> None:
    """Stop `dg dev` as Ctrl-C would, then whatever it left in its process group (its code
    server outlives it by up to a minute otherwise), killing what ignores SIGTERM."""
    stop_process(process)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + STOP_GRACE_S / 3
        try:
            os.killpg(process.pid, sig)
            while time.monotonic() < deadline:
                time.sleep(0.2)
                os.killpg(process.pid, 0)
        except ProcessLookupError:
            return


def run_dev(config: CdrAssetsConfig, env: dict[str, str], port: int, ui_port: int) -> int:
    """The simulator plus `dg dev` on the demo config until Ctrl-C (status 0) or until `dg dev`
    ends by itself (its status)."""
    check_simulated(config, port)
    with serving_simulator(port) as simulator:
        print(
            f"simulator on {simulator.base_url}; Dagster UI on http://{UI_HOST}:{ui_port} "
            f"(instance {shown(env['DAGSTER_HOME'])}, a copy of ./dagster.yaml); Ctrl-C stops both",
            flush=True,
        )
        process = subprocess.Popen(
            [dg_executable(), "dev", "--host", UI_HOST, "--port", str(ui_port)],
            env=env,
            start_new_session=True,
        )
        try:
            return process.wait()
        except KeyboardInterrupt:  # how one stops the UI, as with `dg dev` itself
            return 0
        finally:
            stop_process_group(process)


# --------------------------------------------------------------------------------------- main


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    """SIGTERM ends the demo like Ctrl-C: the `finally` blocks stop the simulator and `dg`."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdr_assets.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["run", "dev"])
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("cdr_assets.yaml"),
        help="the demo config (default: ./cdr_assets.yaml)",
    )
    parser.add_argument(
        "--dagster-home",
        type=Path,
        default=Path(".dagster_home"),
        help="the Dagster instance directory (default: ./.dagster_home)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEMO_PORT,
        help=f"the simulator's loopback port, as in the config (default {DEMO_PORT})",
    )
    parser.add_argument(
        "--ui-port",
        type=int,
        default=UI_PORT,
        help=f"dev: the Dagster UI's port on {UI_HOST} (default {UI_PORT})",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Started in the background by a shell, a process inherits SIGINT ignored, and so would the
    # `dg` commands: they could then not be stopped (Dagster maps SIGTERM onto SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    repo_dagster_yaml = Path("dagster.yaml")
    try:
        if not (repo_dagster_yaml.exists() and Path("pyproject.toml").exists()):
            raise DemoError(
                "run the demo from the cdr_assets repository root (it holds dagster.yaml and "
                "the pyproject.toml that makes it a dg project)"
            )
        config = load_config(args.config)
        env = demo_environment(args.config, args.dagster_home, repo_dagster_yaml)
        if args.command == "dev":
            return run_dev(config, env, args.port, args.ui_port)
        problems = run_demo(config, env, args.port)
    except (ConfigError, DemoError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    sys.stdout.flush()  # the view first, then the verdict, also when both go to one pipe
    if problems:
        print("\ndemo verification failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("demo verified: every day complete, checks passed, recordings archived and intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
