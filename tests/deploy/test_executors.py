"""The multiprocess executor with instance storage on PostgreSQL and data on S3.

The assets keep no state between steps but what is in data_dir and recordings_dir, which is what
lets them run unchanged under executors that put each step in a process (or pod) of its own.
Two PBXs share one partitioning (same zone and start date), so a `dg launch --partition-range`
of both is one run with two steps, and Dagster's default executor (multiprocess) runs each in a
process of its own. The run's events, in PostgreSQL, say which process emitted them; the Parquet
days and the recordings land in a bucket of the moto S3 server, and a reader queries the
S3-backed views through `connect_reader`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from cdr_assets.storage.duckdb import connect_reader
from tests.deploy.deployment import (
    DG,
    REPO_ROOT,
    Pbx,
    assert_days_stored,
    deployment_env,
    deployment_instance,
    pbx_block,
    run_events,
    step_spans,
    write_config,
)
from tests.fixtures.postgres import PostgresDatabase
from tests.fixtures.s3 import S3Location, S3Server

ZONE = "Asia/Singapore"
PBXS = (Pbx("hq", "yeastar", ZONE), Pbx("branch", "zorio", ZONE))
FIRST, LAST = date(2026, 6, 20), date(2026, 6, 22)
DAYS = [FIRST, date(2026, 6, 21), LAST]
CALLS_PER_DAY = 12
LAUNCH_TIMEOUT_S = 150


def _launch(env: dict[str, str], log: Path) -> subprocess.CompletedProcess[bytes]:
    """`dg launch` of both PBXs' assets over the days, in its own process group."""
    selection = ",".join(f"{p.name}/{asset}" for p in PBXS for asset in ("cdr", "recordings"))
    command = [DG, "launch", "--assets", selection, "--partition-range", f"{FIRST}...{LAST}"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=LAUNCH_TIMEOUT_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # step workers left behind, if any
    return subprocess.CompletedProcess(command, process.returncode)


def test_range_run_steps_in_processes_of_their_own_on_postgres_and_s3(
    postgres_database: PostgresDatabase,
    s3_server: S3Server,
    s3_bucket_url: S3Location,
    s3_client: Any,
    make_simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = make_simulator(
        calls_per_day=CALLS_PER_DAY, yeastar={"timezone": ZONE}, zorio={"timezone": ZONE}
    )
    # Parquet and recordings in the bucket; the endpoint reaches every process (and the readers
    # below) through the environment, like the credentials
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    data_url = f"s3://{s3_bucket_url.bucket}/cdr"
    duckdb_path = str(tmp_path / "cdr.duckdb")
    recordings_url = f"s3://{s3_bucket_url.bucket}/recordings"
    config = write_config(
        tmp_path / "cdr_assets.yaml",
        {
            "data_dir": data_url,
            "duckdb_path": duckdb_path,
            "recordings_dir": recordings_url,
            # the endpoint only: the credentials come from the environment (AWS_*)
            "recordings_storage_options": {
                "client_kwargs": {"endpoint_url": s3_server.endpoint_url}
            },
        },
        [pbx_block(p, sim.base_url, date(2026, 6, 1)) for p in PBXS],
    )
    env = deployment_env(tmp_path / "dagster_home", config, postgres_database)
    log = tmp_path / "dg_launch.log"
    launched = _launch(env, log)
    assert launched.returncode == 0, log.read_text(errors="replace")[-4000:]

    with deployment_instance(env) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS], runs
        run_id = runs[0].run_id
        run_pids = {
            entry.dagster_event.pid
            for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
        }
        spans = step_spans(instance, run_id)
        assert {s.step_key for s in spans} == {f"{p.name}_cdr_and_recordings" for p in PBXS}
        assert [s for s in spans if len(s.pids) != 1] == [], spans
        step_pids = {pid for s in spans for pid in s.pids}
        assert len(step_pids) == len(spans), f"steps shared a process: {spans}"
        assert not step_pids & run_pids, f"a step ran in the run's process {run_pids}: {spans}"
        assert [name for name, _ in run_events(instance, run_id)][-1] == "RUN_SUCCESS"
        for pbx in PBXS:
            for asset in ("cdr", "recordings"):
                records = instance.fetch_materializations(
                    dg.AssetKey([pbx.name, asset]), limit=100
                ).records
                assert sorted(r.partition_key for r in records) == [d.isoformat() for d in DAYS]

    for pbx in PBXS:
        assert_days_stored(duckdb_path, sim, pbx, DAYS)
    parquet = s3_client.list_objects_v2(Bucket=s3_bucket_url.bucket, Prefix="cdr/")
    assert len([o for o in parquet.get("Contents", []) if o["Key"].endswith(".parquet")]) >= len(
        PBXS
    ) * len(DAYS), "the days' Parquet files are not in the bucket"
    with contextlib.closing(connect_reader(duckdb_path)) as con:
        archived = con.execute(
            "SELECT uri, bytes FROM recordings WHERE status = 'archived'"
        ).fetchall()
    assert archived, "no recording was archived: nothing reached S3"
    prefix = f"{recordings_url}/"
    for uri, size in archived:
        assert uri.startswith(prefix), uri
        head = s3_client.head_object(
            Bucket=s3_bucket_url.bucket, Key=uri.removeprefix("s3://").split("/", 1)[1]
        )
        assert head["ContentLength"] == size, uri
