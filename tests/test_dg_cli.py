"""The `dg` CLI (dagster-dg-cli) on a user's project, as subprocesses: `dg scaffold defs
cdr_assets.CdrAssetsComponent pbx_fleet` writes the defs.yaml, which, pointed at a simulator on
loopback (`python -m cdr_assets.simulator --port 0`), `dg check defs` accepts (and rejects with the
key-named message and line for a bad zone), `dg list defs` shows per PBX, and `dg launch`
materializes one partition into the DuckDB file.

The project is flat and not installed (dg imports it from the project root); dg runs in this
interpreter's environment (`VIRTUAL_ENV`), with its own DAGSTER_HOME holding the repo's
dagster.yaml, no update check, no stdin, and each process in its own session, killed with its
group if it outlives its timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml

from cdr_assets.simulator import Simulator, SimulatorConfig
from tests.fixtures.dg_project import write_dg_project

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = date(2026, 6, 27)
CALLS_PER_DAY = 24
PACKAGE = "fleet"
SIM_SECRETS = {
    "HQ_CLIENT_ID": "demo-client",
    "HQ_CLIENT_SECRET": "demo-secret",
    "SAIGON_ZORIO_TOKEN": "demo-token",
}


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run a command in its own session; returns (exit code, stdout + stderr). On timeout the
    whole process group is killed (code servers and step processes included)."""
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        _kill_group(proc)
    return proc.returncode, output


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """End whatever the process left in its session (it is the group's leader)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@dataclass
class DgProject:
    root: Path
    env: dict[str, str]
    home: Path
    scaffolded: str  # defs.yaml as `dg scaffold defs` wrote it

    @property
    def defs_yaml(self) -> Path:
        return self.root / PACKAGE / "defs" / "pbx_fleet" / "defs.yaml"

    def dg(self, *args: str, timeout: float = 120) -> tuple[int, str]:
        return run([str(BIN / "dg"), *args], self.root, self.env, timeout)


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m cdr_assets.simulator --port 0`, its URL read from its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdr_assets.simulator", "--port", "0"]
        + ["--calls-per-day", str(CALLS_PER_DAY)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"simulator did not start: {line!r}"
        yield match.group(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(proc)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, sim_url: str) -> DgProject:
    """A scaffolded project whose two PBXs (the scaffolded Yeastar one and a Zorio one added
    by hand) point at the simulator."""
    base = tmp_path_factory.mktemp("dg")
    root = base / "project"
    write_dg_project(root, PACKAGE)
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DAGSTER_", "DG_", "CDR_ASSETS_")) and key != "PYTHONPATH"
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=sys.prefix,
        DAGSTER_HOME=str(home),
        DAGSTER_DG_UPDATE_CHECK_ENABLED="0",
        **SIM_SECRETS,
    )
    made = DgProject(root, env, home, scaffolded="")
    code, output = made.dg("scaffold", "defs", "cdr_assets.CdrAssetsComponent", "pbx_fleet")
    assert code == 0, output
    made.scaffolded = made.defs_yaml.read_text()

    document = yaml.safe_load(made.scaffolded)
    (hq,) = document["attributes"]["pbxs"]
    hq.update(base_url=sim_url, start_date="2026-06-01", max_retries=2)
    saigon = {
        "name": "saigon",
        "vendor": "zorio",
        "base_url": sim_url,
        "timezone": "Asia/Ho_Chi_Minh",
        "start_date": "2026-06-01",
        "api_token": "{{ env.SAIGON_ZORIO_TOKEN }}",
    }
    document["attributes"]["pbxs"].append(saigon)
    document["requirements"]["env"].append("SAIGON_ZORIO_TOKEN")
    made.defs_yaml.write_text(yaml.safe_dump(document, sort_keys=False))
    return made


def test_dg_finds_the_registered_component(project: DgProject) -> None:
    code, output = project.dg("list", "components", "--json")
    assert code == 0, output
    listed = {item["key"]: item for item in json.loads(output[output.index("{") :])["items"]}
    assert "PBX CDR and recording assets" in listed["cdr_assets.CdrAssetsComponent"]["summary"]


def test_scaffold_declares_a_pbx_with_the_config_file_keys(project: DgProject) -> None:
    document = yaml.safe_load(project.scaffolded)
    assert document["type"] == "cdr_assets.CdrAssetsComponent"
    assert set(document["attributes"]) == {"storage", "pbxs"}
    (pbx,) = document["attributes"]["pbxs"]
    assert set(pbx) == {
        "name",
        "vendor",
        "base_url",
        "timezone",
        "start_date",
        "client_id",
        "client_secret",
    }
    assert pbx["client_secret"] == "{{ env.HQ_CLIENT_SECRET }}"
    assert document["requirements"] == {"env": ["HQ_CLIENT_ID", "HQ_CLIENT_SECRET"]}


def test_check_defs_passes_then_names_a_bad_zone_and_its_line(project: DgProject) -> None:
    code, output = project.dg("check", "defs")
    assert code == 0, output
    assert "All definitions loaded successfully" in output

    good = project.defs_yaml.read_text()
    bad = good.replace("timezone: Asia/Singapore", "timezone: Asia/Singapur", 1)
    line = 1 + next(i for i, text in enumerate(bad.splitlines()) if "Asia/Singapur" in text)
    project.defs_yaml.write_text(bad)
    try:
        code, output = project.dg("check", "defs")
    finally:
        project.defs_yaml.write_text(good)
    assert code == 1, output
    assert "pbxs[0].timezone: 'Asia/Singapur' is not an IANA time zone" in output
    assert f"{project.defs_yaml}:{line} - attributes.pbxs.0.timezone" in output


def test_list_defs_shows_each_pbxs_assets_checks_job_and_schedule(project: DgProject) -> None:
    code, output = project.dg("list", "defs", "--json")
    assert code == 0, output
    listed: dict[str, Any] = json.loads(output[output.index("{") :])
    assets = {a["asset_key"]: a for a in listed["assets"]}
    checks = {c["key"] for c in listed["asset_checks"]}
    for pbx in ("hq", "saigon"):
        assert {f"{pbx}/cdr", f"{pbx}/recordings"} <= set(assets)
        assert assets[f"{pbx}/recordings"]["dependency_keys"] == [f"{pbx}/cdr"]
        assert {f"{pbx}/cdr:cdr_id_unique", f"{pbx}/recordings:every_recording_archived"} <= checks
        assert f"{pbx}/recordings:recordings_audit" in checks
    assert sorted(assets["analytics/cdr_daily_kpis"]["dependency_keys"]) == [
        "hq/cdr",
        "saigon/cdr",
    ]
    assert len(assets) == 5
    assert {j["name"] for j in listed["jobs"]} == {
        "hq_daily_job",
        "saigon_daily_job",
        "hq_recordings_audit_job",
        "saigon_recordings_audit_job",
    }
    schedules = {s["name"]: s["cron_schedule"] for s in listed["schedules"]}
    assert schedules == {
        "hq_daily": "0 2 * * *",
        "saigon_daily": "0 2 * * *",
        "hq_recordings_audit": "0 3 * * 0",
        "saigon_recordings_audit": "0 3 * * 0",
    }
    assert {r["name"] for r in listed["resources"]} == {"hq_pbx", "saigon_pbx", "cdr_duckdb"}


def test_launch_materializes_one_partition_into_duckdb(project: DgProject) -> None:
    code, output = project.dg(
        "launch", "--assets", "hq/cdr,hq/recordings", "--partition", DAY.isoformat(), timeout=240
    )
    assert code == 0, output
    same_data = Simulator(SimulatorConfig().with_overrides(calls_per_day=CALLS_PER_DAY))
    expected = len(same_data.calls("yeastar", DAY))  # the served calls: deterministic
    with duckdb.connect(str(project.root / "data" / "cdr.duckdb"), read_only=True) as con:
        (rows,) = con.execute(
            "select count(*) from cdr where pbx = 'hq' and call_date = ?", [DAY]
        ).fetchone()
    assert rows == expected > 0
    with dg.DagsterInstance.from_config(str(project.home)) as instance:
        for key in (["hq", "cdr"], ["hq", "recordings"]):
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None and event.asset_materialization is not None
            assert event.asset_materialization.partition == DAY.isoformat()
