"""`make demo` and `make dev`'s command paths, `python -m cdr_assets.demo run|dev`, on free ports.

The demo config is the repository's own `cdr_assets.yaml` with only the simulator's port and the
storage paths (a temp dir) changed; the commands run from the repository root (the dg project),
as `make` runs them, against the repository's `dagster.yaml`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest
import requests
import yaml

from cdr_assets.config import load_config
from cdr_assets.demo import demo_environment, materialize_pbx, verify_warehouse
from cdr_assets.simulator import Simulator

REPO_ROOT = Path(__file__).resolve().parents[1]
WARNING_WORDS = re.compile(r"warning|deprecat|supersed|beta|preview", re.IGNORECASE)
DAY_LINE = re.compile(
    r"^  (?P<pbx>\w+) (?P<day>\d{4}-\d\d-\d\d): (?P<cdrs>\d+) CDRs, "
    r"(?P<archived>\d+)/(?P<expected>\d+) recordings, "
    r"checks (?P<passed>\d+)/(?P<checks>\d+) passed$"
)
WORKSPACE_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
)
#: `dg dev` logs WARNING lines of its own (the instance's dagster.yaml is not the one in the
#: project root; the daemon's first start); none may be a deprecation or beta notice.
DEV_NOTICES = re.compile(r"deprecat|supersed|beta|preview", re.IGNORECASE)
#: Checks per day: Yeastar's cdr has cdr_in_query_window besides the three every PBX has.
CHECKS_PER_DAY = {"hq": 5, "saigon": 4}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _demo_config(tmp_path: Path, port: int, **pbx_overrides: dict[str, Any]) -> Path:
    """The repository's demo config on `port`, its storage under `tmp_path`."""
    config = yaml.safe_load((REPO_ROOT / "cdr_assets.yaml").read_text())
    data = tmp_path / "data"
    config["storage"] = {
        "data_dir": str(data),
        "duckdb_path": str(data / "cdr.duckdb"),
        "recordings_dir": str(data / "recordings"),
    }
    for pbx in config["pbxs"]:
        pbx["base_url"] = f"http://127.0.0.1:{port}"
        pbx.update(pbx_overrides.get(pbx["name"], {}))
    path = tmp_path / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run_demo(tmp_path: Path, config: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cdr_assets.demo",
            "run",
            "--config",
            str(config),
            "--dagster-home",
            str(tmp_path / "dagster_home"),
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )


def _closed_days(timezone: str) -> list[str]:
    today = datetime.now(ZoneInfo(timezone)).date()
    return [(today - timedelta(days=back)).isoformat() for back in (3, 2, 1)]


@dataclass
class DemoRun:
    tmp_path: Path
    config: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """One `python -m cdr_assets.demo run` of both demo PBXs, shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("demo")
    port = _free_port()
    config = _demo_config(tmp_path, port)
    yield DemoRun(tmp_path, config, _run_demo(tmp_path, config, port))


def test_demo_prints_a_progress_view_per_pbx_and_day_without_warnings(demo_run: DemoRun) -> None:
    output = demo_run.result.stdout
    assert demo_run.result.returncode == 0, output[-3000:]
    assert [line for line in output.splitlines() if WARNING_WORDS.search(line)] == []
    config = load_config(demo_run.config)
    with duckdb.connect(config.storage.duckdb_path, read_only=True) as con:
        stored = {
            (pbx, day): (calls, with_recording, archived)
            for pbx, day, calls, with_recording, archived in con.execute(
                "SELECT c.pbx, c.call_date::VARCHAR, count(*), "
                "count(*) FILTER (WHERE c.has_recording), "
                "count(*) FILTER (WHERE r.status = 'archived') "
                "FROM cdr c LEFT JOIN recordings r USING (pbx, cdr_id) GROUP BY ALL"
            ).fetchall()
        }
    expected = {(pbx.name, day) for pbx in config.pbxs for day in _closed_days(pbx.timezone)}
    assert set(stored) == expected
    lines = [match for line in output.splitlines() if (match := DAY_LINE.match(line))]
    # Each day once as it goes and once in the summary at the end.
    assert sorted((m["pbx"], m["day"]) for m in lines) == sorted([*expected, *expected])
    for match in lines:
        calls, with_recording, archived = stored[(match["pbx"], match["day"])]
        assert int(match["cdrs"]) == calls > 0
        assert int(match["expected"]) == with_recording
        assert int(match["archived"]) == archived == with_recording
        assert int(match["passed"]) == int(match["checks"]) == CHECKS_PER_DAY[match["pbx"]]
    for pbx in config.pbxs:
        days = _closed_days(pbx.timezone)
        launch = (
            f"dg launch --assets {pbx.name}/cdr,{pbx.name}/recordings "
            f"--partition-range {days[0]}...{days[-1]}"
        )
        assert f"{pbx.name} ({pbx.vendor}, {pbx.timezone}): {launch}" in output
    assert "duplicate (pbx, cdr_id): 0" in output
    assert re.search(r"recordings archived: [1-9]\d*, files failing sha256: 0", output)
    assert "has_recording rows without an archived recording: 0" in output
    assert f"DuckDB file: {config.storage.duckdb_path}" in output
    log = Path(config.storage.data_dir) / "demo.log"
    assert f"full output goes to {log}" in output
    log_text = log.read_text()
    assert f"$ {launch}" in log_text
    assert " - DEBUG - " in log_text and "RUN_SUCCESS" in log_text
    assert not WARNING_WORDS.search(log_text)
    assert "demo-secret" not in output + log_text


def test_verification_fails_when_an_archived_recording_was_altered(demo_run: DemoRun) -> None:
    config = load_config(demo_run.config)
    with duckdb.connect(config.storage.duckdb_path, read_only=True) as con:
        (uri,) = con.execute(
            "SELECT uri FROM recordings WHERE status = 'archived' ORDER BY uri LIMIT 1"
        ).fetchone()
    original = Path(uri).read_bytes()
    try:
        Path(uri).write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        problems = verify_warehouse(config, [])
    finally:
        Path(uri).write_bytes(original)
    assert problems == ["1 archived recordings fail their sha256"]
    assert verify_warehouse(config, []) == []


def test_demo_exits_non_zero_naming_the_pbx_whose_run_failed(tmp_path: Path) -> None:
    port = _free_port()
    tomorrow = (datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date() + timedelta(days=1)).isoformat()
    config = _demo_config(tmp_path, port, saigon={"start_date": tomorrow})
    # Only saigon: its days all lie before its start date, so its dg launch cannot run.
    data = yaml.safe_load(config.read_text())
    data["pbxs"] = [pbx for pbx in data["pbxs"] if pbx["name"] == "saigon"]
    config.write_text(yaml.safe_dump(data))

    result = _run_demo(tmp_path, config, port)

    assert result.returncode == 1, result.stdout[-3000:]
    assert re.search(
        r"saigon: dg launch exited 1: \S*DagsterInvalidSubsetError: .*partition key", result.stdout
    )
    for day in _closed_days("Asia/Ho_Chi_Minh"):
        assert f"  saigon {day}: not materialized by this run" in result.stdout
    assert "demo verification failed:" in result.stdout


def test_a_failed_step_is_reported_with_its_own_description(
    tmp_path: Path,
    make_simulator: Callable[..., Simulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(calls_per_day=8)
    sim.faults.fail_next("/api/pbx/cdr", 400, times=100)
    port = int(sim.base_url.rsplit(":", 1)[1])
    path = _demo_config(tmp_path, port)
    config = load_config(path)
    saigon = next(pbx for pbx in config.pbxs if pbx.name == "saigon")
    env = demo_environment(path, tmp_path / "home", REPO_ROOT / "dagster.yaml")
    monkeypatch.chdir(REPO_ROOT)

    log_path = tmp_path / "demo.log"
    with (
        dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
        log_path.open("w") as log,
    ):
        days, failure = materialize_pbx(saigon, config, env, instance, log)

    assert failure is not None
    # one day or, as here, a range fetched in one query window: "partitions A, B, C (...)"
    assert failure.startswith("saigon: dg launch exited 1: PBX 'saigon', partition"), failure
    assert all(str(day.day) in failure for day in days), failure
    assert "/api/pbx/cdr" in failure and "Not retried" in failure
    assert [progress.materialized for progress in days] == [False, False, False]
    printed = capsys.readouterr().out
    assert all(f"  saigon {d.day}: not materialized by this run" in printed for d in days)
    assert "demo-token" not in printed + failure + log_path.read_text()


def _dev_children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_dev_serves_the_ui_on_the_demo_instance_and_stops_all_of_it(tmp_path: Path) -> None:
    port, ui_port = _free_port(), _free_port()
    config = _demo_config(tmp_path, port)
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cdr_assets.demo",
            "dev",
            "--config",
            str(config),
            "--dagster-home",
            str(tmp_path / "dagster_home"),
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        locations: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not locations:
            time.sleep(0.5)
            with contextlib.suppress(requests.RequestException):
                answer = requests.post(
                    f"http://127.0.0.1:{ui_port}/graphql",
                    json={"query": WORKSPACE_QUERY},
                    timeout=5,
                ).json()
                entries = answer["data"]["workspaceOrError"]["locationEntries"]
                locations = [e for e in entries if e["loadStatus"] == "LOADED"]
        assert [e["name"] for e in locations] == ["cdr_assets"]
        assert requests.get(f"http://127.0.0.1:{port}/api/pbx/cdr", timeout=5).status_code == 401
        (dg_dev,) = _dev_children(demo.pid)
        assert (tmp_path / "dagster_home" / "dagster.yaml").read_text() == (
            REPO_ROOT / "dagster.yaml"
        ).read_text()
    finally:
        demo.terminate()
        output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert f"Dagster UI on http://127.0.0.1:{ui_port}" in output
    assert "Dagster services shut down." in output
    assert not _group_alive(dg_dev), "dg dev left processes behind (its code server?)"
    assert [line for line in output.splitlines() if DEV_NOTICES.search(line)] == []
