"""Staging: which leftovers go (dead or zombie writer, old file) and which stay (live writer,
young file of another host or naming), and empty staging directories pruned no higher than
their top."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cdr_assets.storage.staging import (
    STALE_TEMP_AGE_S,
    create_temp,
    prune_empty_dirs,
    remove_leftovers,
    staging_dir,
)


def _named_for(directory: Path, pid: int) -> Path:
    """A leftover named as `create_temp` names them, but for writer `pid`."""
    mine = Path(create_temp(str(directory), ".tmp"))
    uuid_, _, host, *rest = mine.name.split(".")
    other = directory / ".".join([uuid_, str(pid), host, *rest])
    mine.rename(other)
    return other


def test_create_temp_names_its_writer_and_makes_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    path = Path(create_temp(str(directory), ".part"))
    assert path.parent == directory and path.stat().st_size == 0
    uuid_, pid, _host, suffix = path.name.split(".")
    assert len(uuid_) == 32 and int(pid) == os.getpid() and suffix == "part"


def test_a_dead_writers_file_goes_and_a_live_ones_stays(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = _named_for(tmp_path, dead.pid)
        kept = _named_for(tmp_path, live.pid)
        mine = Path(create_temp(str(tmp_path), ".tmp"))
        assert remove_leftovers(str(tmp_path), "*.tmp") == [str(gone)]
        assert kept.exists() and mine.exists()
    finally:
        live.kill()
        live.wait()


def test_a_zombie_writer_cannot_write_so_its_file_goes(tmp_path: Path) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("zombies are recognised through /proc")
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{zombie.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        leftover = _named_for(tmp_path, zombie.pid)
        assert remove_leftovers(str(tmp_path), "*.tmp") == [str(leftover)]
    finally:
        zombie.wait()


def test_names_without_a_writer_of_this_host_go_only_when_old(tmp_path: Path) -> None:
    old = time.time() - STALE_TEMP_AGE_S - 1
    names = {
        "legacy_young": ".data.parquet.0123.tmp",
        "legacy_old": ".data.parquet.4567.tmp",
        "other_host_young": f"{'c' * 32}.1.elsewhere.tmp",
        "other_host_old": f"{'d' * 32}.1.elsewhere.tmp",
    }
    for key, name in names.items():
        (tmp_path / name).write_bytes(b"x")
        if key.endswith("_old"):
            os.utime(tmp_path / name, (old, old))
    removed = {
        Path(p).name
        for pattern in ("*.tmp", ".data.parquet.*.tmp")  # `*` does not match a leading dot
        for p in remove_leftovers(str(tmp_path), pattern)
    }
    assert removed == {names["legacy_old"], names["other_host_old"]}


def test_a_missing_directory_has_no_leftovers(tmp_path: Path) -> None:
    assert remove_leftovers(str(tmp_path / "never-made"), "*.tmp") == []


def test_pruning_stops_at_a_non_empty_directory_and_never_goes_above_top(tmp_path: Path) -> None:
    top = Path(staging_dir(str(tmp_path)))
    leaf = top / "cdr" / "pbx=hq" / "call_date=2026-03-08"
    sibling = top / "cdr" / "pbx=saigon"
    leaf.mkdir(parents=True)
    sibling.mkdir(parents=True)
    prune_empty_dirs(str(leaf), str(top))
    assert not (top / "cdr" / "pbx=hq").exists() and sibling.exists()
    prune_empty_dirs(str(sibling), str(top))
    assert not top.exists() and tmp_path.exists()
    with pytest.raises(ValueError, match="not inside"):
        prune_empty_dirs(str(tmp_path), str(top))


def test_writers_of_one_directory_create_while_others_prune(tmp_path: Path) -> None:
    """Concurrent downloads of one day: each writer's directory may be pruned by another the
    moment it is made (makedirs then sees FileExistsError, or FileNotFoundError)."""
    top = tmp_path / ".staging"
    leaf = str(top / "hq" / "2026" / "06" / "01")
    errors: list[BaseException] = []

    def write_and_prune() -> None:
        try:
            for _ in range(1000):
                os.remove(create_temp(leaf, ".part"))
                prune_empty_dirs(leaf, str(top))
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write_and_prune) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    assert not top.exists()


def test_a_file_where_the_directory_should_be_is_named_at_once(tmp_path: Path) -> None:
    """Only a pruned directory is retried: a file in its place is an error that names it."""
    blocker = tmp_path / "2026"
    blocker.write_bytes(b"")
    started = time.monotonic()
    with pytest.raises(NotADirectoryError, match="2026 exists and is not a directory"):
        create_temp(str(blocker), ".part")
    assert time.monotonic() - started < 5
