"""The `cdr_rejects` table: records a vendor sent that could not be normalized, per (pbx, day).

This module owns the mapping between `RejectRow` objects and the `cdr_rejects` Parquet partition
(`<data_dir>/cdr_rejects/pbx=<pbx>/call_date=<YYYY-MM-DD>/data.parquet`), written through
`PartitionWriter` and replaced whole with its day: a day without rejects gets an empty partition,
so a re-run after the vendor fixed its records clears them. A row whose day is unknown
(`call_date` None: the record has no usable start) is filed under the day being fetched and keeps
its NULL in the file. A rejected record appears once: by `cdr_id` (the last row wins), or, when
it has none, by its `raw` text (a window fetched twice sends it twice).

It must not decide what is a reject (that is `cdr_assets.normalize.quarantine`), and must not
know HTTP or vendors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from cdr_assets.schema import CDR_REJECTS_SCHEMA
from cdr_assets.storage.parquet import PartitionStats, PartitionWriter, read_partition

TABLE = "cdr_rejects"
_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class RejectRow:
    """One row of the `cdr_rejects` table (see `CDR_REJECTS_SCHEMA` for each column)."""

    pbx: str
    vendor: str
    call_date: date | None
    cdr_id: str | None
    field: str
    reason: str
    raw: str
    page: int | None
    position: int | None
    ingested_at: datetime


_FIELDS = [f.name for f in dataclasses.fields(RejectRow)]


def write_rejects(
    data_dir: str,
    pbx: str,
    call_date: date,
    rows: Iterable[RejectRow],
    *,
    storage_options: Mapping[str, Any] | None = None,
    file_metadata: Mapping[str, str] | None = None,
) -> PartitionStats:
    """Replace the (pbx, call_date) partition with `rows` atomically; `rows` may be empty.

    Every row must have this `pbx` and this `call_date` or None (`PartitionSchemaError`
    otherwise: a record of another day belongs to that day's fetch).
    """
    unique: dict[tuple[str, str], RejectRow] = {}
    for row in rows:
        key = ("cdr_id", row.cdr_id) if row.cdr_id is not None else ("raw", row.raw)
        unique.pop(key, None)  # the last row wins, in its own place
        unique[key] = row
    ordered = list(unique.values())
    with PartitionWriter(
        data_dir,
        TABLE,
        pbx,
        call_date,
        CDR_REJECTS_SCHEMA,
        key=None,
        storage_options=storage_options,
        file_metadata=file_metadata,
    ) as writer:
        for start in range(0, len(ordered), _BATCH_ROWS):
            batch = [dataclasses.asdict(r) for r in ordered[start : start + _BATCH_ROWS]]
            writer.write(pa.Table.from_pylist(batch, schema=CDR_REJECTS_SCHEMA))
        return writer.commit()


def read_rejects(
    data_dir: str,
    pbx: str,
    call_date: date,
    storage_options: Mapping[str, Any] | None = None,
) -> list[RejectRow]:
    """The partition's rows in file order; empty when the partition was never written."""
    table = read_partition(data_dir, TABLE, pbx, call_date, storage_options=storage_options)
    if table is None:
        return []
    rows: list[RejectRow] = []
    for batch in table.select(_FIELDS).to_batches(max_chunksize=_BATCH_ROWS):
        rows.extend(RejectRow(**record) for record in batch.to_pylist())
    return rows
