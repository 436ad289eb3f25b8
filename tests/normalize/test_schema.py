"""CDR_SCHEMA, RECORDINGS_SCHEMA and CDR_REJECTS_SCHEMA match DESIGN.md's columns, order, types
and nullability."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from cdr_assets.normalize import NORMALIZERS
from cdr_assets.schema import (
    CDR_COLUMN_DOCS,
    CDR_REJECTS_COLUMN_DOCS,
    CDR_REJECTS_SCHEMA,
    CDR_SCHEMA,
    RECORDINGS_COLUMN_DOCS,
    RECORDINGS_SCHEMA,
    TABLE_SCHEMAS,
    describe_columns,
)

TS = pa.timestamp("us", tz="UTC")

DESIGN_CDR_COLUMNS = [
    ("pbx", pa.string()),
    ("vendor", pa.string()),
    ("cdr_id", pa.string()),
    ("call_id", pa.string()),
    ("call_date", pa.date32()),
    ("start_time", TS),
    ("answer_time", TS),
    ("end_time", TS),
    ("duration_s", pa.int32()),
    ("ring_s", pa.int32()),
    ("talk_s", pa.int32()),
    ("direction", pa.string()),
    ("disposition", pa.string()),
    ("disposition_raw", pa.string()),
    ("caller_number", pa.string()),
    ("caller_name", pa.string()),
    ("callee_number", pa.string()),
    ("callee_name", pa.string()),
    ("extension", pa.string()),
    ("agent_extension", pa.string()),
    ("did_number", pa.string()),
    ("dod_number", pa.string()),
    ("trunk", pa.string()),
    ("queue_name", pa.string()),
    ("queue_wait_s", pa.int32()),
    ("transfer_count", pa.int32()),
    ("hangup_cause", pa.string()),
    ("sip_code", pa.string()),
    ("source_type", pa.string()),
    ("has_recording", pa.bool_()),
    ("recording_ref", pa.string()),
    ("raw", pa.string()),
    ("ingested_at", TS),
]
CDR_NOT_NULL = {
    "pbx", "vendor", "cdr_id", "call_id", "call_date", "start_time", "end_time", "direction",
    "disposition", "has_recording", "raw", "ingested_at",
}  # fmt: skip


def test_cdr_schema_has_design_columns_in_order_with_types() -> None:
    assert [(f.name, f.type) for f in CDR_SCHEMA] == DESIGN_CDR_COLUMNS


def test_cdr_schema_marks_only_always_present_columns_not_null() -> None:
    assert {f.name for f in CDR_SCHEMA if not f.nullable} == CDR_NOT_NULL


def test_recordings_schema_has_design_columns_in_order() -> None:
    assert RECORDINGS_SCHEMA.names == [
        "pbx",
        "vendor",
        "cdr_id",
        "call_date",
        "status",
        "uri",
        "bytes",
        "sha256",
        "content_type",
        "duration_s",
        "recorded_at",
        "archived_at",
        "attempts",
        "error",
    ]  # fmt: skip  (DESIGN's columns, and `recorded_at` where the vendor states it)
    assert RECORDINGS_SCHEMA.field("duration_s").type == pa.float64()
    assert RECORDINGS_SCHEMA.field("archived_at").type == TS
    assert RECORDINGS_SCHEMA.field("call_date").type == pa.date32()


def test_rejects_schema_has_design_columns_and_knows_what_may_be_unknown() -> None:
    assert [(f.name, f.type) for f in CDR_REJECTS_SCHEMA] == [
        ("pbx", pa.string()),
        ("vendor", pa.string()),
        ("call_date", pa.date32()),
        ("cdr_id", pa.string()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        ("page", pa.int32()),
        ("position", pa.int32()),
        ("ingested_at", TS),
    ]
    nullable = {f.name for f in CDR_REJECTS_SCHEMA if f.nullable}
    assert nullable == {"call_date", "cdr_id", "page", "position"}


def test_every_warehouse_table_is_in_one_mapping() -> None:
    assert TABLE_SCHEMAS == {
        "cdr": CDR_SCHEMA,
        "recordings": RECORDINGS_SCHEMA,
        "cdr_rejects": CDR_REJECTS_SCHEMA,
    }


def test_every_column_is_documented_for_the_catalog() -> None:
    assert set(CDR_COLUMN_DOCS) == set(CDR_SCHEMA.names)
    assert set(RECORDINGS_COLUMN_DOCS) == set(RECORDINGS_SCHEMA.names)
    assert set(CDR_REJECTS_COLUMN_DOCS) == set(CDR_REJECTS_SCHEMA.names)
    for docs in (CDR_COLUMN_DOCS, RECORDINGS_COLUMN_DOCS, CDR_REJECTS_COLUMN_DOCS):
        assert all(docs.values())
    docs = describe_columns(CDR_SCHEMA)
    assert docs[5].name == "start_time" and docs[5].type == "TIMESTAMPTZ"
    assert docs[4].type == "DATE" and docs[8].type == "INTEGER" and not docs[0].nullable
    rejects = describe_columns(CDR_REJECTS_SCHEMA)
    assert rejects[2].description == CDR_REJECTS_COLUMN_DOCS["call_date"] and rejects[2].nullable
    assert rejects[7].type == "INTEGER"


def test_empty_page_gives_empty_table_with_the_schema() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for normalize in NORMALIZERS.values():
        table = normalize([], pbx="hq", timezone="Asia/Singapore", ingested_at=now)
        assert table.num_rows == 0
        assert table.schema.equals(CDR_SCHEMA)
