"""A deployment as docs/deploy.md describes it, on one machine: `dg dev` (webserver + daemon)
whose DAGSTER_HOME holds `docs/dagster.postgres.yaml` pointed at a PostgreSQL server the tests
started, a `cdr_assets.yaml` for simulated PBXs, backfills launched over GraphQL as the UI does,
and what the instance then holds, read back through `DagsterInstance` and SQL.

It knows how to set such a deployment up and read it; the tests say what to run and expect.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from cdr_assets.simulator import Simulator
from cdr_assets.storage.duckdb import connect_reader
from tests.fixtures.dagster_dev import (
    BACKFILL,
    LAUNCH_BACKFILL,
    TERMINAL_BACKFILL_STATUSES,
    TERMINAL_RUN_STATUSES,
    DagsterDev,
    partitions_by_assets,
    poll,
)
from tests.fixtures.postgres import PostgresDatabase

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE_YAML = REPO_ROOT / "docs" / "dagster.postgres.yaml"
DG = str(Path(sys.executable).parent / "dg")
SECRETS = {
    "DEPLOY_YEASTAR_ID": "demo-client",
    "DEPLOY_YEASTAR_SECRET": "demo-secret",
    "DEPLOY_ZORIO_TOKEN": "demo-token",
}
#: The simulator record field each vendor's cdr_id comes from.
ID_FIELDS = {"yeastar": "uid", "zorio": "uuid"}


@dataclass(frozen=True)
class Pbx:
    name: str
    vendor: str
    timezone: str


def pbx_block(pbx: Pbx, base_url: str, start: date, **extra: Any) -> dict[str, Any]:
    """A PBX entry of cdr_assets.yaml for the simulator's PBX of `pbx.vendor`."""
    credentials: dict[str, Any] = (
        {
            "client_id": {"env": "DEPLOY_YEASTAR_ID"},
            "client_secret": {"env": "DEPLOY_YEASTAR_SECRET"},
        }
        if pbx.vendor == "yeastar"
        else {"api_token": {"env": "DEPLOY_ZORIO_TOKEN"}}
    )
    return {
        "name": pbx.name,
        "vendor": pbx.vendor,
        "base_url": base_url,
        "timezone": pbx.timezone,
        "start_date": start.isoformat(),
        **credentials,
        **extra,
    }


def write_config(path: Path, storage: dict[str, Any], pbxs: Sequence[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"storage": storage, "pbxs": list(pbxs)}, sort_keys=False))
    return path


def deployment_env(
    home: Path, config_path: Path, database: PostgresDatabase, **extra: str
) -> dict[str, str]:
    """The environment every Dagster process of the deployment runs in: this venv, a fresh
    DAGSTER_HOME holding docs/dagster.postgres.yaml, the database's DAGSTER_PG_* variables."""
    home.mkdir()
    shutil.copyfile(INSTANCE_YAML, home / "dagster.yaml")
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **SECRETS,
        **database.env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": sys.prefix,
        "DAGSTER_HOME": str(home),
        "CDR_ASSETS_CONFIG": str(config_path),
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        **extra,
    }


def run_backfill(
    dev: DagsterDev, pbxs: Sequence[Pbx], first: date, last: date, *, runs: int, timeout_s: float
) -> dict[str, Any]:
    """Backfill `cdr` and `recordings` of `pbxs` over first..last as the UI does and wait until
    its `runs` runs have ended (the backfill daemon, on a fixed 30 s tick, would only mark it
    completed on its next tick); the backfill (id, status, runs), every run a success."""
    launched = dev.gql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionsByAssets": partitions_by_assets((pbx.name, first, last) for pbx in pbxs),
                "title": f"deploy test: {', '.join(p.name for p in pbxs)} {first}...{last}",
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = poll(
        lambda: dev.gql(BACKFILL, {"id": launched["backfillId"]})["partitionBackfillOrError"],
        lambda b: (
            b["status"] in TERMINAL_BACKFILL_STATUSES
            or (
                len(b["runs"]) >= runs
                and all(r["status"] in TERMINAL_RUN_STATUSES for r in b["runs"])
            )
        ),
        timeout_s=timeout_s,
        what=f"backfill {launched['backfillId']}\n{dev.log_tail()}",
    )
    dev.assert_runs_succeeded(backfill["runs"])
    assert backfill["status"] not in ("FAILED", "CANCELED", "COMPLETED_FAILED"), backfill
    return backfill


@contextlib.contextmanager
def deployment_instance(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The deployment's instance, opened from its DAGSTER_HOME as any of its processes would."""
    names = [name for name in env if name.startswith("DAGSTER_PG_")]
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: env[name] for name in names})
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            yield instance
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class StepSpan:
    """One step of a run as its event log tells it."""

    run_id: str
    step_key: str
    pids: frozenset[int]
    started: float
    ended: float


def step_spans(instance: dg.DagsterInstance, run_id: str) -> list[StepSpan]:
    """Each step's process ids (of the events it emitted itself) and its STEP_START ..
    STEP_SUCCESS."""
    by_step: dict[str, list[dg.EventLogEntry]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.step_key:
            by_step.setdefault(event.step_key, []).append(entry)
    spans = []
    for step_key, entries in by_step.items():
        times = {e.dagster_event.event_type: e.timestamp for e in entries}
        if dg.DagsterEventType.STEP_SKIPPED in times:
            continue  # e.g. recordings_audit, selected with its asset, not evaluated for days
        start, success = dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS
        assert start in times and success in times, (step_key, sorted(t.name for t in times))
        # The step's own events; STEP_WORKER_* come from the process that started the worker.
        pids = {
            e.dagster_event.pid
            for e in entries
            if e.dagster_event.pid is not None
            and not e.dagster_event.event_type.name.startswith("STEP_WORKER")
        }
        spans.append(StepSpan(run_id, step_key, frozenset(pids), times[start], times[success]))
    return spans


def run_events(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, float]]:
    """The run-level events in order, by name (RUN_ENQUEUED, RUN_DEQUEUED, RUN_START ...), with
    their timestamps."""
    return [
        (e.dagster_event.event_type.name, e.timestamp)
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.event_type.name.startswith("RUN_")
    ]


def assert_days_stored(
    duckdb_path: str, sim: Simulator, pbx: Pbx, days: Sequence[date], **connect: Any
) -> dict[date, int]:
    """Each day's CDRs in the `cdr` view are exactly the simulator's calls, each once, and every
    call with a recording has its recording archived; returns the rows per day."""
    with contextlib.closing(connect_reader(duckdb_path, **connect)) as con:
        rows = con.execute(
            "SELECT call_date, cdr_id, count(*) FROM cdr WHERE pbx = ? GROUP BY ALL", [pbx.name]
        ).fetchall()
        recorded = dict(
            con.execute(
                "SELECT call_date, count(*) FROM cdr WHERE pbx = ? AND has_recording GROUP BY ALL",
                [pbx.name],
            ).fetchall()
        )
        archived = dict(
            con.execute(
                "SELECT call_date, count(*) FROM recordings WHERE pbx = ? AND status = 'archived' "
                "GROUP BY ALL",
                [pbx.name],
            ).fetchall()
        )
    counts = {}
    for day in days:
        expected = {call[ID_FIELDS[pbx.vendor]] for call in sim.calls(pbx.vendor, day)}
        stored = {cdr_id: n for d, cdr_id, n in rows if d == day}
        assert expected, f"{pbx.name} {day}: the simulator served no calls; nothing is tested"
        assert set(stored) == expected, f"{pbx.name} {day}: CDR ids differ from the simulator's"
        assert set(stored.values()) == {1}, f"{pbx.name} {day}: CDRs stored more than once"
        assert archived.get(day, 0) == recorded.get(day, 0) > 0, (
            f"{pbx.name} {day}: {archived.get(day, 0)} recordings archived of "
            f"{recorded.get(day, 0)} calls with one"
        )
        counts[day] = len(stored)
    assert {d for d, _, _ in rows} == set(days), f"{pbx.name}: days outside the backfill"
    return counts
