"""The `pbxs` table: one small Parquet file per PBX saying which zone its clock is in.

The `cdr` table holds UTC instants and the PBX-local `call_date`, not the zone, so an analyst view
that needs the local hour (`cdr_hourly`) joins `pbxs`. Each PBX's step writes its own
`<data_dir>/pbxs/<name>.parquet` (the PBX's config as it runs), so every process sharing the
`data_dir` sees the zones of every PBX that wrote data, whichever config file or `dg` project it
loaded, and the view over it never depends on a config. The file is built aside and swapped in
(locally `os.replace`, remotely one PUT), like a partition.

It must not know DuckDB, HTTP or vendors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cdr_assets.schema import PBXS_SCHEMA
from cdr_assets.storage.parquet import COMPRESSION, is_local, resolve_fs
from cdr_assets.storage.staging import (
    create_temp,
    local_staging_dir,
    prune_empty_dirs,
    staging_dir,
)

TABLE = "pbxs"


def pbx_row_path(root: str, pbx: str) -> str:
    """`<root>/pbxs/<pbx>.parquet` (`root` without protocol, as `resolve_fs` returns it)."""
    return f"{root}/{TABLE}/{pbx}.parquet"


def write_pbx_row(
    data_dir: str,
    *,
    pbx: str,
    vendor: str,
    timezone: str,
    start_date: date,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Replace PBX `pbx`'s row of the `pbxs` table; returns the file's path (or URL)."""
    fs, root = resolve_fs(data_dir, storage_options)
    table = pa.table(
        {"pbx": [pbx], "vendor": [vendor], "timezone": [timezone], "start_date": [start_date]},
        schema=PBXS_SCHEMA,
    )
    final = pbx_row_path(root, pbx)
    local = is_local(fs)
    staging = staging_dir(root, TABLE) if local else local_staging_dir()
    tmp = create_temp(staging, ".parquet.tmp")
    try:
        pq.write_table(table, tmp, compression=COMPRESSION)
        if local:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp, final)
            return final
        fs.put_file(tmp, final)  # an object-store PUT replaces the key as a whole
        return fs.unstrip_protocol(final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if local:
            prune_empty_dirs(staging, staging_dir(root))
