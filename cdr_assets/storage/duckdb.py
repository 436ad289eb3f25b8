"""The analysts' DuckDB file: views over the Parquet tree, written only when they change.

This module owns the DuckDB file at `storage.duckdb_path`. It holds no data, only one VIEW per
table (`cdr`, `recordings`, `cdr_rejects`) over `<data_dir>/<table>/*/*/*.parquet` and the
analyst views over those (`kpi_views`: `cdr_daily_kpis`, ..., `pbxs`), so ingestion
never writes rows into DuckDB and never competes for its single-writer lock: a new partition is
a new Parquet file, and every query re-globs the tree. The view's text depends only on
`data_dir`, the table's Arrow schema and the DuckDB features available, so `ensure_views` opens
the file read-only, sees that the views are current and returns without writing; an analyst
holding the file open read-only (DBeaver, the CLI, pandas) does not stop ingestion. A write
happens only when a view is missing or stale (first run, schema change); it retries a held lock
with backoff for a bounded time and then names the file in a clear error. A new file is built
aside and hard-linked into place, so concurrent first runs never open a half-created file.

View shape (DuckDB >= 1.4, which has `read_parquet(..., allow_empty=true)`):

    SELECT * REPLACE (CAST(raw AS JSON) AS raw) FROM (
      SELECT COLUMNS(lambda c: c <> 'empty') FROM (
        SELECT CAST(NULL AS VARCHAR) AS pbx, ... WHERE false     -- typed columns of the schema
        UNION ALL BY NAME
        SELECT * FROM read_parquet('<abs data_dir>/cdr/*/*/*.parquet', allow_empty = true,
          union_by_name = true, hive_partitioning = true,
          hive_types = {'pbx': VARCHAR, 'call_date': DATE})))

The typed branch fixes names, order and types even before the first file exists (and when old
files lack a newer column); `allow_empty` returns a placeholder column `empty` when nothing
matches, which the `COLUMNS` filter removes. Hive partitioning is on with pinned types: the
files carry `pbx` and `call_date` themselves (PartitionWriter checks they equal the path), and
the path values let DuckDB skip whole files on `WHERE pbx = ... AND call_date ...`. DuckDB lets
a path value override the file's, so a table whose schema allows NULL in `pbx` or `call_date`
(`cdr_rejects`: a reject of unknown day is filed under the day fetched) is read with hive
partitioning off: the view shows the file's values, and row-group statistics still prune.
On an older DuckDB the view falls back to a plain `read_parquet` once files exist, or a typed
empty SELECT before (that transition needs one write).

It must not write Parquet, know vendors or HTTP, or keep a connection open.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import importlib.util
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import duckdb
import fsspec
import pyarrow as pa

from cdr_assets.errors import CdrAssetsError
from cdr_assets.schema import PBXS_SCHEMA
from cdr_assets.storage.kpi_views import kpi_view_selects
from cdr_assets.storage.parquet import is_local, resolve_fs
from cdr_assets.storage.pbxs import TABLE as PBXS_TABLE

HIVE_TYPES: dict[str, str] = {"pbx": "VARCHAR", "call_date": "DATE"}
MARKER = "cdr_assets managed view (do not edit); definition sha256:"
DEFAULT_LOCK_TIMEOUT_S = 60.0
S3_SECRET_NAME = "cdr_assets_s3"
_YOUNG_FILE_S = 10.0
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
_SCAN_URL = re.compile(r"read_parquet\('([A-Za-z][A-Za-z0-9+.-]*)://")

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


class DuckDBLockTimeout(CdrAssetsError):
    """The DuckDB file stayed locked by another process for longer than the allowed time."""

    def __init__(self, path: str, waited_s: float, detail: str) -> None:
        self.path = path
        self.waited_s = waited_s
        super().__init__(
            f"DuckDB file {path} stayed locked for {waited_s:.0f} s ({detail}). Another process "
            "holds it open for writing, or read-only while its views must be (re)created; "
            "close that session or raise the lock timeout."
        )


# -- type mapping -------------------------------------------------------------------------------


def duckdb_type(arrow_type: pa.DataType) -> str:
    """DuckDB type name for an Arrow type (the ones our schemas use, and their close kin)."""
    t = arrow_type
    json_type = getattr(pa, "JsonType", None)
    if json_type is not None and isinstance(t, json_type):
        return "JSON"
    if pa.types.is_dictionary(t):
        return duckdb_type(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    simple = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT",
        pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER",
        pa.uint64(): "UBIGINT",
        pa.float16(): "FLOAT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.date32(): "DATE",
        pa.date64(): "DATE",
    }
    if t in simple:
        return simple[t]
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz is not None else "TIMESTAMP"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_duration(t):
        return "INTERVAL"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{duckdb_type(t.value_type)}[]"
    raise TypeError(f"no DuckDB type mapping for Arrow type {t}")


# -- SQL --------------------------------------------------------------------------------------


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@functools.cache
def _features() -> tuple[bool, bool]:
    """(json extension loadable offline, read_parquet allow_empty + lambda COLUMNS supported)."""
    con = duckdb.connect(":memory:")
    try:
        try:
            con.execute("LOAD json")
            json_ok = True
        except duckdb.Error:
            json_ok = False
        try:
            probe = os.path.join(os.sep, "nonexistent-cdr-assets-probe", "*.parquet")
            con.execute(
                "SELECT COLUMNS(lambda c: c <> 'empty') FROM (SELECT 1 AS x WHERE false "
                f"UNION ALL BY NAME SELECT * FROM read_parquet({_quote_str(probe)}, "
                "allow_empty = true))"
            ).fetchall()
            empty_ok = True
        except duckdb.Error:
            empty_ok = False
    finally:
        con.close()
    return json_ok, empty_ok


def allow_empty_scans() -> bool:
    """Whether this DuckDB's `read_parquet` takes `allow_empty` (2.0 and newer): then a view
    over a tree with no file yet is current as soon as one lands, without a rewrite."""
    return _features()[1]


def _glob(data_root: str, table: str) -> str:
    return f"{data_root}/{table}/*/*/*.parquet"


def _hive_safe(schema: pa.Schema) -> bool:
    """True when the path's partition values equal the file's: no NULL they could override."""
    return all(not schema.field(n).nullable for n in HIVE_TYPES if n in schema.names)


def _typed_empty(schema: pa.Schema, json_cols: set[str], *, hive: bool) -> str:
    cols = [(f.name, duckdb_type(f.type)) for f in schema]
    names = {n for n, _ in cols}
    if hive:
        cols += [(n, t) for n, t in HIVE_TYPES.items() if n not in names]
    parts = [
        f"CAST(NULL AS {'JSON' if n in json_cols else t}) AS {_quote_ident(n)}" for n, t in cols
    ]
    return f"SELECT {', '.join(parts)} WHERE false"


def _scan_or_empty(files: str, empty: str, options: str, *, files_exist: bool) -> str:
    """Rows of the Parquet files matching the glob `files`, typed as `empty` (a typed zero-row
    SELECT) even when there are none. With `allow_empty` (DuckDB 2.0) the view stays current as
    files come and go; older engines fail to bind a scan that matches nothing, so there the view
    is `empty` until the first file exists (`ensure_views` then rewrites it, once)."""
    scan = f"read_parquet({_quote_str(files)}"
    if allow_empty_scans():
        return (
            f"SELECT COLUMNS(lambda c: c <> 'empty') FROM ({empty} "
            f"UNION ALL BY NAME SELECT * FROM {scan}, allow_empty = true, {options}))"
        )
    if not files_exist:
        return empty
    # by name with the typed empty: a column newer than every file reads NULL, not "not found"
    return f"SELECT * FROM ({empty} UNION ALL BY NAME SELECT * FROM {scan}, {options}))"


def view_select(
    data_root: str,
    table: str,
    schema: pa.Schema,
    *,
    json_columns: Iterable[str] = ("raw",),
    files_exist: bool = True,
) -> str:
    """The SELECT behind view `table` (`data_root`: absolute path or URL, no trailing slash)."""
    json_ok, _ = _features()
    json_cols = (
        {c for c in json_columns if c in schema.names and pa.types.is_string(schema.field(c).type)}
        if json_ok
        else set()
    )
    hive = _hive_safe(schema)
    if hive:
        types = ", ".join(f"{_quote_str(k)}: {v}" for k, v in HIVE_TYPES.items())
        options = f"union_by_name = true, hive_partitioning = true, hive_types = {{{types}}}"
    else:
        options = "union_by_name = true, hive_partitioning = false"
    empty = _typed_empty(schema, json_cols, hive=hive)
    inner = _scan_or_empty(_glob(data_root, table), empty, options, files_exist=files_exist)
    if not json_cols:
        return inner
    casts = ", ".join(f"CAST({_quote_ident(c)} AS JSON) AS {_quote_ident(c)}" for c in json_cols)
    return f"SELECT * REPLACE ({casts}) FROM ({inner})"


def pbxs_select(data_root: str, *, files_exist: bool = True) -> str:
    """The SELECT behind view `pbxs` over `<data_root>/pbxs/*.parquet` (one file per PBX)."""
    return _scan_or_empty(
        f"{data_root}/{PBXS_TABLE}/*.parquet",
        _typed_empty(PBXS_SCHEMA, set(), hive=False),
        "union_by_name = true, hive_partitioning = false",
        files_exist=files_exist,
    )


def _marker(select_sql: str) -> str:
    return MARKER + hashlib.sha256(select_sql.encode()).hexdigest()


# -- object storage -----------------------------------------------------------------------------


def _packaged_extension(name: str) -> str | None:
    """The `<name>` extension file a PyPI package `duckdb-extension-<name>` ships for exactly
    this DuckDB version (extensions load only into the version they were built for)."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    version = f"v{duckdb.__version__}"
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(base, "extensions", version, f"{name}.duckdb_extension")
        if os.path.isfile(path):
            return path
    return None


def load_httpfs(con: duckdb.DuckDBPyConnection) -> bool:
    """Load DuckDB's httpfs into `con` without the network: from the extension directory
    (`INSTALL httpfs` done once, or `SET extension_directory`), else from the matching PyPI
    package. False when neither has a build for this DuckDB version."""
    try:
        con.execute("LOAD httpfs")
        return True
    except duckdb.Error:
        pass
    path = _packaged_extension("httpfs")
    if path is None:
        return False
    try:
        con.execute(f"LOAD {_quote_str(path)}")
    except duckdb.Error:
        return False
    return True


def s3_secret_sql(env: Mapping[str, str] | None = None) -> str:
    """`CREATE TEMPORARY SECRET` for httpfs from the standard AWS variables of `env`.

    Temporary: it lives in the connection's memory and is never written into the DuckDB file.
    `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (an S3-compatible store) sets ENDPOINT with
    path-style URLs and TLS as the URL's scheme says. The text holds the credentials: execute
    it, never log it.
    """
    env = os.environ if env is None else env
    options: dict[str, str] = {"TYPE": "s3"}
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        options["KEY_ID"] = _quote_str(key)
        options["SECRET"] = _quote_str(secret)
        if env.get("AWS_SESSION_TOKEN"):
            options["SESSION_TOKEN"] = _quote_str(env["AWS_SESSION_TOKEN"])
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["REGION"] = _quote_str(region)
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["ENDPOINT"] = _quote_str(url.netloc + url.path.rstrip("/"))
        options["URL_STYLE"] = "'path'"
        options["USE_SSL"] = "true" if url.scheme == "https" else "false"
    body = ", ".join(f"{k} {v}" for k, v in options.items())
    return f"CREATE OR REPLACE TEMPORARY SECRET {S3_SECRET_NAME} ({body})"


def enable_object_store(
    con: duckdb.DuckDBPyConnection,
    protocols: Iterable[str],
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Let `con` read URLs of `protocols` (e.g. {"s3"}); returns how, per protocol.

    S3 goes through httpfs with a temporary secret from the environment when httpfs loads
    ("httpfs"); otherwise, and for any other protocol, the fsspec filesystem (s3fs reads the
    same AWS_* variables, or `storage_options`) is registered on the connection ("fsspec"),
    which works with any DuckDB version the Python package runs on; every query sees the
    objects (and ETags) as they are when it starts.
    """
    how: dict[str, str] = {}
    for protocol in sorted(set(protocols) - {"file", "local"}):
        if protocol in _S3_PROTOCOLS and load_httpfs(con):
            con.execute(s3_secret_sql())
            how[protocol] = "httpfs"
            continue
        # Connections to one file in one process share a database: register once.
        if protocol not in con.list_filesystems():
            con.register_filesystem(_listing_per_query(protocol, storage_options))
        how[protocol] = "fsspec"
    return how


def _listing_per_query(
    protocol: str, storage_options: Mapping[str, Any] | None
) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem of `protocol`, listing anew at each glob.

    A query starts by globbing the view's tree: one recursive listing of the tree's fixed
    prefix (a LIST per 1,000 objects, not one per day directory) fills the cache the glob and
    the query's many size/ETag lookups are then answered from. Listing anew each time keeps
    ETags current: s3fs reads with If-Match, so a stale one would refuse a replaced day.
    """
    base = fsspec.get_filesystem_class(protocol)

    class ListingPerQuery(base):  # type: ignore[misc, valid-type]
        def glob(self, path: str, **kwargs: Any) -> Any:
            self.invalidate_cache()
            prefix = re.split(r"[*?\[]", path, maxsplit=1)[0].rsplit("/", 1)[0]
            if prefix != path:
                self.find(prefix)
            return super().glob(path, **kwargs)

    return ListingPerQuery(skip_instance_cache=True, **dict(storage_options or {}))


def view_protocols(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Protocols (s3, gs, ...) of the Parquet trees the file's views read; empty when local."""
    rows = con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall()
    return {m.group(1).lower() for (sql,) in rows for m in _SCAN_URL.finditer(sql or "")}


# -- connections --------------------------------------------------------------------------------


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _is_being_created(path: str, exc: BaseException) -> bool:
    """A file another program (not ensure_views: it links complete files) is still creating."""
    if "not a valid DuckDB database file" not in str(exc):
        return False
    try:
        return time.time() - os.stat(path).st_mtime < _YOUNG_FILE_S
    except FileNotFoundError:
        return True


def _connect(path: str, *, read_only: bool, deadline: float, timeout_s: float):
    """Open `path`, retrying lock conflicts with jittered backoff until `deadline`."""
    delay = 0.05
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.ConnectionException as exc:
            # This process already holds the file with the other mode (e.g. a DuckDBResource).
            if "different configuration" not in str(exc):
                raise
            if read_only:
                return _connect(path, read_only=False, deadline=deadline, timeout_s=timeout_s)
            error: BaseException = exc
        except duckdb.IOException as exc:
            if not (_is_lock_error(exc) or _is_being_created(path, exc)):
                raise
            error = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DuckDBLockTimeout(path, timeout_s, str(error).split(". ")[0]) from error
        time.sleep(min(delay * random.uniform(0.5, 1.5), remaining))
        delay = min(delay * 2, 2.0)


def connect_readonly(
    duckdb_path: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> duckdb.DuckDBPyConnection:
    """A read-only connection (what analysts should use), waiting out a writer's short lock."""
    path = os.path.abspath(os.fspath(duckdb_path))
    deadline = time.monotonic() + lock_timeout_s
    return _connect(path, read_only=True, deadline=deadline, timeout_s=lock_timeout_s)


def connect_reader(
    duckdb_path: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> duckdb.DuckDBPyConnection:
    """A read-only connection whose views can read their Parquet tree wherever it is.

    The one documented way to query a DuckDB file whose `data_dir` is on object storage: the
    views' protocols are read from the file and `enable_object_store` gives the connection
    access with the credentials of this process's environment (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL) or `storage_options`.
    """
    con = connect_readonly(duckdb_path, lock_timeout_s=lock_timeout_s)
    try:
        enable_object_store(con, view_protocols(con), storage_options)
    except BaseException:
        con.close()
        raise
    return con


def _current_markers(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    rows = con.execute(
        "SELECT view_name, comment FROM duckdb_views() "
        "WHERE NOT internal AND schema_name = 'main' AND database_name = current_database()"
    ).fetchall()
    return {name: comment for name, comment in rows}


def _stale(con: duckdb.DuckDBPyConnection, wanted: Mapping[str, str]) -> list[str]:
    have = _current_markers(con)
    return [name for name, sql in wanted.items() if have.get(name) != _marker(sql)]


def _process_lock(path: str) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(path, threading.Lock())


def _any_file(data_dir: str, pattern: str, storage_options: Mapping[str, Any] | None) -> bool:
    """Whether any file matches `<data_dir>/<pattern>` (stops at the first one locally)."""
    fs, root = resolve_fs(data_dir, storage_options)
    if not is_local(fs):
        return bool(fs.glob(f"{root}/{pattern}"))
    return next(glob.iglob(os.path.join(root, pattern)), None) is not None


def ensure_views(
    duckdb_path: str,
    data_dir: str,
    schemas: Mapping[str, pa.Schema],
    *,
    storage_options: Mapping[str, Any] | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    json_columns: Iterable[str] = ("raw",),
) -> bool:
    """Make each view `name` in `schemas` current over `<data_dir>/<name>/`; True if it wrote.

    Opens the file read-only first and writes (CREATE OR REPLACE VIEW, in one transaction) only
    when a view is missing or its definition marker differs. Lock conflicts are retried with
    backoff for up to `lock_timeout_s`, then `DuckDBLockTimeout` names the file. A remote
    `data_dir` (s3://...) is written into the views as is, and no credential ever is: creating
    a view reads the tree through `enable_object_store`, and readers open the file with
    `connect_reader`, which gives their session the access of their own environment.
    """
    path = os.path.abspath(os.fspath(duckdb_path))
    fs, root = resolve_fs(data_dir, storage_options)
    data_root = root if is_local(fs) else fs.unstrip_protocol(root).rstrip("/")
    remote = {data_root.split("://", 1)[0]} if "://" in data_root else set()

    def writable(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        enable_object_store(con, remote, storage_options)
        return con

    json_columns = tuple(json_columns)
    empty_ok = allow_empty_scans()

    def files_exist(pattern: str) -> bool:
        return empty_ok or _any_file(data_dir, pattern, storage_options)

    wanted = {
        name: view_select(
            data_root,
            name,
            schema,
            json_columns=json_columns,
            files_exist=files_exist(f"{name}/*/*/*.parquet"),
        )
        for name, schema in schemas.items()
    }
    pbxs = pbxs_select(data_root, files_exist=files_exist(f"{PBXS_TABLE}/*.parquet"))
    wanted.update(kpi_view_selects(schemas, pbxs))  # the analyst views over those
    deadline = time.monotonic() + lock_timeout_s
    lock = _process_lock(path)
    if not lock.acquire(timeout=max(lock_timeout_s, 0.0)):
        raise DuckDBLockTimeout(path, lock_timeout_s, "held by another thread of this process")
    try:
        if not os.path.exists(path) and _create_whole(path, wanted, writable):
            return True
        if os.path.exists(path):
            con = _connect(path, read_only=True, deadline=deadline, timeout_s=lock_timeout_s)
            try:
                if not _stale(con, wanted):
                    return False
            finally:
                con.close()
        con = _connect(path, read_only=False, deadline=deadline, timeout_s=lock_timeout_s)
        try:
            stale = _stale(con, wanted)  # another process may have done it meanwhile
            if not stale:
                return False
            _write_views(writable(con), {name: wanted[name] for name in stale})
            return True
        finally:
            con.close()
    finally:
        lock.release()


def _write_views(con: duckdb.DuckDBPyConnection, views: Mapping[str, str]) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for name, sql in views.items():
            con.execute(f"CREATE OR REPLACE VIEW {_quote_ident(name)} AS {sql}")
            con.execute(f"COMMENT ON VIEW {_quote_ident(name)} IS {_quote_str(_marker(sql))}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _create_whole(
    path: str,
    views: Mapping[str, str],
    prepare: Callable[[duckdb.DuckDBPyConnection], duckdb.DuckDBPyConnection],
) -> bool:
    """Build a new DuckDB file aside and hard-link it into place; False if another won the race.

    Nobody can open a half-created file this way (DuckDB writes its header after creating the
    file, and a concurrent opener would call it "not a valid DuckDB database file"). Where hard
    links are not supported, returns False and the caller takes the lock-and-write path.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        con = duckdb.connect(tmp)
        try:
            _write_views(prepare(con), views)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            return False  # no hard links here: fall back to opening `path` for writing
        return True
    finally:
        for leftover in (tmp, tmp + ".wal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)
