"""Instance storage on PostgreSQL: `docs/dagster.postgres.yaml` against a real server on loopback
(tests/fixtures/postgres.py), with `dg dev`'s daemon working the run queue and a pool.

Two PBXs share the pool `pbx_wan` (limit 1: the file's `default_limit`); one backfill of three
days makes one run per PBX (single-run backfill policy). Both runs are queued at once, and the
run queue alone would run them side by side (`max_concurrent_runs: 4`), but their steps must not
overlap: the second step waits for the pool's slot (granularity `op`). What the runs recorded
(materializations, check evaluations, pool slots) is read back from the database, and the rows
from the Parquet files.
"""

from __future__ import annotations

import contextlib
from datetime import date
from pathlib import Path

import pytest

from tests.deploy.deployment import (
    DG,
    REPO_ROOT,
    Pbx,
    assert_days_stored,
    deployment_env,
    deployment_instance,
    pbx_block,
    run_backfill,
    run_events,
    step_spans,
    write_config,
)
from tests.fixtures.dagster_dev import running_dagster_dev
from tests.fixtures.postgres import (
    BINARIES_ENV_VAR,
    PostgresDatabase,
    running_postgres,
    wheel_bin_dir,
)

POOL = "pbx_wan"
PBXS = (Pbx("hq", "yeastar", "Asia/Singapore"), Pbx("saigon", "zorio", "Asia/Ho_Chi_Minh"))
FIRST, LAST = date(2026, 6, 20), date(2026, 6, 22)
DAYS = [FIRST, date(2026, 6, 21), LAST]
CALLS_PER_DAY = 12
CHECKS = {
    "hq": {
        "cdr": {"cdr_id_unique", "cdr_complete", "no_rejected_records", "cdr_in_query_window"},
        "recordings": {"every_recording_archived"},
    },
    "saigon": {
        "cdr": {"cdr_id_unique", "cdr_complete", "no_rejected_records"},
        "recordings": {"every_recording_archived"},
    },
}


def test_the_wheel_binaries_serve_on_their_own() -> None:
    """CI machines have only what the repo installs: the pgserver wheel's server must start
    (as `nobody` under root) and answer over TCP without any system PostgreSQL."""
    bin_dir = wheel_bin_dir()
    if bin_dir is None:
        pytest.fail(f"the pgserver wheel is not installed (dev extra); {BINARIES_ENV_VAR}")
    with running_postgres(bin_dir) as server:
        assert server.version().split(".")[0].isdigit()
        assert server.bin_dir == bin_dir
        root = server.root
    assert not root.exists(), "the server's directory outlived it"


def test_backfill_through_queue_and_pool_on_postgres(
    postgres_database: PostgresDatabase, make_simulator, tmp_path: Path
) -> None:
    sim = make_simulator(
        calls_per_day=CALLS_PER_DAY,
        yeastar={"timezone": PBXS[0].timezone},
        zorio={"timezone": PBXS[1].timezone},
    )
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "cdr_assets.yaml",
        {
            "data_dir": str(data),
            "duckdb_path": str(data / "cdr.duckdb"),
            "recordings_dir": str(data / "recordings"),
        },
        [pbx_block(p, sim.base_url, date(2026, 6, 1), pool=POOL) for p in PBXS],
    )
    env = deployment_env(tmp_path / "dagster_home", config, postgres_database)
    with running_dagster_dev(
        [DG, "dev"], cwd=REPO_ROOT, env=env, log_path=tmp_path / "dg_dev.log"
    ) as dev:
        backfill = run_backfill(dev, PBXS, FIRST, LAST, runs=len(PBXS), timeout_s=150)
    run_ids = [run["runId"] for run in backfill["runs"]]
    assert len(run_ids) == len(PBXS), backfill["runs"]

    with deployment_instance(env) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        events = {run_id: run_events(instance, run_id) for run_id in run_ids}
        for run_id, run in events.items():
            names = [name for name, _ in run]
            queued = [n for n in names if n in ("RUN_ENQUEUED", "RUN_STARTING", "RUN_START")]
            # ENQUEUED by the coordinator, STARTING when the daemon takes it off the queue
            assert queued == ["RUN_ENQUEUED", "RUN_STARTING", "RUN_START"], (run_id, names)
            assert names[-1] == "RUN_SUCCESS", (run_id, names)
        spans = sorted(
            (s for r in run_ids for s in step_spans(instance, r)), key=lambda s: s.started
        )
        assert len(spans) == len(PBXS), spans
        first, second = spans
        assert second.started >= first.ended, f"steps of pool {POOL} overlapped: {spans}"
        # Both runs were queued before the first step ended, so they competed for the slot
        # (max_concurrent_runs alone would have let them run side by side).
        assert all(dict(run)["RUN_ENQUEUED"] < first.ended for run in events.values()), events
        pool = instance.event_log_storage.get_concurrency_info(POOL)
        assert (pool.slot_count, pool.claimed_slots) == (1, []), pool

    with contextlib.closing(postgres_database.connect()) as con, con.cursor() as cur:
        cur.execute(
            "SELECT asset_key, partition, count(*) FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY 1, 2"
        )
        materialized = {(key, part): n for key, part, n in cur.fetchall()}
        cur.execute(
            "SELECT asset_key, check_name, partition, execution_status FROM asset_check_executions"
        )
        checks = cur.fetchall()
    expected = {
        (f'["{p.name}", "{asset}"]', day.isoformat()): 1
        for p in PBXS
        for asset in ("cdr", "recordings")
        for day in DAYS
    }
    assert materialized == expected
    # recordings_audit re-reads the archive in its own job, not in a backfill of days
    statuses = {status for _, check, _, status in checks if check != "recordings_audit"}
    assert statuses == {"SUCCEEDED"}, checks
    for pbx, by_asset in CHECKS.items():
        for asset, names in by_asset.items():
            for name in names:
                days = {
                    part
                    for key, check, part, _ in checks
                    if key == f'["{pbx}", "{asset}"]' and check == name
                }
                assert days == {d.isoformat() for d in DAYS}, (pbx, asset, name, days)

    for pbx in PBXS:
        assert_days_stored(str(data / "cdr.duckdb"), sim, pbx, DAYS)
