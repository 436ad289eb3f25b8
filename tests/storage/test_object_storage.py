"""`data_dir: s3://...` end to end against the moto S3 server on loopback.

The assets write Parquet and the archive to a bucket, and a separate reader process opens the
DuckDB file read-only through `connect_reader` and queries the S3-backed views while ingestion
goes on. Credentials reach both only through the environment (AWS_* and AWS_ENDPOINT_URL) and
never the DuckDB file.

The reader reads S3 through DuckDB's httpfs where this DuckDB can load it (test_duckdb_engines
runs this module again on a DuckDB with httpfs from PyPI, and says which way it must read), else
through s3fs; it reports which, and the test holds it to the expected way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdr_assets.config import parse_config
from cdr_assets.simulator import Simulator
from cdr_assets.storage.duckdb import connect_reader, ensure_views, load_httpfs, s3_secret_sql
from cdr_assets.storage.parquet import PartitionWriter, read_partition
from tests.assets.conftest import DAY, SECRETS, Pipeline, pipeline_config
from tests.fixtures.s3 import S3Location, S3Server
from tests.storage.helpers import SMALL_SCHEMA, rows

REPO_ROOT = Path(__file__).resolve().parents[2]
# moto takes any key pair; distinctive values make a leak into a file findable.
KEY_ID = "AKIACDRASSETSLEAKTEST"
SECRET = "cdr-assets-s3-secret-must-not-leak"
PBXS = ("hq", "saigon")

# How the reader must read S3 ("httpfs" or "fsspec"); unset: httpfs where this DuckDB loads it.
READ_VIA_ENV = "CDR_ASSETS_TEST_S3_READ_VIA"

# A reader process: opens the DuckDB file as the README says, answers one query per input line
# ("rows" -> counts per view, pbx and day, and which way S3 was read), and keeps the file open
# between queries.
READER = """
import json, sys
from cdr_assets.storage.duckdb import connect_reader

con = connect_reader(sys.argv[1])
httpfs = con.execute(
    "SELECT count(*) FROM duckdb_extensions() WHERE extension_name = 'httpfs' AND loaded"
).fetchone()[0]
via = "httpfs" if httpfs and "s3" not in con.list_filesystems() else "fsspec"
for line in sys.stdin:
    out = {"via": via}
    for view in ("cdr", "recordings"):
        out[view] = {
            f"{pbx}/{day}": [n, ids]
            for pbx, day, n, ids in con.execute(
                f"SELECT pbx, CAST(call_date AS VARCHAR), count(*), count(DISTINCT cdr_id) "
                f"FROM {view} GROUP BY ALL"
            ).fetchall()
        }
    print(json.dumps(out), flush=True)
"""


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The environment a deployment on S3 runs with: endpoint and credentials, nothing else."""
    env = {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        **SECRETS,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env


@pytest.fixture
def s3_pipeline(
    s3_env: dict[str, str],
    s3_bucket_url: S3Location,
    make_simulator: Callable[..., Simulator],
    tmp_path: Path,
) -> Iterator[Pipeline]:
    """Both PBXs with data_dir and recordings_dir in a fresh bucket; DuckDB file local."""
    bucket = f"s3://{s3_bucket_url.bucket}"
    storage = {
        "data_dir": f"{bucket}/data",
        "recordings_dir": f"{bucket}/recordings",
        "duckdb_path": str(tmp_path / "cdr.duckdb"),
        "state_dir": str(tmp_path / "state"),
    }
    sim = make_simulator(calls_per_day=12)
    config = parse_config(pipeline_config(sim, tmp_path, storage=storage))
    instance = dg.DagsterInstance.ephemeral()
    try:
        yield Pipeline(sim=sim, config=config, instance=instance)
    finally:
        instance.dispose()


class Reader:
    """A separate Python process holding the DuckDB file open read-only."""

    def __init__(self, duckdb_path: str) -> None:
        path = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, duckdb_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def query(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("rows\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"reader process failed: {err[-2000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.communicate(timeout=30)


def _read_via() -> str:
    """How the reader process must read S3 on this run."""
    want = os.environ.get(READ_VIA_ENV)
    if want:
        return want
    con = duckdb.connect()
    try:
        return "httpfs" if load_httpfs(con) else "fsspec"
    finally:
        con.close()


def _expected(pipeline: Pipeline, days: list[date]) -> dict[str, Any]:
    """What the views must show, read from the Parquet objects with the package's reader."""
    data_dir = pipeline.config.storage.data_dir
    out: dict[str, Any] = {"via": _read_via(), "cdr": {}, "recordings": {}}
    for view in ("cdr", "recordings"):
        for pbx in PBXS:
            for day in days:
                table = read_partition(data_dir, view, pbx, day, columns=["cdr_id"])
                assert table is not None, f"{view} {pbx} {day} was not written to S3"
                if table.num_rows:
                    out[view][f"{pbx}/{day}"] = [table.num_rows, table.num_rows]
    return out


def _materialize(pipeline: Pipeline, day: date) -> dict[tuple[str, str, str | None], bool]:
    """Each PBX's cdr and recordings for `day` (one run per PBX: each has its own zone)."""
    checks = {}
    for pbx in PBXS:
        result = pipeline.materialize(f"{pbx}/cdr,{pbx}/recordings", day.isoformat())
        checks.update(pipeline.checks(result))
    return checks


def _bucket_keys(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_assets_on_s3_and_a_reader_process_queries_the_views_while_ingestion_goes_on(
    s3_pipeline: Pipeline, s3_bucket_url: S3Location, s3_client: Any
) -> None:
    pipeline = s3_pipeline
    first, second = DAY, DAY + timedelta(days=1)
    checks = _materialize(pipeline, first)
    assert checks and all(checks.values()), checks

    data_keys = _bucket_keys(s3_client, s3_bucket_url.bucket, "data/")
    # a day is one data.parquet per partition (nothing staged or temporary is left in the
    # bucket); each PBX's row of the `pbxs` table is <data_dir>/pbxs/<name>.parquet
    day_keys = [k for k in data_keys if not k.startswith("data/pbxs/")]
    assert day_keys and all(k.endswith("/data.parquet") for k in day_keys), data_keys
    assert {k for k in data_keys if k.startswith("data/pbxs/")} == {
        "data/pbxs/hq.parquet",
        "data/pbxs/saigon.parquet",
    }, data_keys
    tables = {k.split("/")[1] for k in data_keys}
    assert {"cdr", "recordings"} <= tables
    assert _bucket_keys(s3_client, s3_bucket_url.bucket, "recordings/"), "nothing archived"

    reader = Reader(pipeline.config.storage.duckdb_path)
    try:
        seen = reader.query()
        assert seen == _expected(pipeline, [first])
        assert seen["cdr"] and seen["recordings"]

        # The reader keeps the file open read-only: the next day and a re-run still ingest.
        assert all(_materialize(pipeline, second).values())
        assert all(_materialize(pipeline, first).values())
        seen = reader.query()
    finally:
        reader.close()
    assert seen == _expected(pipeline, [first, second])
    for view in ("cdr", "recordings"):  # [rows, distinct ids]: a re-run duplicated nothing
        assert all(n == ids for n, ids in seen[view].values()), seen[view]
    assert _bucket_keys(s3_client, s3_bucket_url.bucket, "data/") == sorted(
        set(data_keys) | {k.replace(str(first), str(second)) for k in data_keys}
    )

    duckdb_files = list(Path(pipeline.config.storage.duckdb_path).parent.glob("cdr.duckdb*"))
    assert duckdb_files
    for path in duckdb_files:  # the file and any WAL: no credential was ever written
        content = path.read_bytes()
        assert KEY_ID.encode() not in content and SECRET.encode() not in content, path


def test_a_read_spanning_a_day_swap_fails_instead_of_mixing_two_versions(
    s3_env: dict[str, str], s3_bucket_url: S3Location
) -> None:
    """On S3 the swap is one PUT of the whole object: a reader that opened the old object and
    reads on after the new one landed is refused (s3fs sends If-Match with the ETag it saw),
    so nobody ever reads the footer of one day with row groups of another."""
    day = date(2026, 3, 1)

    def write(ids: list[str]) -> None:
        with PartitionWriter(
            s3_bucket_url.url, "cdr", "hq", day, SMALL_SCHEMA, row_group_size=10
        ) as writer:
            writer.write(rows("hq", day, ids))
            writer.commit()

    write([f"old-{i}" for i in range(50)])
    fs, _ = fsspec.core.url_to_fs(s3_bucket_url.url)
    path = f"{s3_bucket_url.bucket}/archive/cdr/pbx=hq/call_date={day}/data.parquet"
    with fs.open(path, "rb", block_size=256, cache_type="none") as handle:
        parquet = pq.ParquetFile(handle)
        assert parquet.metadata.num_row_groups == 5
        write([f"new-{i}" for i in range(70)])
        with pytest.raises((OSError, pa.ArrowException)):
            parquet.read()
    table = read_partition(s3_bucket_url.url, "cdr", "hq", day)
    assert table is not None and table.num_rows == 70
    assert sorted(fs.ls(os.path.dirname(path))) == [path]  # no temporary object, ever


def test_a_reader_connection_sees_each_replaced_and_new_day_at_its_next_query(
    s3_env: dict[str, str], s3_bucket_url: S3Location, tmp_path: Path
) -> None:
    """One long-lived reader, two connections in one process: each query lists the tree anew,
    so a replaced day is read whole (never refused for a stale ETag) and a new day appears."""
    days = [date(2026, 3, 1), date(2026, 3, 2)]

    def write(day: date, ids: list[str]) -> None:
        with PartitionWriter(s3_bucket_url.url, "cdr", "hq", day, SMALL_SCHEMA) as writer:
            writer.write(rows("hq", day, ids))
            writer.commit()

    write(days[0], ["a", "b"])
    db = str(tmp_path / "cdr.duckdb")
    assert ensure_views(db, s3_bucket_url.url, {"cdr": SMALL_SCHEMA})
    count = "SELECT CAST(call_date AS VARCHAR), count(*) FROM cdr GROUP BY ALL ORDER BY ALL"
    first, second = connect_reader(db), connect_reader(db)
    try:
        assert first.execute(count).fetchall() == [("2026-03-01", 2)]
        write(days[0], ["a", "b", "c"])
        write(days[1], ["d"])
        assert first.execute(count).fetchall() == [("2026-03-01", 3), ("2026-03-02", 1)]
        assert second.execute(count).fetchall() == [("2026-03-01", 3), ("2026-03-02", 1)]
    finally:
        first.close()
        second.close()


def test_the_s3_secret_is_built_from_the_environment() -> None:
    sql = s3_secret_sql(
        {
            "AWS_ACCESS_KEY_ID": "AKIA1",
            "AWS_SECRET_ACCESS_KEY": "it's secret",
            "AWS_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000/",
        }
    )
    assert sql.startswith("CREATE OR REPLACE TEMPORARY SECRET cdr_assets_s3 (TYPE s3, ")
    assert "KEY_ID 'AKIA1'" in sql and "SECRET 'it''s secret'" in sql
    assert "REGION 'eu-west-1'" in sql
    assert "ENDPOINT '127.0.0.1:9000', URL_STYLE 'path', USE_SSL false" in sql
    aws = s3_secret_sql({"AWS_DEFAULT_REGION": "us-east-2"})
    assert aws.endswith("(TYPE s3, REGION 'us-east-2')")  # real AWS: no endpoint, TLS on
