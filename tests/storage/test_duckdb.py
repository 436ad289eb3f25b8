"""ensure_views: views over the Parquet tree that coexist with analysts' read-only sessions."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from cdr_assets.storage.duckdb import (
    DuckDBLockTimeout,
    connect_readonly,
    duckdb_type,
    ensure_views,
)
from cdr_assets.storage.parquet import PartitionWriter
from tests.storage.helpers import SMALL_SCHEMA, rows, views_see_first_files

DAY = date(2026, 3, 8)
REC_SCHEMA = pa.schema(
    [
        pa.field("pbx", pa.string()),
        pa.field("cdr_id", pa.string()),
        pa.field("call_date", pa.date32()),
        pa.field("bytes", pa.int64()),
        pa.field("duration_s", pa.float64()),
    ]
)
SCHEMAS = {"cdr": SMALL_SCHEMA, "recordings": REC_SCHEMA}


def _write(data_dir: Path, pbx: str, day: date, ids: list[str]) -> None:
    with PartitionWriter(str(data_dir), "cdr", pbx, day, SMALL_SCHEMA) as writer:
        writer.write(rows(pbx, day, ids))
        writer.commit()


def _query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "db" / "cdr.duckdb", tmp_path / "data"


def test_arrow_types_map_to_duckdb_types() -> None:
    assert duckdb_type(pa.string()) == "VARCHAR"
    assert duckdb_type(pa.date32()) == "DATE"
    assert duckdb_type(pa.timestamp("us", tz="UTC")) == "TIMESTAMPTZ"
    assert duckdb_type(pa.int32()) == "INTEGER"
    assert duckdb_type(pa.int64()) == "BIGINT"
    assert duckdb_type(pa.bool_()) == "BOOLEAN"
    assert duckdb_type(pa.float64()) == "DOUBLE"
    with pytest.raises(TypeError):
        duckdb_type(pa.struct([("a", pa.int8())]))


def test_views_exist_and_are_typed_before_any_file(paths: tuple[Path, Path]) -> None:
    db, data = paths
    assert ensure_views(str(db), str(data), SCHEMAS) is True
    assert db.exists()
    described = _query(db, "SELECT column_name, column_type FROM (DESCRIBE cdr)")
    assert described == [
        ("pbx", "VARCHAR"),
        ("cdr_id", "VARCHAR"),
        ("call_date", "DATE"),
        ("start_time", "TIMESTAMP WITH TIME ZONE"),
        ("duration_s", "INTEGER"),
        ("answered", "BOOLEAN"),
        ("raw", "JSON"),
    ]
    assert _query(db, "SELECT count(*) FROM cdr") == [(0,)]
    assert _query(db, "SELECT count(*) FROM recordings") == [(0,)]


def test_second_call_only_reads(paths: tuple[Path, Path]) -> None:
    db, data = paths
    assert ensure_views(str(db), str(data), SCHEMAS) is True
    _write(data, "hq", DAY, ["a"])
    views_see_first_files(db, data, SCHEMAS)
    before = db.stat().st_mtime_ns
    _write(data, "hq", date(2026, 3, 9), ["b"])
    assert ensure_views(str(db), str(data), SCHEMAS) is False
    assert db.stat().st_mtime_ns == before


def test_new_partitions_show_up_without_rewriting_the_views(paths: tuple[Path, Path]) -> None:
    db, data = paths
    ensure_views(str(db), str(data), SCHEMAS)
    _write(data, "hq", DAY, ["a", "b"])
    views_see_first_files(db, data, SCHEMAS)
    _write(data, "saigon", DAY, ["c"])
    assert ensure_views(str(db), str(data), SCHEMAS) is False
    got = _query(db, "SELECT pbx, count(*) FROM cdr GROUP BY pbx ORDER BY pbx")
    assert got == [("hq", 2), ("saigon", 1)]
    assert _query(db, "SELECT raw->>'id' FROM cdr WHERE cdr_id = 'c'") == [("c",)]
    assert _query(db, "SELECT typeof(raw) FROM cdr LIMIT 1") == [("JSON",)]
    assert _query(db, "SELECT DISTINCT typeof(call_date) FROM cdr") == [("DATE",)]


def test_view_sql_uses_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(Path("data"), "hq", DAY, ["a"])
    ensure_views("db/cdr.duckdb", "data", SCHEMAS)
    sql = _query(
        tmp_path / "db" / "cdr.duckdb", "SELECT sql FROM duckdb_views() WHERE view_name = 'cdr'"
    )
    assert f"'{tmp_path}/data/cdr/*/*/*.parquet'" in sql[0][0]


def test_an_empty_day_is_readable_through_the_view(paths: tuple[Path, Path]) -> None:
    db, data = paths
    ensure_views(str(db), str(data), SCHEMAS)
    _write(data, "hq", DAY, ["a"])
    views_see_first_files(db, data, SCHEMAS)
    with PartitionWriter(str(data), "cdr", "hq", date(2026, 3, 9), SMALL_SCHEMA) as writer:
        writer.commit()
    assert _query(db, "SELECT count(*) FROM cdr") == [(1,)]


def test_readers_never_see_a_partition_being_written(paths: tuple[Path, Path]) -> None:
    db, data = paths
    ensure_views(str(db), str(data), SCHEMAS)
    _write(data, "hq", DAY, ["old1", "old2"])
    views_see_first_files(db, data, SCHEMAS)
    with PartitionWriter(str(data), "cdr", "hq", DAY, SMALL_SCHEMA, row_group_size=2) as w:
        w.write(rows("hq", DAY, ["new1", "new2", "new3", "new4"]))
        staging = data / ".staging" / "cdr" / "pbx=hq" / f"call_date={DAY}"
        assert any(p.name.endswith(".tmp") for p in staging.iterdir())
        assert _query(db, "SELECT cdr_id FROM cdr ORDER BY 1") == [("old1",), ("old2",)]
        w.commit()
    assert _query(db, "SELECT count(*) FROM cdr") == [(4,)]


def test_a_new_schema_column_rewrites_the_view_and_old_files_read_null(
    paths: tuple[Path, Path],
) -> None:
    db, data = paths
    ensure_views(str(db), str(data), SCHEMAS)
    _write(data, "hq", DAY, ["a"])
    views_see_first_files(db, data, SCHEMAS)
    wider = SMALL_SCHEMA.append(pa.field("queue_name", pa.string()))
    assert ensure_views(str(db), str(data), {**SCHEMAS, "cdr": wider}) is True
    assert _query(db, "SELECT cdr_id, queue_name FROM cdr") == [("a", None)]


def test_filters_on_partition_columns_skip_other_files(paths: tuple[Path, Path]) -> None:
    db, data = paths
    ensure_views(str(db), str(data), SCHEMAS)
    for pbx in ("hq", "saigon"):
        for d in range(3):
            _write(data, pbx, date(2026, 3, 1 + d), [f"{pbx}{d}"])
    views_see_first_files(db, data, SCHEMAS)
    got = _query(db, "SELECT cdr_id FROM cdr WHERE pbx = 'hq' AND call_date = DATE '2026-03-02'")
    assert got == [("hq1",)]
    plan = _query(
        db,
        "EXPLAIN ANALYZE SELECT count(*) FROM cdr "
        "WHERE pbx = 'hq' AND call_date = DATE '2026-03-02'",
    )[0][1]
    assert "Total Files Read: 1" in plan


_ANALYST = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        print(con.execute("SELECT count(*) FROM cdr").fetchone()[0], flush=True)
"""


def test_analyst_read_only_session_does_not_stop_ingestion(paths: tuple[Path, Path]) -> None:
    db, data = paths
    ensure_views(str(db), str(data), SCHEMAS)
    _write(data, "hq", DAY, ["a"])
    views_see_first_files(db, data, SCHEMAS)
    analyst = subprocess.Popen(
        [sys.executable, "-c", _ANALYST, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert analyst.stdout is not None and analyst.stdin is not None
        assert analyst.stdout.readline().strip() == "ready"
        analyst.stdin.write("count\n")
        analyst.stdin.flush()
        assert analyst.stdout.readline().strip() == "1"
        # Ingestion goes on: new partitions, a replaced partition, and the views check.
        _write(data, "hq", date(2026, 3, 9), ["b", "c"])
        _write(data, "saigon", DAY, ["d"])
        _write(data, "hq", DAY, ["a", "e"])
        assert ensure_views(str(db), str(data), SCHEMAS, lock_timeout_s=2) is False
        # The analyst sees the new rows on the connection they already had open.
        analyst.stdin.write("count\n")
        analyst.stdin.flush()
        assert analyst.stdout.readline().strip() == "5"
        # Only a change of the views' definition needs the file, and then the error names it.
        wider = SMALL_SCHEMA.append(pa.field("queue_name", pa.string()))
        with pytest.raises(DuckDBLockTimeout, match=str(db)):
            ensure_views(str(db), str(data), {"cdr": wider}, lock_timeout_s=0.5)
    finally:
        analyst.stdin.close()  # type: ignore[union-attr]
        analyst.wait(timeout=10)
    assert ensure_views(str(db), str(data), {"cdr": wider}, lock_timeout_s=5) is True


_WRITER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_a_held_write_lock_is_waited_out(paths: tuple[Path, Path]) -> None:
    db, data = paths
    db.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db), "1.0"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    start = time.monotonic()
    assert ensure_views(str(db), str(data), SCHEMAS, lock_timeout_s=30) is True
    assert time.monotonic() - start > 0.3
    holder.wait(timeout=10)


def _ensure_in_process(db: str, data: str, start_at: float) -> bool:
    time.sleep(max(0.0, start_at - time.time()))
    return ensure_views(db, data, SCHEMAS, lock_timeout_s=30)


@pytest.mark.parametrize("round_", range(3))
def test_processes_creating_the_views_at_once_all_succeed(tmp_path: Path, round_: int) -> None:
    db, data = tmp_path / "cdr.duckdb", tmp_path / "data"
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=ctx) as pool:
        pool.submit(time.sleep, 0).result()  # let the workers import first
        start_at = time.time() + 1.0
        futures = [pool.submit(_ensure_in_process, str(db), str(data), start_at) for _ in range(4)]
        wrote = [f.result(timeout=60) for f in futures]
    assert wrote.count(True) == 1
    assert _query(db, "SELECT count(*) FROM cdr") == [(0,)]


def test_connect_readonly_opens_the_views(paths: tuple[Path, Path]) -> None:
    db, data = paths
    ensure_views(str(db), str(data), SCHEMAS)
    con = connect_readonly(str(db))
    try:
        assert con.execute("SELECT count(*) FROM recordings").fetchone() == (0,)
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE t (x INT)")
    finally:
        con.close()


def test_without_hard_links_a_fresh_file_is_created_in_place(
    paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, data = paths

    def no_links(src: str, dst: str) -> None:
        raise PermissionError("hard links not supported here")

    monkeypatch.setattr("cdr_assets.storage.duckdb.os.link", no_links)
    assert ensure_views(str(db), str(data), SCHEMAS) is True
    assert ensure_views(str(db), str(data), SCHEMAS) is False
    assert sorted(p.name for p in db.parent.iterdir()) == ["cdr.duckdb"]


def test_threads_of_one_process_share_the_file(paths: tuple[Path, Path]) -> None:
    db, data = paths
    with ThreadPoolExecutor(4) as pool:
        wrote = list(pool.map(lambda _: ensure_views(str(db), str(data), SCHEMAS), range(8)))
    assert wrote.count(True) == 1
