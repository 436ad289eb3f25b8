"""Yeastar P-Series `cdr/search` / `cdr/list` records -> CDR_SCHEMA.

Owns the meaning of Yeastar's CDR_Details fields (uid, timestamp, call_from "Name<2005>",
ANSWERD/NO ANSWERED spellings, ...) and how each becomes a `cdr` column. It must not do HTTP,
paging or file I/O, and must not loop over records in Python on the fast path: columns are pulled
out by pyarrow in C++ and transformed with `pyarrow.compute`.

Choices worth knowing:
- `duration`, `ring_duration`, `talk_duration` are absent on unanswered calls; they become 0
  (never null), so sums and averages need no null handling.
- `answer_time` = start + ring_duration only when the disposition maps to `answered`.
- Blank or whitespace-only text (`call_to_name: " "`, `src_addr: ""`) is null; `reason` is
  trimmed into `hangup_cause`.
- Numeric strings such as "7" are accepted in integer fields (see `common` for the rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from cdr_assets.normalize.common import (
    PageReader,
    as_int,
    blank_to_null_many,
    cdr_table,
    constant,
    ingested_column,
    local_dates,
    map_enum,
    split_name_number,
    us_to_timestamps,
    zone_key,
)
from cdr_assets.records import JsonRecords
from cdr_assets.schema import CDR_SCHEMA

VENDOR = "yeastar"
ID_FIELD = "uid"
"""The field that becomes `cdr_id`."""

_TEXT = pa.string()
_INT = pa.int64()
FIELDS: dict[str, pa.DataType] = {
    "uid": _TEXT,
    "call_id": _TEXT,
    "timestamp": _INT,
    "duration": _INT,
    "ring_duration": _INT,
    "talk_duration": _INT,
    "call_type": _TEXT,
    "disposition": _TEXT,
    "call_from": _TEXT,
    "call_to": _TEXT,
    "call_from_number": _TEXT,
    "call_from_name": _TEXT,
    "call_to_number": _TEXT,
    "call_to_name": _TEXT,
    "did_number": _TEXT,
    "dod_number": _TEXT,
    "src_trunk": _TEXT,
    "dst_trunk": _TEXT,
    "reason": _TEXT,
    "record_file": _TEXT,
}
"""The fields read, with the type each must have (leniently, see `common`)."""
_STRUCT = pa.struct(list(FIELDS.items()))
_TEXT_FIELDS = (
    "call_id",
    "call_from",
    "call_to",
    "call_from_number",
    "call_from_name",
    "call_to_number",
    "call_to_name",
    "did_number",
    "dod_number",
    "src_trunk",
    "dst_trunk",
    "reason",
    "record_file",
)
"""Free-text fields cleaned together: trimmed, blank -> null."""
_CALLER_IS_INTERNAL = pa.array(["outbound", "internal"])

# Keys are `enum_token`s: upper-case letters only, so "NO ANSWER", "no_answer" and
# "NOANSWER" all meet at NOANSWER.
DISPOSITIONS: dict[str, str] = {
    "ANSWERED": "answered",
    "ANSWERD": "answered",  # P-Series event doc's spelling
    "NOANSWER": "no_answer",
    "NOANSWERED": "no_answer",
    "BUSY": "busy",
    "FAILED": "failed",
    "VOICEMAIL": "voicemail",
}
DIRECTIONS: dict[str, str] = {
    "INBOUND": "inbound",
    "OUTBOUND": "outbound",
    "INTERNAL": "internal",
}


def normalize_yeastar_records(
    records: Sequence[dict[str, Any]] | JsonRecords,
    *,
    pbx: str,
    timezone: ZoneInfo | str,
    ingested_at: datetime,
) -> pa.Table:
    """One page of Yeastar CDR_Details dicts -> a CDR_SCHEMA table (same order, same length).

    `timezone` is the PBX's zone; it only decides `call_date` (Yeastar's `timestamp` is already
    a UTC epoch). Raises `RecordFormatError` naming the field and the record's uid when a record
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
    start_us = page.seconds_to_us("timestamp", page.require_present("timestamp", col["timestamp"]))
    duration = col["duration"].fill_null(0)
    ring = col["ring_duration"].fill_null(0)
    talk = col["talk_duration"].fill_null(0)

    disposition = map_enum(col["disposition"], DISPOSITIONS)
    direction = map_enum(col["call_type"], DIRECTIONS)
    answered = pc.equal(disposition, "answered")

    start = us_to_timestamps(start_us)
    end = us_to_timestamps(pc.add(start_us, page.seconds_to_us("duration", duration)))
    answer = pc.if_else(
        answered,
        us_to_timestamps(pc.add(start_us, page.seconds_to_us("ring_duration", ring))),
        pa.scalar(None, start.type),
    )

    (
        call_id,
        call_from,
        call_to,
        from_number,
        from_name,
        to_number,
        to_name,
        did_number,
        dod_number,
        src_trunk,
        dst_trunk,
        reason,
        record_file,
    ) = blank_to_null_many(*(col[name] for name in _TEXT_FIELDS))
    # Caller and callee parsed together: one regex pass over 2n values instead of two passes.
    number, name = _party(
        pa.concat_arrays([call_from, call_to]),
        pa.concat_arrays([from_number, to_number]),
        pa.concat_arrays([from_name, to_name]),
    )
    caller_number, callee_number = number.slice(0, n), number.slice(n, n)
    caller_name, callee_name = name.slice(0, n), name.slice(n, n)

    is_inbound = pc.equal(direction, "inbound")
    is_outbound = pc.equal(direction, "outbound")
    no_text = pa.scalar(None, pa.string())
    extension = pc.if_else(
        is_inbound,
        callee_number,
        pc.if_else(pc.is_in(direction, _CALLER_IS_INTERNAL), caller_number, no_text),
    )
    trunk = pc.if_else(
        is_inbound,
        src_trunk,
        pc.if_else(is_outbound, dst_trunk, pc.coalesce(src_trunk, dst_trunk)),
    )

    nulls = pa.nulls(n, pa.string())
    return cdr_table(
        {
            "pbx": constant(pbx, n),
            "vendor": constant(VENDOR, n),
            "cdr_id": cdr_id,
            "call_id": pc.coalesce(call_id, cdr_id),
            "call_date": local_dates(start, zone),
            "start_time": start,
            "answer_time": answer,
            "end_time": end,
            "duration_s": page.to_int32("duration", duration),
            "ring_s": page.to_int32("ring_duration", ring),
            "talk_s": page.to_int32("talk_duration", talk),
            "direction": direction,
            "disposition": disposition,
            "disposition_raw": col["disposition"],
            "caller_number": caller_number,
            "caller_name": caller_name,
            "callee_number": callee_number,
            "callee_name": callee_name,
            "extension": extension,
            "agent_extension": nulls,
            "did_number": did_number,
            "dod_number": dod_number,
            "trunk": trunk,
            "queue_name": nulls,
            "queue_wait_s": pa.nulls(n, pa.int32()),
            "transfer_count": pa.nulls(n, pa.int32()),
            "hangup_cause": reason,
            "sip_code": nulls,
            "source_type": nulls,
            "has_recording": pc.is_valid(record_file),
            "recording_ref": record_file,
            "raw": page.raw_json(),
            "ingested_at": ingested,
        }
    )


def record_start(record: Any) -> datetime | None:
    """Best-effort start instant of one record (`timestamp`, epoch seconds, int or numeric text),
    for a record that could not be normalized; None when it has no usable one."""
    if not isinstance(record, dict):
        return None
    try:
        seconds = as_int(record.get("timestamp"))
        return None if seconds is None else datetime.fromtimestamp(seconds, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _party(combined: pa.Array, number: pa.Array, name: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(number, name) from the *_number/*_name fields, else parsed from "Name<number>"."""
    parsed_number, parsed_name = split_name_number(combined)
    return pc.coalesce(number, parsed_number), pc.coalesce(name, parsed_name)
