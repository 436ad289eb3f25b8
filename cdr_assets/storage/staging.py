"""Temporary files of writes in progress: where they live, how they are named, when they go.

This module owns the staging area and the rule for what a killed writer left behind. A writer
builds its file under `<root>/.staging/...` (same filesystem as the final file, so `os.replace`
stays atomic, and outside every reader's glob) or, for a remote destination, in a local staging
directory, and names it `<uuid>.<pid>.<host><suffix>`. A later writer of the same place removes
a leftover whose writer is gone: a process of this host that no longer runs (or is a zombie), or
any leftover whose last write is older than `STALE_TEMP_AGE_S` (a writer of another host, an
older naming, or a reused pid). A file whose writer still runs here and wrote to it within that
time is never removed.

It must not know what the files contain (Parquet, audio) or where their final names are.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import re
import socket
import stat
import tempfile
import time
import uuid
from pathlib import Path

STAGING_DIR = ".staging"
STALE_TEMP_AGE_S = 6 * 3600  # older than any plausible write; a writer streams into its file
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"
_HAS_PROC = os.path.exists("/proc/self/stat")
_CREATE_DEADLINE_S = 30.0  # each retry means another writer just pruned; only a livelock lasts


def staging_dir(root: str, *parts: str) -> str:
    """`<root>/.staging/<parts...>`: where writes into `<root>/<parts...>` are built."""
    return "/".join([root.rstrip("/"), STAGING_DIR, *parts])


def local_staging_dir() -> str:
    """A local directory for files bound for a remote filesystem (built, verified, uploaded)."""
    return os.path.join(tempfile.gettempdir(), "cdr_assets-staging")


def create_temp(directory: str, suffix: str) -> str:
    """Create an empty file `<uuid>.<pid>.<host><suffix>` in `directory` (made if missing).

    Retried when a concurrent `prune_empty_dirs` removes the directory between its creation and
    the file's, or while `os.makedirs` finds it made by another writer and then checks that it
    is a directory (FileExistsError); once the file exists the directory is not empty and stays.
    Writers that keep colliding back off by a random few milliseconds, which breaks the lockstep
    of a CPU-starved machine (a fixed number of immediate retries did not, in CI).
    """
    deadline = time.monotonic() + _CREATE_DEADLINE_S
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        path = os.path.join(directory, f"{uuid.uuid4().hex}.{os.getpid()}.{_HOST}{suffix}")
        try:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except (FileNotFoundError, FileExistsError):  # the directory was just pruned
            _raise_unless_directory_or_gone(directory)
            if attempt > 3:
                time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
            continue
        os.close(fd)
        return path
    raise OSError(f"could not create a temporary file in {directory} (it keeps disappearing)")


def _raise_unless_directory_or_gone(directory: str) -> None:
    """A file in the directory's place is not a race to retry: name it. One `stat`, since a
    pruned directory may vanish between two looks."""
    try:
        mode = os.stat(directory).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(f"{directory} exists and is not a directory")


def remove_leftovers(
    directory: str, pattern: str, older_than_s: float = STALE_TEMP_AGE_S
) -> list[str]:
    """Remove the files matching `pattern` in `directory` whose writer is gone; their paths.

    A name in this module's form names its writer (pid, host); any other name (an older naming
    scheme) is judged by age alone.
    """
    removed = []
    cutoff = time.time() - older_than_s
    for path in glob.glob(os.path.join(glob.escape(directory), pattern)):
        with contextlib.suppress(OSError):
            if _writer_gone(os.path.basename(path), os.stat(path).st_mtime, cutoff):
                os.remove(path)
                removed.append(path)
    return removed


def prune_empty_dirs(leaf: str, top: str) -> None:
    """Remove `leaf` and its parents up to and including `top` while they are empty."""
    path = os.path.normpath(leaf)
    top = os.path.normpath(top)
    if path != top and not path.startswith(top + os.sep):
        raise ValueError(f"{leaf!r} is not inside {top!r}")
    while True:
        try:
            os.rmdir(path)
        except OSError:  # not empty (another writer is at work) or already gone
            return
        if path == top:
            return
        path = os.path.dirname(path)


def _writer_gone(name: str, mtime: float, cutoff: float) -> bool:
    if mtime < cutoff:
        return True
    parts = name.split(".")
    if len(parts) < 4 or len(parts[0]) != 32 or not parts[1].isdigit() or parts[2] != _HOST:
        return False  # another host's writer or an older naming: only age can tell
    return not _pid_alive(int(parts[1]))


def _pid_alive(pid: int) -> bool:
    """True while process `pid` runs on this host (a zombie does not: it cannot write)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        proc_stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return not _HAS_PROC  # without /proc, os.kill's answer is all there is
    return proc_stat.rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")
