"""One Parquet file per (table, pbx, call_date) partition, written aside and swapped in atomically.

This module owns the Parquet layout
`<data_dir>/<table>/pbx=<pbx>/call_date=<YYYY-MM-DD>/data.parquet` and the write protocol that
keeps it whole: batches stream through one `pq.ParquetWriter` into a temporary file whose name
no reader's glob matches (`.data.parquet.<uuid>.tmp`), duplicate keys are dropped at commit
(last occurrence wins), and only then the finished file replaces the old
one in a single step. A reader therefore sees the previous day or the new day, never half a day.

`data_dir` may be a local path or an fsspec URL. Locally the temporary file sits next to the
target and `os.replace` swaps it. On a remote filesystem the file is built in a local temporary
directory and uploaded with one `put_file` to the final key: an object-store PUT (including a
completed multipart upload) replaces the object as a whole, so readers never see a partial object
and no temporary object is ever left behind in the bucket.

It must not know HTTP, vendors or DuckDB; it never holds a whole partition in memory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import TracebackType
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from cdr_assets.errors import CdrAssetsError

FILE_NAME = "data.parquet"
STALE_TEMP_AGE_S = 6 * 3600  # older than any plausible partition write
COMPRESSION = "zstd"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


class PartitionSchemaError(CdrAssetsError, ValueError):
    """A batch does not fit the partition's schema or does not belong to the partition."""


@dataclass(frozen=True)
class PartitionStats:
    """What a commit wrote: rows kept, file size, final path, duplicate keys dropped."""

    rows: int
    bytes: int
    path: str
    duplicates_dropped: int


def _check_name(kind: str, value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{kind} {value!r} is not a valid partition name ([A-Za-z0-9_-]+)")
    return value


def resolve_fs(
    data_dir: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Filesystem and root path (without protocol, without trailing slash) of `data_dir`."""
    fs, root = fsspec.core.url_to_fs(str(data_dir), **dict(storage_options or {}))
    root = root.rstrip("/") or "/"
    return fs, root


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem, where `os.replace` gives an atomic swap."""
    return isinstance(fs, LocalFileSystem)


def _partition_dir(root: str, table: str, pbx: str, call_date: date) -> str:
    _check_name("table", table)
    _check_name("pbx", pbx)
    return f"{root}/{table}/pbx={pbx}/call_date={call_date.isoformat()}"


def _as_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if is_local(fs) else fs.unstrip_protocol(path)


def partition_path(
    data_dir: str,
    table: str,
    pbx: str,
    call_date: date,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """`<data_dir>/<table>/pbx=<pbx>/call_date=<YYYY-MM-DD>/data.parquet` (absolute path or URL)."""
    fs, root = resolve_fs(data_dir, storage_options)
    return _as_uri(fs, f"{_partition_dir(root, table, pbx, call_date)}/{FILE_NAME}")


def _fsync_path(path: str, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PartitionWriter:
    """Stream Arrow batches into one partition's Parquet file; `commit()` swaps it in atomically.

    ```python
    with PartitionWriter(data_dir, "cdr", "hq", date(2026, 1, 2), CDR_SCHEMA) as writer:
        for page in pages:
            writer.write(normalize(page))
        stats = writer.commit()
    ```

    Leaving the block by an exception, or without `commit()`, deletes the temporary file and
    leaves the previous partition untouched. Committing zero rows writes a valid empty file: a
    day without calls is a fact and replaces older rows. Writers of different partitions never
    share a file; two writers of the same partition each build their own temporary file and the
    last commit wins with a complete file.
    """

    def __init__(
        self,
        data_dir: str,
        table: str,
        pbx: str,
        call_date: date,
        schema: pa.Schema,
        *,
        key: str | None = "cdr_id",
        row_group_size: int = 100_000,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if row_group_size <= 0:
            raise ValueError("row_group_size must be positive")
        if key is not None and key not in schema.names:
            raise ValueError(f"key column {key!r} is not in the schema")
        self.table = table
        self.pbx = pbx
        self.call_date = call_date
        self.schema = schema
        self.key = key
        self.row_group_size = row_group_size
        self._fs, root = resolve_fs(data_dir, storage_options)
        self._local = is_local(self._fs)
        self._dir = _partition_dir(root, table, pbx, call_date)
        self._final = f"{self._dir}/{FILE_NAME}"
        self._tmp_dir: str | None = None
        if self._local:
            self._tmp = f"{self._dir}/.{FILE_NAME}.{uuid.uuid4().hex}.tmp"
        else:
            self._tmp_dir = tempfile.mkdtemp(prefix="cdr_assets_part_")
            self._tmp = os.path.join(self._tmp_dir, f".{FILE_NAME}.tmp")
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._rows = 0
        self._key_hashes: list[np.ndarray] = []  # 8 bytes a row: the cheap duplicate pre-check
        self._state = "open"  # open -> committed | aborted

    @property
    def path(self) -> str:
        """Final path (or URL) of the partition file."""
        return _as_uri(self._fs, self._final)

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == "open":
            self.abort()

    # -- writing ------------------------------------------------------------------------------

    def write(self, batch: pa.Table | pa.RecordBatch) -> None:
        """Cast `batch` to the schema, check it belongs here, and buffer it into row groups."""
        if self._state != "open":
            raise RuntimeError(f"PartitionWriter for {self.path} is already {self._state}")
        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        batch = self._conform(batch)
        if batch.num_rows == 0:
            return
        if self.key is not None:
            keys = batch.column(self.key).to_pylist()
            self._key_hashes.append(np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)))
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        while self._buffered >= self.row_group_size:
            self._flush(self.row_group_size)

    def _conform(self, batch: pa.Table) -> pa.Table:
        names = set(batch.column_names)
        missing = [n for n in self.schema.names if n not in names]
        extra = [n for n in batch.column_names if n not in self.schema.names]
        if missing or extra:
            raise PartitionSchemaError(
                f"{self.path}: batch columns differ from the schema "
                f"(missing {missing}, unexpected {extra})"
            )
        try:
            batch = batch.select(self.schema.names).cast(self.schema, safe=True)
        except (ValueError, TypeError, pa.ArrowNotImplementedError) as exc:
            raise PartitionSchemaError(
                f"{self.path}: batch does not fit the schema: {exc}"
            ) from exc
        for field in self.schema:
            if not field.nullable and batch.column(field.name).null_count:
                raise PartitionSchemaError(
                    f"{self.path}: column {field.name!r} is not nullable but has nulls"
                )
        self._check_belongs(batch)
        return batch

    def _check_belongs(self, batch: pa.Table) -> None:
        """Rows must carry this partition's pbx and call_date (readers rely on the path)."""
        expected = {"pbx": pa.scalar(self.pbx), "call_date": pa.scalar(self.call_date)}
        for name, value in expected.items():
            if name not in batch.column_names or batch.num_rows == 0:
                continue
            col = batch.column(name)
            try:
                value = value.cast(col.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            ok = pc.all(pc.fill_null(pc.equal(col, value), False)).as_py()
            if not ok:
                raise PartitionSchemaError(
                    f"{self.path}: rows with {name} other than {value.as_py()!s} "
                    "do not belong to this partition"
                )

    def _open_writer(self) -> pq.ParquetWriter:
        if self._writer is None:
            if self._local:
                self._fs.makedirs(self._dir, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=COMPRESSION)
        return self._writer

    def _flush(self, limit: int | None = None) -> None:
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer)
        take = table.num_rows if limit is None else min(limit, table.num_rows)
        head, rest = table.slice(0, take), table.slice(take)
        self._open_writer().write_table(head, row_group_size=self.row_group_size)
        self._rows += head.num_rows
        self._buffer = [rest] if rest.num_rows else []
        self._buffered = rest.num_rows

    # -- commit / abort -----------------------------------------------------------------------

    def commit(self) -> PartitionStats:
        """Finish the file, drop duplicate keys (last wins), and swap it in atomically."""
        if self._state != "open":
            raise RuntimeError(f"PartitionWriter for {self.path} is already {self._state}")
        try:
            self._flush()
            self._open_writer().close()
            source = self._tmp
            dropped = self._dedupe() if self.key is not None and self._rows else 0
            if dropped:
                source = self._tmp + ".dedup"
            nbytes = os.path.getsize(source)
            self._swap(source)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self._cleanup()
        return PartitionStats(
            rows=self._rows - dropped, bytes=nbytes, path=self.path, duplicates_dropped=dropped
        )

    def abort(self) -> None:
        """Discard everything written so far; the previous partition stays as it was."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._buffer, self._buffered = [], 0
        self._state = "aborted"
        self._cleanup()

    def _cleanup(self) -> None:
        for path in (self._tmp, self._tmp + ".dedup"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if self._tmp_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmp_dir)

    def _may_have_duplicates(self) -> bool:
        """False when no two keys share a 64-bit hash (then no two keys are equal): a sort of
        8 bytes a row instead of reading and sorting the key column of a million-row day."""
        if not self._key_hashes:
            return False
        hashes = np.sort(np.concatenate(self._key_hashes))
        self._key_hashes = []
        return bool((hashes[1:] == hashes[:-1]).any())

    def _dedupe(self) -> int:
        """Rewrite the temporary file without earlier duplicates of a key; returns rows dropped.

        Only the key column is read and sorted (stable), so equal keys sit next to each other in
        file order: a run of equal keys keeps its last member. When no neighbours are equal (the
        normal case) nothing else happens. Otherwise the file is copied row group by row group
        through a keep-mask. Null keys are never treated as duplicates.
        """
        assert self.key is not None
        if not self._may_have_duplicates():
            return 0
        keys = pq.read_table(self._tmp, columns=[self.key]).column(self.key)
        n = len(keys)
        if n < 2:
            return 0
        order = pc.sort_indices(keys)
        ordered = keys.take(order)
        same_as_next = pc.fill_null(pc.equal(ordered.slice(0, n - 1), ordered.slice(1)), False)
        del ordered, keys
        if not pc.any(same_as_next).as_py():
            return 0
        last_of_run = np.append(~np.asarray(same_as_next), True)
        keep = np.zeros(n, dtype=bool)
        keep[np.asarray(order)[last_of_run]] = True
        del order, same_as_next, last_of_run
        out = self._tmp + ".dedup"
        src = pq.ParquetFile(self._tmp)
        offset = 0
        with pq.ParquetWriter(out, self.schema, compression=COMPRESSION) as writer:
            for i in range(src.num_row_groups):
                group = src.read_row_group(i)
                mask = keep[offset : offset + group.num_rows]
                offset += group.num_rows
                kept = group.filter(pa.array(mask))
                if kept.num_rows:
                    writer.write_table(kept, row_group_size=self.row_group_size)
        src.close()
        return int(n - keep.sum())

    def _swap(self, source: str) -> None:
        if self._local:
            _fsync_path(source)
            os.replace(source, self._final)
            _fsync_path(self._dir, directory=True)
            remove_stale_temp_files(self._dir, f".{FILE_NAME}.*.tmp*")
        else:
            # One PUT of a finished local file: the object store replaces the key as a whole.
            self._fs.put_file(source, self._final)
            with contextlib.suppress(Exception):
                self._fs.invalidate_cache(self._dir)


def remove_stale_temp_files(
    directory: str, pattern: str, older_than_s: float = STALE_TEMP_AGE_S
) -> list[str]:
    """Delete temp files a killed writer left behind (readers never saw them). Only old ones:
    a younger file may belong to a writer that is still running."""
    removed = []
    cutoff = time.time() - older_than_s
    for path in glob.glob(os.path.join(glob.escape(directory), pattern)):
        with contextlib.suppress(OSError):
            if os.stat(path).st_mtime < cutoff:
                os.remove(path)
                removed.append(path)
    return removed


def read_partition(
    data_dir: str,
    table: str,
    pbx: str,
    call_date: date,
    columns: list[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Table | None:
    """The partition's rows (optionally only `columns`), or None when it was never written."""
    fs, root = resolve_fs(data_dir, storage_options)
    path = f"{_partition_dir(root, table, pbx, call_date)}/{FILE_NAME}"
    try:
        with fs.open(path, "rb") as fh:
            return pq.ParquetFile(fh).read(columns=columns)
    except FileNotFoundError:
        return None
