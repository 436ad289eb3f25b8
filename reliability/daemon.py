"""The daemon's path: `dg dev` (webserver + daemon + run queue, the repo's `dagster.yaml`).

One session gives two rows. Three good PBXs (Yeastar `hq`, Zorio `saigon` and `hanoi`) get four
backfills launched at once over GraphQL, so four runs go through the run queue side by side
(two of them for `hq`, which its PBX lock serializes), while an analyst's process holds the
DuckDB file open read-only and queries it throughout. A fourth PBX, `branch`, has a wrong
secret on a simulator of its own: three `dg launch` runs, then its daily schedule's tick (the
closed day and the day before), must make at most one `get_token` between them, so the
simulated IP block (5 failures) is never reached.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from cdr_assets.schema import TABLE_SCHEMAS
from cdr_assets.storage.duckdb import ensure_views
from reliability.cases import short_message
from reliability.outcome import HEALED, NAMED_ERROR, Row
from reliability.workspace import (
    CALLS_PER_DAY,
    ID_FIELDS,
    REPO_ROOT,
    YEASTAR,
    ZORIO,
    PbxSpec,
    Workspace,
    simulator_config,
    started_simulator,
)
from tests.fixtures.dagster_dev import (
    BACKFILL,
    LAUNCH_BACKFILL,
    SCHEDULE,
    START_SCHEDULE,
    TERMINAL_BACKFILL_STATUSES,
    TERMINAL_RUN_STATUSES,
    DagsterDev,
    partitions_by_assets,
    poll,
    running_dagster_dev,
)
from tests.fixtures.schedule_tick import next_tick, schedule_settings

HANOI = PbxSpec("hanoi", "zorio")
#: (PBX, first day, last day) of the four backfills (one run each: single-run backfill policy).
BACKFILLS = (
    (YEASTAR, date(2026, 6, 20), date(2026, 6, 22)),
    (ZORIO, date(2026, 6, 20), date(2026, 6, 22)),
    (HANOI, date(2026, 6, 20), date(2026, 6, 22)),
    (YEASTAR, date(2026, 6, 17), date(2026, 6, 19)),
)
#: Audio per download stream in the backfills: a day's ~59 MB of recordings then takes ~8 s at
#: 4 streams, so each run lasts long enough for the queue to have all four running at once.
AUDIO_BYTES_PER_S = 2_000_000
#: dg dev must load and the schedule be turned on before the tick (startup 7-16 s measured).
TICK_LEAD_S = 50
WRONG_SECRET_RUNS = 3


def _reader(duckdb_path: str, stop: Any, results: Any) -> None:
    """An analyst's process: one read-only connection held open, querying until told to stop."""
    queries = errors = duplicates = 0
    last_error = ""
    with duckdb.connect(duckdb_path, read_only=True) as con:
        while not stop.is_set():
            try:
                for _pbx, total, distinct in con.execute(
                    "SELECT pbx, count(*), count(DISTINCT (call_date, cdr_id)) FROM cdr "
                    "GROUP BY pbx"
                ).fetchall():
                    duplicates += total - distinct
                queries += 1
            except duckdb.Error as exc:
                errors += 1
                last_error = str(exc)[:200]
            time.sleep(0.2)
    results.put((queries, errors, duplicates, last_error))


def run_daemon_session(scratch: Path) -> list[Row]:
    root = Path(tempfile.mkdtemp(prefix="daemon-", dir=scratch))
    good, bad = started_simulator(simulator_config()), started_simulator(simulator_config())
    branch = PbxSpec(
        "branch",
        "yeastar",
        {
            "base_url": bad.base_url,
            "client_secret": {"env": "REL_BRANCH_SECRET"},
            "schedule_rerun_days": 1,
        },
    )
    try:
        workspace = Workspace(
            root,
            (YEASTAR, ZORIO, HANOI, branch),
            good.base_url,
            {"REL_BRANCH_SECRET": "not-the-secret"},
        )
        workspace.write_config()
        secret_row = Row(f"wrong Yeastar secret over {WRONG_SECRET_RUNS} runs and a schedule tick")
        began = time.monotonic()
        cli = [workspace.launch(branch) for _ in range(WRONG_SECRET_RUNS)]
        cli_tokens = bad.stats.count("get_token")
        tick = next_tick(datetime.now(UTC), TICK_LEAD_S)
        workspace.pbxs = (
            YEASTAR,
            ZORIO,
            HANOI,
            PbxSpec(
                branch.name,
                branch.vendor,
                {**branch.settings, **schedule_settings(tick, branch.timezone)},
            ),
        )
        workspace.write_config()
        # the views exist before the reader opens the file (the runs then never write it)
        data_dir = workspace.data_dir
        ensure_views(str(data_dir / "cdr.duckdb"), str(data_dir), TABLE_SCHEMAS)
        with running_dagster_dev(
            [str(Path(sys.executable).parent / "dg"), "dev"],
            cwd=REPO_ROOT,
            env=workspace.env(),
            log_path=root / "dg_dev.log",
        ) as dev:
            location = dev.code_location()
            selector = {
                "repositoryName": "__repository__",
                "repositoryLocationName": location,
                "scheduleName": f"{branch.name}_daily",
            }
            started = dev.gql(START_SCHEDULE, {"selector": selector})["startSchedule"]
            if started["__typename"] != "ScheduleStateResult":
                raise RuntimeError(f"could not start the schedule: {started}")
            tick_runs = _tick_runs(dev, selector, tick)  # before the backfills: no slot taken
            concurrent_row = _concurrent_backfills(dev, workspace, good)
        secret_row.seconds = time.monotonic() - began
        _judge_wrong_secret(secret_row, workspace, cli, cli_tokens, tick_runs, bad.stats)
        return [secret_row, concurrent_row]
    finally:
        good.stop()
        bad.stop()


def _concurrent_backfills(dev: DagsterDev, workspace: Workspace, sim: Any) -> Row:
    row = Row(
        "4 concurrent runs via the daemon's run queue over 3 PBXs, DuckDB held "
        "read-only by a reader"
    )
    began = time.monotonic()
    sim.stats.reset()
    sim.faults.throttle_bytes_per_s = AUDIO_BYTES_PER_S
    stop = multiprocessing.Event()
    results: Any = multiprocessing.Queue()
    reader = multiprocessing.Process(
        target=_reader, args=(str(workspace.data_dir / "cdr.duckdb"), stop, results)
    )
    reader.start()
    backfill_ids = []
    for pbx, first, last in BACKFILLS:
        launched = dev.gql(
            LAUNCH_BACKFILL,
            {
                "params": {
                    "partitionsByAssets": partitions_by_assets([(pbx.name, first, last)]),
                    "title": f"reliability: {pbx.name} {first}...{last}",
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {launched}")
        backfill_ids.append(launched["backfillId"])
    backfills = [
        poll(
            lambda b=backfill_id: dev.gql(BACKFILL, {"id": b})["partitionBackfillOrError"],
            lambda b: (
                b["status"] in TERMINAL_BACKFILL_STATUSES
                and all(r["status"] in TERMINAL_RUN_STATUSES for r in b["runs"])
            ),
            timeout_s=400,
            what=f"backfill {backfill_id}",
            interval_s=2,
        )
        for backfill_id in backfill_ids
    ]
    stop.set()
    queries, lock_errors, reader_duplicates, last_error = results.get(timeout=30)
    reader.join(timeout=30)
    row.seconds = time.monotonic() - began
    row.requests = len(sim.stats.requests)
    runs = [run for b in backfills for run in b["runs"]]
    failed = [r["runId"] for r in runs if r["status"] != "SUCCESS"]
    if failed or len(runs) != len(BACKFILLS):
        details = {run_id: dev.failure_messages(run_id) for run_id in failed}
        row.problems.append(f"{len(runs)} runs, failed: {details}")
    overlap = _max_overlap(workspace, {r["runId"] for r in runs})
    report = workspace.run_report()
    row.step_retries = report.step_retries
    stored_problems = _stored_as_served(workspace, sim)
    row.problems += stored_problems
    row.outcome = HEALED if not row.problems else "failed"
    row.detail = (
        f"{len(runs)} runs, up to {overlap} at once; reader: {queries} queries, "
        f"{lock_errors} lock errors, {reader_duplicates} duplicates seen"
    )
    if lock_errors:
        row.problems.append(f"the reader got {lock_errors} errors: {last_error}")
    if reader_duplicates:
        row.problems.append(f"the reader saw {reader_duplicates} duplicate CDRs")
    if overlap < len(BACKFILLS):
        row.problems.append(f"only {overlap} runs overlapped")
    row.warehouse = "yes" if not stored_problems else "no: " + "; ".join(stored_problems)
    row.earlier_intact = "yes"
    return row


def _stored_as_served(workspace: Workspace, sim: Any) -> list[str]:
    """Each backfilled day holds exactly the simulator's calls, each once."""
    problems = []
    for pbx in {spec.name: spec for spec, *_ in BACKFILLS}.values():
        days = [
            first + timedelta(days=k)
            for spec, first, last in BACKFILLS
            if spec == pbx
            for k in range((last - first).days + 1)
        ]
        for day in days:
            table = workspace.day_rows(pbx, day)
            ids = [] if table is None else table.column("cdr_id").to_pylist()
            served = {c[ID_FIELDS[pbx.vendor]] for c in sim.calls(pbx.vendor, day)}
            if len(ids) != len(set(ids)) or set(ids) != served or len(ids) != CALLS_PER_DAY:
                problems.append(f"{pbx.name} {day}: {len(ids)} rows, {len(set(ids))} distinct")
            if not workspace.archived_files_verified(pbx, day):
                problems.append(f"{pbx.name} {day}: an archived file does not match")
    return problems


def _max_overlap(workspace: Workspace, run_ids: set[str]) -> int:
    """The most runs that were STARTED at the same instant."""
    with workspace.instance() as instance:
        spans = [
            (r.start_time, r.end_time)
            for r in instance.get_run_records()
            if r.dagster_run.run_id in run_ids and r.start_time and r.end_time
        ]
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def _tick_runs(dev: DagsterDev, selector: dict[str, str], tick: datetime) -> list[dict]:
    """The runs of the schedule's first finished tick, once they are finished."""
    ticks = poll(
        lambda: [
            t
            for t in dev.gql(SCHEDULE, {"selector": selector})["scheduleOrError"]["scheduleState"][
                "ticks"
            ]
            if t["status"] != "STARTED"
        ],
        bool,
        timeout_s=max(0.0, (tick - datetime.now(UTC)).total_seconds()) + 150,
        what=f"the tick of {selector['scheduleName']} due at {tick}",
        interval_s=2,
    )
    run_ids = ticks[-1]["runIds"]
    runs = poll(
        lambda: dev.runs(run_ids),
        lambda rs: (
            len(rs) == len(run_ids) and all(r["status"] in TERMINAL_RUN_STATUSES for r in rs)
        ),
        timeout_s=240,
        what="the tick's runs",
        interval_s=2,
    )
    return [{**r, "failures": dev.failure_messages(r["runId"])} for r in runs]


def _judge_wrong_secret(
    row: Row, workspace: Workspace, cli: list, cli_tokens: int, tick_runs: list[dict], stats: Any
) -> None:
    tokens = stats.count("get_token")
    row.requests = len(stats.requests)
    row.outcome = NAMED_ERROR
    failures = [f for r in tick_runs for f in r["failures"]]
    report = workspace.run_report()
    row.detail = (
        f"{tokens} get_token in all ({cli_tokens} by the {len(cli)} CLI runs, "
        f"{tokens - cli_tokens} by the tick's {len(tick_runs)} runs); "
        + (short_message(failures[0], "branch") if failures else "no tick failure")
    )
    row.step_retries = report.step_retries
    row.warehouse = "— (day not written)"
    row.earlier_intact = "yes"
    if tokens > 1:
        row.problems.append(f"{tokens} get_token attempts")
    if any(launch.returncode == 0 for launch in cli):
        row.problems.append("a CLI run with a wrong secret succeeded")
    if len(tick_runs) != 2 or any(r["status"] != "FAILURE" for r in tick_runs):
        row.problems.append(f"tick runs: {[r['status'] for r in tick_runs]}")
    if not any("branch" in f for f in report.failures):
        row.problems.append("the failures do not name the PBX")
    if row.step_retries:
        row.problems.append("a refused credential was retried")
