"""The `recordings` manifest: one row per CDR with a recording, per (pbx, call_date) partition.

This module owns the mapping between `ManifestRow` objects and the `recordings` Parquet
partition (`<data_dir>/recordings/pbx=<pbx>/call_date=<YYYY-MM-DD>/data.parquet`). Writing goes
through `PartitionWriter` (key `cdr_id`, so a partition is replaced whole and a cdr_id appears
once, the last row given winning). It must not download, verify or decide anything: the policy
lives in `cdr_assets.recordings`, the files in `cdr_assets.storage.archive`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cdr_assets.storage.parquet import PartitionStats, PartitionWriter, read_partition

TABLE = "recordings"
STATUSES = ("archived", "missing", "failed")
_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class ManifestRow:
    """One row of the `recordings` table."""

    pbx: str
    vendor: str
    cdr_id: str
    call_date: date
    status: str  # 'archived' | 'missing' | 'failed'
    uri: str | None
    bytes: int | None
    sha256: str | None
    content_type: str | None
    duration_s: float | None
    archived_at: datetime | None
    attempts: int
    error: str | None
    recorded_at: datetime | None = None  # when the recording started, if the vendor says


_FIELDS = tuple(f.name for f in dataclasses.fields(ManifestRow))


def _default_schema() -> pa.Schema:
    from cdr_assets.schema import RECORDINGS_SCHEMA  # owned by cdr_assets.schema

    return RECORDINGS_SCHEMA


def _check_schema(schema: pa.Schema) -> None:
    unknown = [n for n in schema.names if n not in _FIELDS]
    lacking = [n for n in _FIELDS if n not in schema.names]
    if unknown or lacking:
        raise ValueError(
            f"recordings schema does not match ManifestRow (extra {unknown}, missing {lacking})"
        )


def read_manifest(
    data_dir: str,
    pbx: str,
    call_date: date,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, ManifestRow]:
    """The partition's rows by cdr_id; empty when the partition was never written."""
    table = read_manifest_table(data_dir, pbx, call_date, storage_options=storage_options)
    return {} if table is None else {row.cdr_id: row for row in manifest_rows(table)}


def read_manifest_table(
    data_dir: str,
    pbx: str,
    call_date: date,
    *,
    status: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Table | None:
    """The partition as Arrow (rows of `status` only, if given), None when it was never
    written: what a reader of many days keeps instead of a dict of row objects."""
    table = read_partition(data_dir, TABLE, pbx, call_date, storage_options=storage_options)
    if table is not None and status is not None:
        table = table.filter(pc.equal(table["status"], status))
    return table


def count_status(
    data_dir: str,
    pbx: str,
    call_date: date,
    status: str,
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Rows of `status` in the partition (0 when never written), reading that column only."""
    table = read_partition(
        data_dir, TABLE, pbx, call_date, columns=["status"], storage_options=storage_options
    )
    return 0 if table is None else pc.sum(pc.equal(table["status"], status)).as_py() or 0


def manifest_rows(table: pa.Table) -> Iterator[ManifestRow]:
    """`ManifestRow`s of a manifest table, batch by batch; a column an older manifest lacks
    (`recorded_at`) is None."""
    present = [n for n in _FIELDS if n in table.column_names]
    for batch in table.select(present).to_batches(max_chunksize=_BATCH_ROWS):
        for record in batch.to_pylist():
            yield ManifestRow(**{name: record.get(name) for name in _FIELDS})


def write_manifest(
    data_dir: str,
    pbx: str,
    call_date: date,
    rows: Iterable[ManifestRow],
    schema: pa.Schema | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> PartitionStats:
    """Replace the partition with `rows` (atomically; a later row of a cdr_id wins)."""
    schema = schema if schema is not None else _default_schema()
    _check_schema(schema)
    with PartitionWriter(
        data_dir, TABLE, pbx, call_date, schema, key="cdr_id", storage_options=storage_options
    ) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            if row.status not in STATUSES:
                raise ValueError(f"manifest row {row.cdr_id!r}: status {row.status!r}")
            batch.append({name: getattr(row, name) for name in schema.names})
            if len(batch) >= _BATCH_ROWS:
                writer.write(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write(pa.Table.from_pylist(batch, schema=schema))
        return writer.commit()


class ManifestCheckpoint:
    """Rewrites a day's manifest while its recordings are archived, so a killed run leaves a
    manifest of what it finished and the next run downloads only the rest.

    Rows settled so far replace the day's earlier rows; the partition is rewritten (atomically,
    like any write) when `every_s` seconds have passed since the last write. The final write
    is the caller's `write_manifest` of the whole day.
    """

    def __init__(
        self,
        data_dir: str,
        pbx: str,
        call_date: date,
        earlier: Mapping[str, ManifestRow],
        *,
        every_s: float = 10.0,
        schema: pa.Schema | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_dir, self.pbx, self.call_date = data_dir, pbx, call_date
        self.schema = schema
        self.storage_options = storage_options
        self.every_s = every_s
        self._rows: dict[str, ManifestRow] = dict(earlier)
        self._unwritten = 0
        self._last_write = time.monotonic()
        self.writes = 0

    def record(self, row: ManifestRow) -> None:
        """Take a settled row; write the partition if a checkpoint is due."""
        if self._rows.get(row.cdr_id) == row:
            return  # kept as it was: nothing new to persist
        self._rows[row.cdr_id] = row
        self._unwritten += 1
        if time.monotonic() - self._last_write >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Write the rows settled so far (with the earlier rows of the rest of the day)."""
        if not self._unwritten:
            return
        write_manifest(
            self.data_dir,
            self.pbx,
            self.call_date,
            self._rows.values(),
            self.schema,
            self.storage_options,
        )
        self._unwritten = 0
        self._last_write = time.monotonic()
        self.writes += 1
