"""The recordings manifest: round trip, whole-partition replace, last row wins, local and S3."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from cdr_assets.schema import RECORDINGS_SCHEMA
from cdr_assets.storage.duckdb import ensure_views
from cdr_assets.storage.manifest import ManifestRow, read_manifest, write_manifest
from tests.fixtures.s3 import S3Location
from tests.storage.helpers import views_see_first_files

DAY = date(2026, 3, 8)
NOW = datetime(2026, 3, 9, 1, 2, 3, 456000, tzinfo=UTC)


def _row(cdr_id: str, status: str = "archived", **fields: object) -> ManifestRow:
    archived = status == "archived"
    base = ManifestRow(
        pbx="hq",
        vendor="zorio",
        cdr_id=cdr_id,
        call_date=DAY,
        status=status,
        uri=f"s3://b/archive/hq/2026/03/08/{cdr_id}.wav" if archived else None,
        bytes=1234 if archived else None,
        sha256="ab" * 32 if archived else None,
        content_type="audio/wav" if archived else None,
        duration_s=1.5 if archived else None,
        archived_at=NOW,
        attempts=1,
        error=None if archived else "RecordingMissing: 404",
    )
    return replace(base, **fields)


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict | None]:
    if request.param == "local":
        return str(tmp_path / "data"), None
    s3: S3Location = request.getfixturevalue("s3_bucket_url")
    return s3.url, s3.storage_options


def test_a_partition_never_written_reads_empty(location: tuple[str, dict | None]) -> None:
    data_dir, options = location
    assert read_manifest(data_dir, "hq", DAY, storage_options=options) == {}


def test_rows_round_trip_exactly(location: tuple[str, dict | None]) -> None:
    data_dir, options = location
    rows = [_row("a"), _row("b", "missing"), _row("c", "failed", attempts=3)]
    stats = write_manifest(data_dir, "hq", DAY, rows, RECORDINGS_SCHEMA, storage_options=options)
    assert stats.rows == 3 and stats.duplicates_dropped == 0
    got = read_manifest(data_dir, "hq", DAY, storage_options=options)
    assert got == {r.cdr_id: r for r in rows}
    assert got["a"].archived_at == NOW


def test_rewriting_replaces_the_whole_partition(location: tuple[str, dict | None]) -> None:
    data_dir, options = location
    write_manifest(data_dir, "hq", DAY, [_row("a"), _row("b")], storage_options=options)
    write_manifest(data_dir, "hq", DAY, [_row("b", attempts=2)], storage_options=options)
    got = read_manifest(data_dir, "hq", DAY, storage_options=options)
    assert list(got) == ["b"] and got["b"].attempts == 2


def test_a_repeated_cdr_id_keeps_the_last_row(location: tuple[str, dict | None]) -> None:
    data_dir, options = location
    rows = [_row("a", "failed"), _row("b"), _row("a")]
    stats = write_manifest(data_dir, "hq", DAY, rows, storage_options=options)
    assert stats.rows == 2 and stats.duplicates_dropped == 1
    assert read_manifest(data_dir, "hq", DAY, storage_options=options)["a"].status == "archived"


def test_a_bad_row_keeps_the_previous_manifest(location: tuple[str, dict | None]) -> None:
    data_dir, options = location
    write_manifest(data_dir, "hq", DAY, [_row("a")], storage_options=options)
    with pytest.raises(ValueError, match="status"):
        write_manifest(data_dir, "hq", DAY, [_row("b"), _row("c", "lost")], storage_options=options)
    assert list(read_manifest(data_dir, "hq", DAY, storage_options=options)) == ["a"]


def test_an_empty_manifest_is_written(location: tuple[str, dict | None]) -> None:
    data_dir, options = location
    write_manifest(data_dir, "hq", DAY, [_row("a")], storage_options=options)
    stats = write_manifest(data_dir, "hq", DAY, [], storage_options=options)
    assert stats.rows == 0
    assert read_manifest(data_dir, "hq", DAY, storage_options=options) == {}


def test_a_schema_that_does_not_match_the_row_is_refused(tmp_path: Path) -> None:
    narrow = pa.schema([f for f in RECORDINGS_SCHEMA if f.name != "error"])
    with pytest.raises(ValueError, match="missing"):
        write_manifest(str(tmp_path), "hq", DAY, [_row("a")], narrow)


def test_the_manifest_is_the_recordings_view(tmp_path: Path) -> None:
    data_dir, db = str(tmp_path / "data"), str(tmp_path / "cdr.duckdb")
    ensure_views(db, data_dir, {"recordings": RECORDINGS_SCHEMA})
    write_manifest(data_dir, "hq", DAY, [_row("a"), _row("b", "missing")])
    views_see_first_files(db, data_dir, {"recordings": RECORDINGS_SCHEMA})
    import duckdb

    con = duckdb.connect(db, read_only=True)
    try:
        got = con.execute(
            "SELECT cdr_id, status, bytes, typeof(archived_at) FROM recordings ORDER BY cdr_id"
        ).fetchall()
    finally:
        con.close()
    assert got == [
        ("a", "archived", 1234, "TIMESTAMP WITH TIME ZONE"),
        ("b", "missing", None, "TIMESTAMP WITH TIME ZONE"),
    ]
