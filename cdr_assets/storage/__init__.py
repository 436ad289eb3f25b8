"""Storage layer: Parquet partitions, the DuckDB views over them, and the recording archive.

Knows files and DuckDB, never HTTP or vendors. See `docs/architecture.md` ("Storage").
"""

from cdr_assets.storage.archive import ArchivedFile, RecordingArchive
from cdr_assets.storage.duckdb import DuckDBLockTimeout, connect_readonly, ensure_views
from cdr_assets.storage.manifest import ManifestRow, read_manifest, write_manifest
from cdr_assets.storage.parquet import (
    PartitionSchemaError,
    PartitionStats,
    PartitionWriter,
    partition_path,
    read_partition,
    read_partition_metadata,
)
from cdr_assets.storage.rejects import RejectRow, read_rejects, write_rejects

__all__ = [
    "ArchivedFile",
    "DuckDBLockTimeout",
    "ManifestRow",
    "PartitionSchemaError",
    "PartitionStats",
    "PartitionWriter",
    "RecordingArchive",
    "RejectRow",
    "connect_readonly",
    "ensure_views",
    "partition_path",
    "read_manifest",
    "read_partition",
    "read_partition_metadata",
    "read_rejects",
    "write_manifest",
    "write_rejects",
]
