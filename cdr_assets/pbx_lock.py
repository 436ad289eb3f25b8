"""One step at a time per PBX, across runs and processes on this host.

An exclusive `fcntl.flock` on `<state_dir>/locks/<pbx>.lock`, taken by the step that talks to the
PBX. The kernel releases it however its holder ends (`kill -9` and OOM kills included), so a dead
run never blocks its PBX, which Dagster's pool slots do until something frees them. The holder
writes who it is into the file, so a waiting run says which run it waits for and how to free it.
It serializes only what shares the state directory's file system (one host, or a file system with
working POSIX locks); it knows nothing of HTTP, storage or Dagster.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

from cdr_assets.errors import CdrAssetsError

#: Seconds between "still waiting" log lines.
REPORT_EVERY_S = 60.0


class PbxLockTimeout(CdrAssetsError):
    """Another live run held the PBX for longer than the configured wait."""


class _Log(Protocol):
    def info(self, msg: str, *args: object) -> None: ...


def lock_path(state_dir: str, pbx: str) -> str:
    return os.path.join(state_dir, "locks", f"{pbx}.lock")


def describe_holder(path: str) -> str:
    """Who the lock file says holds it (the last holder, if nobody holds it now)."""
    try:
        with open(path, encoding="utf-8") as file:
            holder = json.loads(file.read() or "{}")
    except (OSError, ValueError):
        return "an unknown run"
    return (
        f"run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
    )


@contextlib.contextmanager
def hold_pbx_lock(
    state_dir: str,
    pbx: str,
    *,
    run_id: str,
    timeout_s: float,
    log: _Log,
    poll_s: float = 1.0,
) -> Iterator[None]:
    """Hold PBX `pbx` for the block; wait for a live holder up to `timeout_s`, saying who it is,
    then raise `PbxLockTimeout` naming it."""
    path = lock_path(state_dir, pbx)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        started = time.monotonic()
        reported = -REPORT_EVERY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                holder = describe_holder(path)
                if waited >= timeout_s:
                    raise PbxLockTimeout(
                        f"PBX {pbx!r} is still busy after {waited:.0f} s: {holder} holds it "
                        f"({path}). A lock is only ever held by a live process; let that run "
                        "finish, or cancel it in the Dagster UI (or kill its pid) to free the PBX"
                    ) from None
                if waited - reported >= REPORT_EVERY_S:
                    reported = waited
                    log.info(
                        "PBX %r is busy: %s holds it; waiting (up to %.0f s; cancel that run to "
                        "free it)",
                        pbx,
                        holder,
                        timeout_s,
                    )
                time.sleep(poll_s)
        holder = {
            "run_id": run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
