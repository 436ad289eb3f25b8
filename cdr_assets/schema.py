"""The Arrow schemas of the `cdr`, `recordings`, `cdr_rejects` and `pbxs` tables, and what each
column means.

This module owns the column names, order, types and nullability that DESIGN.md promises to
analysts (the DuckDB views of the same names are read straight from Parquet written in these
schemas), the one mapping of table name to schema (`TABLE_SCHEMAS`), plus one short description
per column for Dagster `TableSchema` metadata.
It must not import dagster, HTTP or storage code: every layer imports it, and it imports only
pyarrow.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


class ColumnDoc(NamedTuple):
    """One column as a catalog shows it: name, DuckDB type, nullability and meaning."""

    name: str
    type: str
    nullable: bool
    description: str


# (name, type, nullable, description). One list per table so order, type and docs cannot drift.
_CDR_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    ("pbx", pa.string(), False, "Configured PBX name (the asset key prefix)."),
    ("vendor", pa.string(), False, "PBX vendor: 'yeastar' or 'zorio'."),
    ("cdr_id", pa.string(), False, "The vendor's unique CDR id (Yeastar uid, Zorio uuid)."),
    ("call_id", pa.string(), False, "Call id the CDR belongs to (Yeastar call_id, else uid)."),
    ("call_date", pa.date32(), False, "Local date of start_time in the PBX timezone (partition)."),
    ("start_time", UTC_TIMESTAMP, False, "When the call started (UTC instant)."),
    ("answer_time", UTC_TIMESTAMP, True, "When the call was answered (UTC); null if unanswered."),
    ("end_time", UTC_TIMESTAMP, False, "When the call ended (UTC instant)."),
    ("duration_s", pa.int32(), True, "Seconds from start to end; 0 when the vendor omits it."),
    ("ring_s", pa.int32(), True, "Seconds from start to answer (or to end); 0 when omitted."),
    ("talk_s", pa.int32(), True, "Seconds from answer to end (billable); 0 when omitted."),
    ("direction", pa.string(), False, "inbound | outbound | internal | local | unknown."),
    (
        "disposition",
        pa.string(),
        False,
        "answered | no_answer | busy | failed | cancelled | rejected | voicemail | unknown.",
    ),
    ("disposition_raw", pa.string(), True, "The outcome exactly as the vendor sent it."),
    ("caller_number", pa.string(), True, "Calling number (caller ID)."),
    ("caller_name", pa.string(), True, "Calling party's display name, if the vendor gives one."),
    ("callee_number", pa.string(), True, "Called number."),
    ("callee_name", pa.string(), True, "Called party's display name, if the vendor gives one."),
    ("extension", pa.string(), True, "The internal extension involved in the call."),
    ("agent_extension", pa.string(), True, "Extension of the agent who answered (queues/IVR)."),
    ("did_number", pa.string(), True, "Number the caller dialled (inbound DID)."),
    ("dod_number", pa.string(), True, "Number shown to the callee (outbound caller ID)."),
    ("trunk", pa.string(), True, "Trunk the call came in or went out on."),
    ("queue_name", pa.string(), True, "Queue the call went through, if any."),
    ("queue_wait_s", pa.int32(), True, "Seconds waited in the queue; null if no queue."),
    ("transfer_count", pa.int32(), True, "Number of transfers; null if the vendor has no count."),
    ("hangup_cause", pa.string(), True, "Why the call ended, as the PBX reports it (trimmed)."),
    ("sip_code", pa.string(), True, "Final SIP response code, as text."),
    ("source_type", pa.string(), True, "Vendor's call source category (Zorio source_type)."),
    ("has_recording", pa.bool_(), False, "Whether the PBX has a recording of this call."),
    ("recording_ref", pa.string(), True, "Vendor handle to fetch the recording with."),
    ("raw", pa.string(), False, "The vendor record as received, serialized as JSON."),
    ("ingested_at", UTC_TIMESTAMP, False, "When this row was fetched and normalized (UTC)."),
]

_RECORDINGS_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    ("pbx", pa.string(), False, "Configured PBX name."),
    ("vendor", pa.string(), False, "PBX vendor: 'yeastar' or 'zorio'."),
    ("cdr_id", pa.string(), False, "The CDR this recording belongs to (joins cdr.cdr_id)."),
    ("call_date", pa.date32(), False, "The CDR's call_date (partition)."),
    ("status", pa.string(), False, "archived | missing | failed."),
    ("uri", pa.string(), True, "Archived file path or fsspec URL; null unless archived."),
    ("bytes", pa.int64(), True, "Size of the archived file in bytes."),
    ("sha256", pa.string(), True, "Hex SHA-256 of the archived file."),
    ("content_type", pa.string(), True, "MIME type of the archived file (audio/wav, audio/mpeg)."),
    (
        "duration_s",
        pa.float64(),
        True,
        "Recording length in seconds (fractional: from the audio header, else the vendor's).",
    ),
    (
        "recorded_at",
        UTC_TIMESTAMP,
        True,
        "When the recording started (UTC), as the vendor states it (Zorio recording.recorded_at); "
        "null when the vendor does not say.",
    ),
    ("archived_at", UTC_TIMESTAMP, True, "When the file was verified and stored (UTC)."),
    ("attempts", pa.int32(), False, "Download attempts made for this recording so far."),
    ("error", pa.string(), True, "Why the last attempt failed (redacted); null when archived."),
]


_CDR_REJECTS_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    ("pbx", pa.string(), False, "Configured PBX name."),
    ("vendor", pa.string(), False, "PBX vendor: 'yeastar' or 'zorio'."),
    (
        "call_date",
        pa.date32(),
        True,
        "Local date of the record's start in the PBX timezone; null when it has no usable one "
        "(then filed under the day being fetched).",
    ),
    ("cdr_id", pa.string(), True, "The vendor's CDR id, if the record has a usable one."),
    ("field", pa.string(), False, "The field at fault; '<record>' when the whole record is."),
    ("reason", pa.string(), False, "What is wrong with the field (e.g. must be an integer)."),
    ("raw", pa.string(), False, "The record exactly as the vendor sent it (JSON text)."),
    ("page", pa.int32(), True, "API page the record came on, as the API numbers pages."),
    ("position", pa.int32(), True, "Position of the record within that page (0-based)."),
    ("ingested_at", UTC_TIMESTAMP, False, "When the record was fetched and refused (UTC)."),
]


_PBXS_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    ("pbx", pa.string(), False, "Configured PBX name."),
    ("vendor", pa.string(), False, "PBX vendor: 'yeastar' or 'zorio'."),
    ("timezone", pa.string(), False, "IANA zone of the PBX's clock (defines call_date)."),
    ("start_date", pa.date32(), False, "First configured partition (local date)."),
]


def _schema(columns: list[tuple[str, pa.DataType, bool, str]]) -> pa.Schema:
    return pa.schema([pa.field(name, typ, nullable=nullable) for name, typ, nullable, _ in columns])


CDR_SCHEMA: pa.Schema = _schema(_CDR_COLUMNS)
"""One row per CDR, all PBXs: the `cdr` table of DESIGN.md, in its column order."""

RECORDINGS_SCHEMA: pa.Schema = _schema(_RECORDINGS_COLUMNS)
"""One row per CDR with has_recording: the `recordings` manifest of DESIGN.md.

`duration_s` is float64, not int32 like `cdr.duration_s`: the archive reads the length from the
audio header, which is fractional; the vendors' integer lengths fit it exactly.
"""

CDR_REJECTS_SCHEMA: pa.Schema = _schema(_CDR_REJECTS_COLUMNS)
"""Records a vendor sent that could not be normalized: the `cdr_rejects` table of DESIGN.md,
partitioned and replaced with its day like `cdr`."""

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "cdr": CDR_SCHEMA,
    "recordings": RECORDINGS_SCHEMA,
    "cdr_rejects": CDR_REJECTS_SCHEMA,
}
"""Every warehouse table by name: its Parquet directory under `data_dir` and its DuckDB view."""

PBXS_SCHEMA: pa.Schema = _schema(_PBXS_COLUMNS)
"""One row per PBX that ran since the analyst views exist: the zone that turns `cdr`'s UTC
instants into the PBX's local clock (`cdr_hourly`). Not in `TABLE_SCHEMAS`: it is one file per
PBX (`<data_dir>/pbxs/<name>.parquet`), not a daily partition."""

CDR_COLUMN_DOCS: dict[str, str] = {name: doc for name, _, _, doc in _CDR_COLUMNS}
RECORDINGS_COLUMN_DOCS: dict[str, str] = {name: doc for name, _, _, doc in _RECORDINGS_COLUMNS}
CDR_REJECTS_COLUMN_DOCS: dict[str, str] = {name: doc for name, _, _, doc in _CDR_REJECTS_COLUMNS}
PBXS_COLUMN_DOCS: dict[str, str] = {name: doc for name, _, _, doc in _PBXS_COLUMNS}
_DOCS: list[tuple[pa.Schema, dict[str, str]]] = [
    (CDR_SCHEMA, CDR_COLUMN_DOCS),
    (RECORDINGS_SCHEMA, RECORDINGS_COLUMN_DOCS),
    (CDR_REJECTS_SCHEMA, CDR_REJECTS_COLUMN_DOCS),
    (PBXS_SCHEMA, PBXS_COLUMN_DOCS),
]

_DUCKDB_TYPES: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.date32(): "DATE",
    UTC_TIMESTAMP: "TIMESTAMPTZ",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}


def describe_columns(schema: pa.Schema) -> list[ColumnDoc]:
    """Columns of a `TABLE_SCHEMAS` schema with DuckDB types, for `dg.TableSchema`.

    Kept dagster-free so this module stays importable everywhere; the asset layer turns each
    entry into a `dg.TableColumn(name, type, description=..., constraints=...)`. Another schema
    gets its types and empty descriptions.
    """
    docs = next((d for known, d in _DOCS if schema.equals(known)), {})
    return [
        ColumnDoc(f.name, _DUCKDB_TYPES.get(f.type, str(f.type)), f.nullable, docs.get(f.name, ""))
        for f in schema
    ]
