"""One fault's world: a simulator, a config, a data directory and a Dagster instance of its own.

Owns what every case needs around the real commands: writing the config the way a user would
(secrets as env references), copying the instance home with the repository's `dagster.yaml`,
running `dg launch` from the project root in its own process group, and reading back what a
run left: its step failures and retries from the instance, the day's rows, manifest and rejects
from the warehouse, temp files and the earlier day's files from disk. It must not know any
fault: the cases say what to break and what to expect.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import yaml

from cdr_assets.simulator import Simulator, SimulatorConfig
from cdr_assets.storage.manifest import read_manifest
from cdr_assets.storage.parquet import read_partition
from cdr_assets.storage.rejects import read_rejects

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_DAY = date(2026, 6, 27)
EARLIER_DAY = date(2026, 6, 26)
CALLS_PER_DAY = 120
PAGE_SIZE = 50  # three list pages a day, so faults can land in the middle of a day
TIMEOUT_S = 3.0
#: The simulator's credentials under the names the config refers to.
GOOD_SECRETS = {
    "REL_YEASTAR_ID": "demo-client",
    "REL_YEASTAR_SECRET": "demo-secret",
    "REL_ZORIO_TOKEN": "demo-token",
}
#: The values among them that are secrets (the client id is not).
SECRET_VALUES = (GOOD_SECRETS["REL_YEASTAR_SECRET"], GOOD_SECRETS["REL_ZORIO_TOKEN"])
#: Record field each vendor's `cdr_id` comes from.
ID_FIELDS = {"yeastar": "uid", "zorio": "uuid"}
#: Columns that differ between two correct runs of the same day.
RUN_COLUMNS = ("ingested_at", "run_id")
#: How long one `dg launch` may take before the case counts as hung.
LAUNCH_TIMEOUT_S = 300


@dataclass(frozen=True)
class PbxSpec:
    """One PBX of a case's config, served by the case's simulator."""

    name: str
    vendor: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def timezone(self) -> str:
        return "Asia/Singapore" if self.vendor == "yeastar" else "Asia/Ho_Chi_Minh"

    def selection(self) -> str:
        return f"{self.name}/cdr,{self.name}/recordings"


YEASTAR = PbxSpec("hq", "yeastar")
ZORIO = PbxSpec("saigon", "zorio")


def pbx_block(pbx: PbxSpec, base_url: str) -> dict[str, Any]:
    """The PBX's entry in `cdr_assets.yaml`, as a user writes it."""
    block: dict[str, Any] = {
        "name": pbx.name,
        "vendor": pbx.vendor,
        "base_url": base_url,
        "timezone": pbx.timezone,
        "start_date": "2026-06-01",
        "timeout_s": TIMEOUT_S,
    }
    if pbx.vendor == "yeastar":
        block |= {
            "client_id": {"env": "REL_YEASTAR_ID"},
            "client_secret": {"env": "REL_YEASTAR_SECRET"},
            "page_size": PAGE_SIZE,
        }
    else:
        block |= {
            "api_token": {"env": "REL_ZORIO_TOKEN"},
            "per_page": PAGE_SIZE,
            "query_timezone": "UTC",
        }
    return block | dict(pbx.settings)


def simulator_config(**overrides: Any) -> SimulatorConfig:
    return SimulatorConfig(calls_per_day=CALLS_PER_DAY).with_overrides(**overrides)


@dataclass
class Launch:
    """What one `dg launch` did."""

    returncode: int
    seconds: float
    output: str
    killed: bool = False


@dataclass
class Workspace:
    """A directory holding one case's config, data and DAGSTER_HOME."""

    root: Path
    pbxs: tuple[PbxSpec, ...]
    base_url: str
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def config_path(self) -> Path:
        return self.root / "cdr_assets.yaml"

    def write_config(self) -> None:
        """(Re)write the config for the current `base_url`; creates the instance home."""
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / "dagster.yaml", self.home / "dagster.yaml")
        config = {
            "storage": {
                "data_dir": str(self.data_dir),
                "duckdb_path": str(self.data_dir / "cdr.duckdb"),
                "recordings_dir": str(self.data_dir / "recordings"),
            },
            "pbxs": [pbx_block(pbx, self.base_url) for pbx in self.pbxs],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            **GOOD_SECRETS,
            **self.env_overrides,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": sys.prefix,
            "DAGSTER_HOME": str(self.home),
            "CDR_ASSETS_CONFIG": str(self.config_path),
            "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        }

    def start_launch(self, pbx: PbxSpec, day: date = RUN_DAY) -> subprocess.Popen[str]:
        """`dg launch --assets <pbx>/cdr,<pbx>/recordings --partition <day>` in its own group."""
        dg_command = str(Path(sys.executable).parent / "dg")
        return subprocess.Popen(
            [dg_command, "launch", "--assets", pbx.selection(), "--partition", day.isoformat()],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def launch(self, pbx: PbxSpec, day: date = RUN_DAY) -> Launch:
        started = time.monotonic()
        process = self.start_launch(pbx, day)
        try:
            output, _ = process.communicate(timeout=LAUNCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_group(process)
            output, _ = process.communicate()
            return Launch(-9, time.monotonic() - started, output or "", killed=True)
        return Launch(process.returncode, time.monotonic() - started, output)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def run_report(self) -> RunReport:
        """Step retries and step failure messages of every run in the instance, latest last."""
        retries = 0
        failures: list[str] = []
        runs = 0
        with self.instance() as instance:
            for run in reversed(instance.get_runs()):
                runs += 1
                retries += len(
                    instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
                )
                for entry in instance.all_logs(
                    run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
                ):
                    failures.append(failure_text(entry))
        return RunReport(runs=runs, step_retries=retries, failures=failures)

    # ---------------------------------------------------------------------------- warehouse

    def day_rows(self, pbx: PbxSpec, day: date = RUN_DAY) -> pa.Table | None:
        table = read_partition(str(self.data_dir), "cdr", pbx.name, day)
        if table is None:
            return None
        keep = [name for name in table.column_names if name not in RUN_COLUMNS]
        return table.select(keep).sort_by("cdr_id")

    def manifest(self, pbx: PbxSpec, day: date = RUN_DAY) -> dict[str, tuple[Any, ...]]:
        """cdr_id -> (status, sha256, size) of the day's recordings manifest."""
        return {
            cdr_id: (row.status, row.sha256, row.bytes)
            for cdr_id, row in read_manifest(str(self.data_dir), pbx.name, day).items()
        }

    def rejected_ids(self, pbx: PbxSpec, day: date = RUN_DAY) -> list[str]:
        return [row.cdr_id for row in read_rejects(str(self.data_dir), pbx.name, day)]

    def temp_files(self) -> list[str]:
        """Files a killed writer could leave where readers look: in the partitions and the
        archive (the staging area under `.staging` is not a reader's)."""
        found = []
        for path in self.data_dir.rglob("*"):
            relative = path.relative_to(self.data_dir)
            if relative.parts[0].startswith("."):
                continue
            if path.is_file() and (".tmp" in path.name or path.name.endswith(".part")):
                found.append(str(relative))
        return found

    def archived_files_verified(self, pbx: PbxSpec, day: date = RUN_DAY) -> bool:
        """Every archived manifest row names a file whose bytes hash to its sha256."""
        rows = read_manifest(str(self.data_dir), pbx.name, day)
        for row in rows.values():
            if row.status != "archived":
                continue
            if hashlib.sha256(Path(row.uri).read_bytes()).hexdigest() != row.sha256:
                return False
        return True

    def earlier_fingerprint(self, pbx: PbxSpec) -> dict[str, str]:
        """sha256 of every file of the earlier day (its partitions and archived recordings)."""
        marker = EARLIER_DAY.isoformat()
        digests = {}
        for path in sorted(self.data_dir.rglob("*")):
            relative = str(path.relative_to(self.data_dir))
            if path.is_file() and marker in relative and pbx.name in relative:
                digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        return digests


@dataclass
class RunReport:
    runs: int
    step_retries: int
    failures: list[str]


def failure_text(entry: dg.EventLogEntry) -> str:
    """A step failure's whole message: the event's and its error chain's."""
    event = entry.dagster_event
    parts = [event.message or "" if event else entry.user_message]
    data = event.event_specific_data if event else None
    error = getattr(data, "error", None)
    while error is not None:
        parts.append(error.message)
        error = error.cause
    user_data = getattr(data, "user_failure_data", None)
    if user_data is not None and user_data.description:
        parts.append(user_data.description)
    return " | ".join(p.strip() for p in parts if p)


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL a launch and every process it started (its own session), as an OOM kill or a
    node loss would end them."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()


def copy_data(source: Path, target: Path) -> None:
    """An earlier state of the warehouse for a new case: its Parquet files, archive and state,
    not its DuckDB file (each case's runs create their own views over their own files)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("cdr.duckdb*"))


def started_simulator(config: SimulatorConfig) -> Simulator:
    return Simulator(config).start()
