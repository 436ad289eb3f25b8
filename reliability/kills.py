"""`kill -9` of a run in the middle of a Parquet write and in the middle of its recordings.

Each case starts `dg launch` in its own process group, waits until the run is inside the step
it means to kill (a staging file of the day's Parquet is being written; the manifest has been
checkpointed while recordings download), SIGKILLs the whole group as an OOM kill or a lost node
would, checks what readers can see right then, and starts the same command again with no
manual step in between. The second run must succeed, leave the clean run's warehouse, and (for
recordings) download only what the first had not finished.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdr_assets.simulator import Simulator
from reliability.cases import Armed, FaultCase, Start, judge_launch, no_fault
from reliability.outcome import Row
from reliability.workspace import (
    RUN_DAY,
    ZORIO,
    PbxSpec,
    Workspace,
    copy_data,
    kill_group,
    simulator_config,
    started_simulator,
)

#: How long a run may take to reach the point where it is killed.
REACH_TIMEOUT_S = 120.0
#: A day big enough that its Parquet file is written while it is paged (row groups of 50,000
#: rows are flushed as pages come), without recordings: the kill must land inside the write.
BIG_DAY: dict[str, Any] = {"calls_per_day": 150_000, "recording_ratio": 0.0}
BIG_DAY_PBX = PbxSpec("saigon", "zorio", {"per_page": 200})
#: Zorio's signed audio path, as the simulator counts it.
ZORIO_AUDIO = "/api/public/recordings/{id}/audio"


def _staging_file(workspace: Workspace) -> bool:
    """A non-empty temp file of the `cdr` table is being written."""
    staging = workspace.data_dir / ".staging" / "cdr"
    try:
        return any(p.is_file() and p.stat().st_size > 0 for p in staging.rglob("*"))
    except OSError:  # the writer moved it meanwhile
        return False


def _wait_for(condition: Callable[[], bool], process_alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + REACH_TIMEOUT_S
    while time.monotonic() < deadline and process_alive():
        if condition():
            return True
        time.sleep(0.02)
    return False


def kill_during_parquet_write(start: Start, scratch: Path) -> Row:
    """A big day's staging file is open while its pages come; the kill lands while it is
    written (it exists, with bytes in it, and the day is not committed yet)."""
    pbx = BIG_DAY_PBX
    row = Row("kill -9 during the Parquet write, then the same command again")
    root = Path(tempfile.mkdtemp(prefix="kill-parquet-", dir=scratch))
    copy_data(start.data_dir, root / "data")
    sim = started_simulator(simulator_config(**start.simulator))
    try:
        workspace = Workspace(root, (pbx,), sim.base_url)
        workspace.write_config()
        began = time.monotonic()
        process = workspace.start_launch(pbx)
        reached = _wait_for(lambda: _staging_file(workspace), lambda: process.poll() is None)
        kill_group(process)
        killed_after = time.monotonic() - began
        if not reached:
            row.problems.append("the run never reached its Parquet write")
        stored, temp = workspace.day_rows(pbx), workspace.temp_files()
        row.detail = (
            f"killed {killed_after:.1f} s in, while writing; after the kill: "
            f"{'no' if stored is None else stored.num_rows} rows of {RUN_DAY} and "
            f"{len(temp)} temp files where readers look"
        )
        if stored is not None:
            row.problems.append("a partial day was visible after the kill")
        if temp:
            row.problems.append(f"temp files where readers look after the kill: {temp[:2]}")
        run_again(row, workspace, pbx, sim, start, killed_after)
        leftovers = [str(p) for p in (workspace.data_dir / ".staging").rglob("*") if p.is_file()]
        if leftovers:
            row.problems.append(f"the rewrite left staging files: {leftovers[:2]}")
    finally:
        sim.stop()
    return row


def kill_during_recordings(start: Start, scratch: Path) -> Row:
    """Throttled audio makes the day's recordings take ~30 s; the kill lands after the first
    manifest checkpoint. The next run may download only what the checkpoint does not hold."""
    pbx = ZORIO
    row = Row("kill -9 during recordings, then the same command again")
    root = Path(tempfile.mkdtemp(prefix="kill-recordings-", dir=scratch))
    copy_data(start.data_dir, root / "data")
    sim = started_simulator(simulator_config())
    try:
        workspace = Workspace(root, (pbx,), sim.base_url)
        workspace.write_config()
        total_bytes = sum(entry[2] or 0 for entry in start.reference.manifest.values())
        sim.faults.throttle_bytes_per_s = max(1, int(total_bytes / (4 * 30)))  # 4 at once, 30 s
        began = time.monotonic()
        process = workspace.start_launch(pbx)
        reached = _wait_for(
            lambda: _checkpointed(workspace, pbx) > 0, lambda: process.poll() is None
        )
        kill_group(process)
        killed_after = time.monotonic() - began
        checkpointed = _checkpointed(workspace, pbx)
        if not reached:
            row.problems.append("the run never checkpointed its manifest")
        total = len(start.reference.manifest)
        run_again(row, workspace, pbx, sim, start, killed_after)
        downloads = sim.stats.count(ZORIO_AUDIO)
        row.detail = (
            f"killed {killed_after:.1f} s in with {checkpointed}/{total} recordings "
            f"checkpointed; the next run downloaded {downloads}"
        )
        if downloads != total - checkpointed:
            row.problems.append(f"downloaded {downloads}, expected {total - checkpointed}")
        manifest = workspace.manifest(pbx)
        if len(manifest) != total:
            row.problems.append(f"manifest has {len(manifest)} rows for {total} recordings")
    finally:
        sim.stop()
    return row


def run_again(
    row: Row, workspace: Workspace, pbx: PbxSpec, sim: Simulator, start: Start, killed_after: float
) -> None:
    """The same command again, with no fault and no manual step, judged like a clean run."""
    sim.faults.clear()
    sim.stats.reset()
    again = workspace.launch(pbx)
    row.requests = len(sim.stats.requests)
    row.seconds = killed_after + again.seconds
    report = workspace.run_report()
    row.step_retries = report.step_retries
    judge_launch(
        row,
        FaultCase("", pbx, no_fault),
        workspace,
        sim,
        start,
        Armed(),
        again.returncode,
        report.failures,
    )
    row.outcome = f"{row.outcome} on the next run"


def _checkpointed(workspace: Workspace, pbx: PbxSpec) -> int:
    try:
        return sum(1 for status, *_ in workspace.manifest(pbx).values() if status == "archived")
    except OSError:
        return 0
