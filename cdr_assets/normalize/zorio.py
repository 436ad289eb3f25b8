"""Zorio PBX `GET /api/pbx/cdr` records -> CDR_SCHEMA.

Owns the meaning of Zorio's 22 list fields (uuid, ISO 8601 start/answer/end, billsec, result,
sip_response_code, ...) and how each becomes a `cdr` column. It must not do HTTP, paging or
file I/O, and must not loop over records in Python on the fast path.

Choices worth knowing:
- Times are ISO 8601 with an offset (`+00:00`, `Z`, fractional seconds); a string without an
  offset is taken as UTC, like the page's own naive `created_at`.
- `duration`/`billsec` absent or null become 0; `ring_s` = max(duration - billsec, 0).
  `queue_wait_s` and `transfer_count` stay null when Zorio sends null (no queue / not counted).
- A missing `end_time` falls back to start + duration, so `end_time` is never null.
- `sip_response_code` is text even when Zorio sends an integer (486 -> "486").
- `recording_ref` is the uuid when `recording_available`: the recording is fetched by CDR uuid.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from cdr_assets.normalize.common import (
    PageReader,
    blank_to_null_many,
    cdr_table,
    constant,
    ingested_column,
    local_dates,
    map_enum,
    parse_iso_instant,
    us_to_timestamps,
    zone_key,
)
from cdr_assets.records import JsonRecords
from cdr_assets.schema import CDR_SCHEMA

VENDOR = "zorio"
ID_FIELD = "uuid"
"""The field that becomes `cdr_id`."""

_TEXT = pa.string()
_INT = pa.int64()
FIELDS: dict[str, pa.DataType] = {
    "uuid": _TEXT,
    "direction": _TEXT,
    "source_type": _TEXT,
    "caller_number": _TEXT,
    "destination_number": _TEXT,
    "extension_number": _TEXT,
    "agent_extension": _TEXT,
    "start_time": _TEXT,
    "answer_time": _TEXT,
    "end_time": _TEXT,
    "duration": _INT,
    "billsec": _INT,
    "queue_name": _TEXT,
    "queue_wait_time": _INT,
    "trunk_name": _TEXT,
    "transfer_count": _INT,
    "result": _TEXT,
    "hangup_cause": _TEXT,
    "sip_response_code": _TEXT,
    "recording_available": pa.bool_(),
}
"""The fields read, with the type each must have (leniently, see `common`)."""
_STRUCT = pa.struct(list(FIELDS.items()))
_TEXT_FIELDS = (
    "caller_number",
    "destination_number",
    "extension_number",
    "agent_extension",
    "trunk_name",
    "queue_name",
    "hangup_cause",
    "sip_response_code",
    "source_type",
)
"""Free-text fields cleaned together: trimmed, blank -> null."""

# Keys are `enum_token`s: upper-case letters only ("no_answer", "No Answer" -> NOANSWER).
RESULTS: dict[str, str] = {
    "ANSWERED": "answered",
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "CANCELED": "cancelled",
    "REJECTED": "rejected",
    "VOICEMAIL": "voicemail",
}
DIRECTIONS: dict[str, str] = {
    "INBOUND": "inbound",
    "OUTBOUND": "outbound",
    "INTERNAL": "internal",
    "LOCAL": "local",
}


def normalize_zorio_records(
    records: Sequence[dict[str, Any]] | JsonRecords,
    *,
    pbx: str,
    timezone: ZoneInfo | str,
    ingested_at: datetime,
) -> pa.Table:
    """One page of Zorio CDR dicts -> a CDR_SCHEMA table (same order, same length).

    `timezone` is the PBX's zone and only decides `call_date`: the instants carry their own
    offsets. Raises `RecordFormatError` naming the field and the record's uuid when a record
    has the wrong shape.
    """
    zone = zone_key(timezone)
    if len(records) == 0:
        return CDR_SCHEMA.empty_table()
    page = PageReader(records, vendor=VENDOR, id_field=ID_FIELD)
    col = page.columns(_STRUCT)
    n = len(page)  # exact, also when the parse refused JSON lines' cheap count
    ingested = ingested_column(ingested_at, n)

    cdr_id = page.require_text(ID_FIELD, col[ID_FIELD])
    page.require_present("start_time", col["start_time"])
    start, answer, given_end = page.iso_instants(
        {name: col[name] for name in ("start_time", "answer_time", "end_time")}
    )
    page.require_present("start_time", start)  # blank text parses to null
    duration = col["duration"].fill_null(0)
    billsec = col["billsec"].fill_null(0)
    fallback_end = us_to_timestamps(
        pc.add(start.cast(pa.int64()), page.seconds_to_us("duration", duration))
    )
    ring = pc.max_element_wise(pc.subtract(duration, billsec), 0)

    (
        caller_number,
        callee_number,
        extension,
        agent_extension,
        trunk,
        queue_name,
        hangup_cause,
        sip_code,
        source_type,
    ) = blank_to_null_many(*(col[name] for name in _TEXT_FIELDS))
    has_recording = col["recording_available"].fill_null(False)
    nulls = pa.nulls(n, pa.string())
    return cdr_table(
        {
            "pbx": constant(pbx, n),
            "vendor": constant(VENDOR, n),
            "cdr_id": cdr_id,
            "call_id": cdr_id,
            "call_date": local_dates(start, zone),
            "start_time": start,
            "answer_time": answer,
            "end_time": pc.coalesce(given_end, fallback_end),
            "duration_s": page.to_int32("duration", duration),
            "ring_s": page.to_int32("duration", ring),
            "talk_s": page.to_int32("billsec", billsec),
            "direction": map_enum(col["direction"], DIRECTIONS),
            "disposition": map_enum(col["result"], RESULTS),
            "disposition_raw": col["result"],
            "caller_number": caller_number,
            "caller_name": nulls,
            "callee_number": callee_number,
            "callee_name": nulls,
            "extension": extension,
            "agent_extension": agent_extension,
            "did_number": nulls,
            "dod_number": nulls,
            "trunk": trunk,
            "queue_name": queue_name,
            "queue_wait_s": page.to_int32("queue_wait_time", col["queue_wait_time"]),
            "transfer_count": page.to_int32("transfer_count", col["transfer_count"]),
            "hangup_cause": hangup_cause,
            "sip_code": sip_code,
            "source_type": source_type,
            "has_recording": has_recording,
            "recording_ref": pc.if_else(has_recording, cdr_id, pa.scalar(None, pa.string())),
            "raw": page.raw_json(),
            "ingested_at": ingested,
        }
    )


def record_start(record: Any) -> datetime | None:
    """Best-effort start instant of one record (`start_time`, ISO 8601, no offset = UTC), for a
    record that could not be normalized; None when it has no usable one."""
    if not isinstance(record, dict):
        return None
    value = record.get("start_time")
    return parse_iso_instant(value) if isinstance(value, str) else None
