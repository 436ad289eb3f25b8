"""PartitionWriter: layout, atomic replace, dedupe (last wins), dropped keys, footer metadata,
empty days, parallel writers, and nothing left behind by a writer that was killed."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from cdr_assets.storage.parquet import (
    PartitionSchemaError,
    PartitionWriter,
    in_sorted,
    partition_path,
    read_partition,
    read_partition_metadata,
    unique_hashes,
)
from cdr_assets.storage.staging import STALE_TEMP_AGE_S, local_staging_dir
from tests.fixtures.s3 import S3Location
from tests.storage.helpers import SMALL_SCHEMA, rows, run_probe

DAY = date(2026, 3, 8)


def _write(data_dir: str, pbx: str, day: date, ids: list[str], **kwargs: object) -> None:
    with PartitionWriter(data_dir, "cdr", pbx, day, SMALL_SCHEMA, **kwargs) as writer:
        writer.write(rows(pbx, day, ids))
        writer.commit()


def _ids(data_dir: str, pbx: str = "hq", day: date = DAY) -> list[str] | None:
    table = read_partition(data_dir, "cdr", pbx, day, columns=["cdr_id"])
    return None if table is None else table.column("cdr_id").to_pylist()


def _partition_dir(tmp_path: Path, pbx: str = "hq", day: date = DAY) -> Path:
    return tmp_path / "cdr" / f"pbx={pbx}" / f"call_date={day.isoformat()}"


def _staging_dir(tmp_path: Path, pbx: str = "hq", day: date = DAY) -> Path:
    return tmp_path / ".staging" / "cdr" / f"pbx={pbx}" / f"call_date={day.isoformat()}"


def _staged(tmp_path: Path, pbx: str = "hq", day: date = DAY) -> list[Path]:
    directory = _staging_dir(tmp_path, pbx, day)
    return sorted(directory.iterdir()) if directory.exists() else []


def _all_files(root: Path) -> list[Path]:
    """Every file and directory entry under `root` that is not a directory."""
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def test_partition_path_is_hive_layout(tmp_path: Path) -> None:
    expected = _partition_dir(tmp_path) / "data.parquet"
    assert partition_path(str(tmp_path), "cdr", "hq", DAY) == str(expected)
    remote = partition_path("s3://bucket/prefix", "cdr", "hq", DAY, {"anon": True})
    assert remote == "s3://bucket/prefix/cdr/pbx=hq/call_date=2026-03-08/data.parquet"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "hq\x00"])
def test_partition_path_refuses_names_that_could_escape(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        partition_path(str(tmp_path), "cdr", bad, DAY)


def test_commit_writes_rows_in_row_groups_and_reports_stats(tmp_path: Path) -> None:
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, row_group_size=3) as w:
        w.write(rows("hq", DAY, ["a", "b"]))
        w.write(rows("hq", DAY, ["c", "d", "e"]))
        w.write(rows("hq", DAY, []))
        stats = w.commit()
    path = _partition_dir(tmp_path) / "data.parquet"
    assert stats.rows == 5 and stats.duplicates_dropped == 0 and stats.keys_dropped == 0
    assert stats.path == str(path) and stats.bytes == path.stat().st_size
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 2
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert _ids(str(tmp_path)) == ["a", "b", "c", "d", "e"]
    assert read_partition(str(tmp_path), "cdr", "hq", date(2026, 3, 9)) is None


def test_duplicate_keys_keep_the_last_occurrence_across_row_groups(tmp_path: Path) -> None:
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, row_group_size=2) as w:
        w.write(rows("hq", DAY, ["a", "b", "c"], duration=1))
        w.write(rows("hq", DAY, ["b", "d"], duration=2))
        w.write(rows("hq", DAY, ["a"], duration=3))
        stats = w.commit()
    assert stats.rows == 4 and stats.duplicates_dropped == 2
    table = read_partition(str(tmp_path), "cdr", "hq", DAY)
    assert table is not None
    got = dict(zip(table["cdr_id"].to_pylist(), table["duration_s"].to_pylist(), strict=True))
    assert got == {"a": 3, "b": 2, "c": 1, "d": 2}
    assert table.num_rows == 4
    assert _all_files(tmp_path) == [_partition_dir(tmp_path) / "data.parquet"]


def test_key_none_keeps_every_row(tmp_path: Path) -> None:
    _write(str(tmp_path), "hq", DAY, ["a", "a"], key=None)
    assert _ids(str(tmp_path)) == ["a", "a"]


def test_failing_write_keeps_the_old_partition_and_leaves_no_temp_file(tmp_path: Path) -> None:
    _write(str(tmp_path), "hq", DAY, ["old1", "old2"])
    with (
        pytest.raises(RuntimeError, match="API died"),
        PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, row_group_size=1) as w,
    ):
        w.write(rows("hq", DAY, ["new1", "new2"]))
        assert [p.name for p in _staged(tmp_path)] != []
        raise RuntimeError("API died mid-day")
    assert _ids(str(tmp_path)) == ["old1", "old2"]
    assert _all_files(tmp_path) == [_partition_dir(tmp_path) / "data.parquet"]


def test_leaving_without_commit_discards_the_write(tmp_path: Path) -> None:
    _write(str(tmp_path), "hq", DAY, ["old"])
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, row_group_size=1) as w:
        w.write(rows("hq", DAY, ["new"]))
    assert _ids(str(tmp_path)) == ["old"]
    assert _all_files(tmp_path) == [_partition_dir(tmp_path) / "data.parquet"]


def test_batch_with_wrong_columns_is_refused_and_old_partition_kept(tmp_path: Path) -> None:
    _write(str(tmp_path), "hq", DAY, ["old"])
    with (
        pytest.raises(PartitionSchemaError, match="missing"),
        PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w,
    ):
        w.write(pa.table({"cdr_id": ["x"]}))
    assert _ids(str(tmp_path)) == ["old"]


def test_batch_is_cast_to_the_schema(tmp_path: Path) -> None:
    table = rows("hq", DAY, ["a"]).drop_columns(["duration_s"])
    table = table.append_column("duration_s", pa.array([7], pa.int64()))  # other order + type
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w:
        w.write(table)
        w.commit()
    out = read_partition(str(tmp_path), "cdr", "hq", DAY)
    assert out is not None and out.schema.equals(SMALL_SCHEMA)
    assert out["duration_s"].to_pylist() == [7]


def test_nulls_in_a_required_column_are_refused(tmp_path: Path) -> None:
    table = rows("hq", DAY, ["a"]).set_column(1, "cdr_id", pa.array([None], pa.string()))
    with (
        pytest.raises(PartitionSchemaError, match="nullable"),
        PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w,
    ):
        w.write(table)


def test_rows_of_another_partition_are_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(PartitionSchemaError, match="call_date"),
        PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w,
    ):
        w.write(rows("hq", date(2026, 3, 9), ["a"]))
    with (
        pytest.raises(PartitionSchemaError, match="pbx"),
        PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w,
    ):
        w.write(rows("saigon", DAY, ["a"]))


def test_day_without_calls_replaces_older_rows_with_a_valid_empty_file(tmp_path: Path) -> None:
    _write(str(tmp_path), "hq", DAY, ["a", "b"])
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w:
        stats = w.commit()
    assert stats.rows == 0 and stats.bytes > 0
    table = read_partition(str(tmp_path), "cdr", "hq", DAY)
    assert table is not None and table.num_rows == 0 and table.schema.equals(SMALL_SCHEMA)


def test_writer_cannot_be_used_after_commit(tmp_path: Path) -> None:
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w:
        w.commit()
        with pytest.raises(RuntimeError):
            w.write(rows("hq", DAY, ["a"]))


def _write_partition_in_process(data_dir: str, pbx: str, day_ordinal: int) -> int:
    day = date.fromordinal(day_ordinal)
    ids = [f"{pbx}-{day}-{i}" for i in range(2000)]
    with PartitionWriter(data_dir, "cdr", pbx, day, SMALL_SCHEMA, row_group_size=300) as w:
        for start in range(0, len(ids), 250):
            w.write(rows(pbx, day, ids[start : start + 250]))
        return w.commit().rows


def test_writers_of_different_partitions_in_parallel_threads_and_processes(
    tmp_path: Path,
) -> None:
    jobs = [(pbx, DAY.toordinal() + d) for pbx in ("hq", "saigon") for d in range(4)]
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda j: _write_partition_in_process(str(tmp_path), *j), jobs))
    assert counts == [2000] * 8
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=ctx) as pool:
        futures = [pool.submit(_write_partition_in_process, str(tmp_path / "p"), *j) for j in jobs]
        assert [f.result() for f in futures] == [2000] * 8
    for root in (tmp_path, tmp_path / "p"):
        for pbx, ordinal in jobs:
            day = date.fromordinal(ordinal)
            got = _ids(str(root), pbx, day)
            assert got == [f"{pbx}-{day}-{i}" for i in range(2000)]


def test_same_partition_last_commit_wins_and_readers_always_see_a_whole_file(
    tmp_path: Path,
) -> None:
    first = PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA)
    second = PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA)
    first.write(rows("hq", DAY, ["first"]))
    second.write(rows("hq", DAY, ["second"]))
    second.commit()
    first.commit()
    assert _ids(str(tmp_path)) == ["first"]

    versions = {v: [f"{v}-{i}" for i in range(3000)] for v in ("x", "y")}
    stop = threading.Event()
    seen: list[list[str] | None] = []

    errors: list[BaseException] = []

    def writer(version: str) -> None:
        try:
            for _ in range(8):
                _write(str(tmp_path), "hq", DAY, versions[version])
        except BaseException as exc:  # a thread's error must fail the test
            errors.append(exc)

    def reader() -> None:
        while not stop.is_set():
            seen.append(_ids(str(tmp_path)))

    threads = [threading.Thread(target=writer, args=(v,)) for v in versions]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    assert seen and all(s == ["first"] or s in versions.values() for s in seen)
    assert _all_files(tmp_path) == [_partition_dir(tmp_path) / "data.parquet"]


_MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from datetime import date
    import pyarrow as pa
    from cdr_assets.storage.parquet import PartitionWriter
    from tests.storage.helpers import SMALL_SCHEMA

    day, n, batch, dups = date(2026, 3, 8), 1_000_000, 20_000, int(sys.argv[2])
    pool = pa.default_memory_pool()
    with PartitionWriter(sys.argv[1], "cdr", "hq", day, SMALL_SCHEMA) as w:
        for start in range(0, n, batch):
            span = range(start, start + batch)
            ids = [f"cdr-{(i if i >= dups else n - 1 - i):09d}" for i in span]
            w.write(pa.table({
                "pbx": ["hq"] * batch, "cdr_id": ids, "call_date": [day] * batch,
                "start_time": pa.nulls(batch, pa.timestamp("us", tz="UTC")),
                "duration_s": pa.array(range(batch), pa.int32()), "answered": [True] * batch,
                "raw": [f'{{"uuid": "{i}", "payload": "{"x" * 120}"}}' for i in ids],
            }, schema=SMALL_SCHEMA))
        stats = w.commit()
    print(stats.rows, stats.duplicates_dropped, pool.max_memory())
    """
)


@pytest.mark.parametrize("duplicates", [0, 1000])
def test_a_million_row_partition_keeps_arrow_memory_flat(tmp_path: Path, duplicates: int) -> None:
    out = run_probe(_MEMORY_PROBE, str(tmp_path), str(duplicates))
    kept, dropped, peak = (int(x) for x in out)
    assert (kept, dropped) == (1_000_000 - duplicates, duplicates)
    # ~170 MB of row data went through; the writer holds about one row group plus the key column.
    assert peak < 120 * 1024 * 1024, f"Arrow peak {peak / 2**20:.0f} MiB"


def test_drop_keys_and_duplicates_are_dropped_in_one_pass_and_counted_apart(
    tmp_path: Path,
) -> None:
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, row_group_size=2) as w:
        w.write(rows("hq", DAY, ["a", "b", "c", "d"], duration=1))
        w.write(rows("hq", DAY, ["b", "e", "d"], duration=2))
        stats = w.commit(drop_keys={"d", "c", "not-there"})
    assert (stats.rows, stats.duplicates_dropped, stats.keys_dropped) == (3, 2, 2)
    table = read_partition(str(tmp_path), "cdr", "hq", DAY)
    assert table is not None
    got = dict(zip(table["cdr_id"].to_pylist(), table["duration_s"].to_pylist(), strict=True))
    assert got == {"a": 1, "b": 2, "e": 2}
    assert _all_files(tmp_path) == [_partition_dir(tmp_path) / "data.parquet"]


def test_drop_keys_without_duplicates_and_keys_absent_from_the_day(tmp_path: Path) -> None:
    _write(str(tmp_path), "hq", DAY, ["old"])
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w:
        w.write(rows("hq", DAY, ["a", "b", "c"]))
        stats = w.commit(drop_keys=["b"])
    assert (stats.rows, stats.duplicates_dropped, stats.keys_dropped) == (2, 0, 1)
    assert _ids(str(tmp_path)) == ["a", "c"]
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w:
        w.write(rows("hq", DAY, ["a", "b"]))
        stats = w.commit(drop_keys=["x", "y"])
    assert (stats.rows, stats.duplicates_dropped, stats.keys_dropped) == (2, 0, 0)
    assert _ids(str(tmp_path)) == ["a", "b"]


def test_drop_key_hashes_drop_the_rows_whose_key_hash_they_hold(tmp_path: Path) -> None:
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA) as w:
        w.write(rows("hq", DAY, ["a", "b", "c", "b"]))
        gone = np.array([hash("c"), hash("a"), hash("not-there")], dtype=np.int64)
        stats = w.commit(drop_key_hashes=gone)
    assert (stats.rows, stats.duplicates_dropped, stats.keys_dropped) == (1, 1, 2)
    assert _ids(str(tmp_path)) == ["b"]


@pytest.mark.parametrize("size", [0, 1, 2, 7, 1000])
@pytest.mark.parametrize("spread", [3, 2**62])
def test_hash_set_helpers_match_numpy(size: int, spread: int) -> None:
    rng = np.random.default_rng(size)
    values = rng.integers(-spread, spread, size, dtype=np.int64)
    other = rng.integers(-spread, spread, size // 2 + 1, dtype=np.int64)
    assert np.array_equal(unique_hashes(values), np.unique(values))
    assert unique_hashes(values).dtype == np.int64
    assert np.array_equal(in_sorted(values, np.unique(other)), np.isin(values, other))
    assert np.array_equal(in_sorted(other, np.sort(values)), np.isin(other, values))


def test_drop_keys_need_a_key_column(tmp_path: Path) -> None:
    _write(str(tmp_path), "hq", DAY, ["old"])
    with (
        pytest.raises(ValueError, match="drop_keys"),
        PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, key=None) as w,
    ):
        w.write(rows("hq", DAY, ["a"]))
        w.commit(drop_keys=["a"])
    assert _ids(str(tmp_path)) == ["old"]


def test_file_metadata_is_in_the_footer_and_read_without_rows(tmp_path: Path) -> None:
    meta = {"cdr_assets.run_id": "run-1234", "cdr_assets.note": "é"}
    assert read_partition_metadata(str(tmp_path), "cdr", "hq", DAY) is None
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, file_metadata=meta) as w:
        w.write(rows("hq", DAY, ["a", "a", "b"]))  # the de-duplicated copy keeps it too
        assert w.commit().duplicates_dropped == 1
    assert read_partition_metadata(str(tmp_path), "cdr", "hq", DAY) == meta
    _write(str(tmp_path), "hq", DAY, ["c"])  # a later write without metadata replaces it
    assert read_partition_metadata(str(tmp_path), "cdr", "hq", DAY) == {}
    with PartitionWriter(str(tmp_path), "cdr", "hq", date(2026, 3, 9), SMALL_SCHEMA,
                         file_metadata=meta) as w:  # fmt: skip
        w.commit()  # an empty day carries it as well
    assert read_partition_metadata(str(tmp_path), "cdr", "hq", date(2026, 3, 9)) == meta


def test_file_metadata_round_trips_on_s3(s3_bucket_url) -> None:  # type: ignore[no-untyped-def]
    url, options = s3_bucket_url.url, s3_bucket_url.storage_options
    meta = {"cdr_assets.run_id": "run-s3"}
    with PartitionWriter(
        url, "cdr", "hq", DAY, SMALL_SCHEMA, storage_options=options, file_metadata=meta
    ) as w:
        w.write(rows("hq", DAY, ["a"]))
        w.commit()
    assert read_partition_metadata(url, "cdr", "hq", DAY, options) == meta
    assert read_partition_metadata(url, "cdr", "hq", date(2026, 3, 9), options) is None


@pytest.mark.parametrize("bad", [{"": "x"}, {"ARROW:schema": "x"}, {"k": 7}])
def test_file_metadata_that_would_not_round_trip_is_refused(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ValueError, match="file_metadata"):
        PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, file_metadata=bad)


def test_the_temporary_file_is_staged_where_no_reader_looks(tmp_path: Path) -> None:
    _write(str(tmp_path), "hq", DAY, ["old"])
    with PartitionWriter(str(tmp_path), "cdr", "hq", DAY, SMALL_SCHEMA, row_group_size=1) as w:
        w.write(rows("hq", DAY, ["new1", "new2"]))
        (staged,) = _staged(tmp_path)
        assert staged.name.endswith(f".{os.getpid()}.{staged.name.split('.')[2]}.tmp")
        assert [p.name for p in _partition_dir(tmp_path).iterdir()] == ["data.parquet"]
        got = duckdb.sql(f"SELECT cdr_id FROM read_parquet('{tmp_path}/cdr/*/*/*')").fetchall()
        assert got == [("old",)]
        w.commit()
    assert _ids(str(tmp_path)) == ["new1", "new2"]
    assert not (tmp_path / ".staging").exists()  # emptied staging directories are pruned


_KILLED_WRITER = textwrap.dedent(
    """
    import json, sys
    from datetime import date
    from cdr_assets.storage.parquet import PartitionWriter
    from tests.storage.helpers import SMALL_SCHEMA, rows

    day, options = date(2026, 3, 8), json.loads(sys.argv[3])
    with PartitionWriter(
        sys.argv[1], "cdr", "hq", day, SMALL_SCHEMA, row_group_size=50, storage_options=options
    ) as w:
        i = 0
        while True:  # streams until killed
            w.write(rows("hq", day, [f"x{i}-{j}" for j in range(50)]))
            if i == 3:
                print("streaming", flush=True)
                if sys.argv[2] == "pause":
                    sys.stdin.readline()
                    w.commit()
                    break
            i += 1
    """
)


def _writer_process(
    data_dir: Path | str, mode: str, options: dict | None = None
) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(data_dir), mode, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "streaming"
    return proc


def test_a_killed_writer_leaves_nothing_once_the_partition_is_written_again(
    tmp_path: Path,
) -> None:
    _write(str(tmp_path), "hq", DAY, ["before"])
    proc = _writer_process(tmp_path, "stream")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    (leftover,) = _staged(tmp_path)
    assert leftover.stat().st_size > 0 and f".{proc.pid}." in leftover.name
    reader = f"SELECT count(*), min(cdr_id) FROM read_parquet('{tmp_path}/cdr/*/*/*')"
    assert duckdb.sql(reader).fetchall() == [(1, "before")]  # the half file was never visible
    _write(str(tmp_path), "hq", DAY, ["after1", "after2"])
    assert duckdb.sql(reader).fetchall() == [(2, "after1")]
    assert _all_files(tmp_path) == [_partition_dir(tmp_path) / "data.parquet"]


def test_a_killed_remote_writer_leaves_nothing_locally_or_in_the_bucket(
    s3_bucket_url: S3Location, s3_client: Any
) -> None:
    url, options = s3_bucket_url.url, s3_bucket_url.storage_options
    proc = _writer_process(url, "stream", options)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    (leftover,) = Path(local_staging_dir()).glob(f"*.{proc.pid}.*.tmp")
    with PartitionWriter(url, "cdr", "hq", DAY, SMALL_SCHEMA, storage_options=options) as w:
        w.write(rows("hq", DAY, ["a"]))
        w.commit()
    assert not leftover.exists()
    listed = s3_client.list_objects_v2(Bucket=s3_bucket_url.bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["archive/cdr/pbx=hq/call_date=2026-03-08/data.parquet"]


def test_a_live_writers_file_is_never_removed(tmp_path: Path) -> None:
    proc = _writer_process(tmp_path, "pause")
    try:
        (theirs,) = _staged(tmp_path)
        _write(str(tmp_path), "hq", DAY, ["mine"])  # opens and commits the same partition
        assert theirs.exists()
        assert _ids(str(tmp_path)) == ["mine"]
    finally:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    ids = _ids(str(tmp_path))
    assert ids is not None and len(ids) == 200 and ids[0] == "x0-0"  # its commit came last
    assert _all_files(tmp_path) == [_partition_dir(tmp_path) / "data.parquet"]


def test_leftovers_without_a_checkable_writer_are_removed_only_when_old(tmp_path: Path) -> None:
    day = date(2026, 6, 27)
    directory = Path(partition_path(str(tmp_path), "cdr", "hq", day)).parent
    staging = _staging_dir(tmp_path, day=day)
    directory.mkdir(parents=True)
    staging.mkdir(parents=True)
    old = time.time() - STALE_TEMP_AGE_S - 60
    files = {
        "legacy_old": directory / ".data.parquet.deadbeef.tmp",
        "legacy_young": directory / ".data.parquet.cafebabe.tmp",
        "other_host_old": staging / f"{'a' * 32}.4242.elsewhere.tmp",
        "other_host_young": staging / f"{'b' * 32}.4242.elsewhere.tmp",
    }
    for name, path in files.items():
        path.write_bytes(b"half a file")
        if name.endswith("_old"):
            os.utime(path, (old, old))
    with PartitionWriter(str(tmp_path), "cdr", "hq", day, SMALL_SCHEMA) as writer:
        writer.commit()
    assert {name for name, path in files.items() if path.exists()} == {
        "legacy_young",  # may belong to a writer of an older version still running
        "other_host_young",  # its host may still be writing it
    }
