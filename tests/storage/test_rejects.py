"""The `cdr_rejects` table: round trip, whole-day replace, one row per record, and a DuckDB view
that shows the file's call_date (NULL when unknown), local and S3."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdr_assets.schema import CDR_REJECTS_SCHEMA, TABLE_SCHEMAS
from cdr_assets.storage.duckdb import ensure_views
from cdr_assets.storage.parquet import PartitionSchemaError, partition_path
from cdr_assets.storage.rejects import RejectRow, read_rejects, write_rejects
from tests.fixtures.s3 import S3Location
from tests.storage.helpers import views_see_first_files

DAY = date(2026, 3, 8)
NOW = datetime(2026, 3, 9, 1, 2, 3, tzinfo=UTC)


def _reject(cdr_id: str | None, call_date: date | None = DAY, **fields: object) -> RejectRow:
    base = RejectRow(
        pbx="saigon",
        vendor="zorio",
        call_date=call_date,
        cdr_id=cdr_id,
        field="billsec",
        reason="must be an integer, got 'abc'",
        raw=f'{{"uuid":"{cdr_id}","billsec":"abc"}}',
        page=3,
        position=17,
        ingested_at=NOW,
    )
    return dataclasses.replace(base, **fields)


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict | None]:
    if request.param == "local":
        return str(tmp_path / "data"), None
    s3: S3Location = request.getfixturevalue("s3_bucket_url")
    return s3.url, s3.storage_options


def test_reject_rows_are_the_schemas_columns() -> None:
    assert [f.name for f in dataclasses.fields(RejectRow)] == CDR_REJECTS_SCHEMA.names


def test_rows_round_trip_with_an_unknown_day_kept_null(location: tuple[str, dict | None]) -> None:
    data_dir, options = location
    assert read_rejects(data_dir, "saigon", DAY, options) == []
    rows = [
        _reject("a"),
        _reject(None, None, field="<record>", raw="5", page=None, position=None),
        _reject("c", None, field="start_time", reason="is not an ISO 8601 date-time"),
    ]
    stats = write_rejects(data_dir, "saigon", DAY, rows, storage_options=options)
    assert stats.rows == 3
    assert read_rejects(data_dir, "saigon", DAY, options) == rows


def test_a_day_without_rejects_clears_the_earlier_ones(location: tuple[str, dict | None]) -> None:
    data_dir, options = location
    write_rejects(data_dir, "saigon", DAY, [_reject("a")], storage_options=options)
    assert write_rejects(data_dir, "saigon", DAY, [], storage_options=options).rows == 0
    assert read_rejects(data_dir, "saigon", DAY, options) == []


def test_a_record_rejected_twice_is_one_row_the_last_one(tmp_path: Path) -> None:
    rows = [
        _reject("a", page=1),
        _reject(None, raw='{"x":1}', page=1),
        _reject(None, raw='{"x":2}', page=1),
        _reject("a", page=9, reason="is missing or null"),
        _reject(None, raw='{"x":1}', page=9),
    ]
    write_rejects(str(tmp_path), "saigon", DAY, rows)
    got = [(r.cdr_id, r.raw, r.page) for r in read_rejects(str(tmp_path), "saigon", DAY)]
    assert got == [(None, '{"x":2}', 1), ("a", rows[3].raw, 9), (None, '{"x":1}', 9)]


def test_a_row_of_another_day_or_pbx_is_refused_and_the_day_kept(tmp_path: Path) -> None:
    write_rejects(str(tmp_path), "saigon", DAY, [_reject("a")])
    with pytest.raises(PartitionSchemaError, match="call_date"):
        write_rejects(str(tmp_path), "saigon", DAY, [_reject("b", date(2026, 3, 9))])
    with pytest.raises(PartitionSchemaError, match="pbx"):
        write_rejects(str(tmp_path), "saigon", DAY, [_reject("b", pbx="hq")])
    assert [r.cdr_id for r in read_rejects(str(tmp_path), "saigon", DAY)] == ["a"]


def _query(db: str, sql: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_view_shows_the_files_call_date_whatever_the_path_says(tmp_path: Path) -> None:
    data_dir, db = str(tmp_path / "data"), str(tmp_path / "cdr.duckdb")
    ensure_views(db, data_dir, TABLE_SCHEMAS)
    assert _query(db, "SELECT count(*) FROM cdr_rejects") == [(0,)]
    write_rejects(data_dir, "saigon", DAY, [_reject("known"), _reject("unknown", None)])
    # The other way round: a file whose rows say another day than its path (written by hand).
    odd = pa.Table.from_pylist(
        [dataclasses.asdict(_reject("odd", date(2026, 3, 7)))], schema=CDR_REJECTS_SCHEMA
    )
    odd_path = Path(partition_path(data_dir, "cdr_rejects", "saigon", date(2026, 3, 9)))
    odd_path.parent.mkdir(parents=True)
    pq.write_table(odd, odd_path)
    views_see_first_files(db, data_dir, TABLE_SCHEMAS)
    got = _query(db, "SELECT cdr_id, call_date FROM cdr_rejects ORDER BY cdr_id")
    assert got == [("known", DAY), ("odd", date(2026, 3, 7)), ("unknown", None)]
    assert _query(db, "SELECT cdr_id FROM cdr_rejects WHERE call_date IS NULL") == [("unknown",)]
    described = dict(_query(db, "SELECT column_name, column_type FROM (DESCRIBE cdr_rejects)"))
    assert described["call_date"] == "DATE" and described["page"] == "INTEGER"
    assert list(described) == CDR_REJECTS_SCHEMA.names
    assert _query(db, "SELECT raw->>'billsec' FROM cdr_rejects WHERE cdr_id = 'known'") == [
        ("abc",)
    ]
