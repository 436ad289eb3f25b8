"""The PBX lock: one holder at a time across processes, released however the holder ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdr_assets.pbx_lock import PbxLockTimeout, describe_holder, hold_pbx_lock, lock_path

HOLDER = """
import sys, time
from cdr_assets.pbx_lock import hold_pbx_lock
class Log:
    def info(self, *args): pass
with hold_pbx_lock(sys.argv[1], "hq", run_id="run-holding", timeout_s=5, log=Log()):
    print("held", flush=True)
    time.sleep(60)
"""


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)


@pytest.fixture
def holder(tmp_path: Path):
    """A separate process holding PBX 'hq' until it is killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_waiting_run_says_which_run_holds_the_pbx_and_gives_up_after_its_timeout(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    log = Log()
    with (
        pytest.raises(PbxLockTimeout, match="run run-holding .*pid"),
        hold_pbx_lock(str(tmp_path), "hq", run_id="me", timeout_s=0.5, log=log, poll_s=0.05),
    ):
        pass
    assert log.lines and "run run-holding" in log.lines[0] and "cancel that run" in log.lines[0]


def test_a_killed_holder_frees_the_pbx_at_once(tmp_path: Path, holder: subprocess.Popen[str]):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with hold_pbx_lock(str(tmp_path), "hq", run_id="next", timeout_s=5, log=Log(), poll_s=0.05):
        assert "run next" in describe_holder(lock_path(str(tmp_path), "hq"))
    assert time.monotonic() - started < 1


def test_other_pbxs_are_not_held(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with hold_pbx_lock(str(tmp_path), "saigon", run_id="me", timeout_s=0.2, log=Log()):
        pass
