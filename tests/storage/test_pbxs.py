"""The `pbxs` table: each PBX's one-row file, replaced whole, locally and on S3."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from cdr_assets.schema import PBXS_SCHEMA
from cdr_assets.storage.pbxs import write_pbx_row
from tests.fixtures.s3 import S3Location


def test_a_pbx_row_is_replaced_whole_and_leaves_no_staging(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_pbx_row(
        str(data), pbx="hq", vendor="yeastar", timezone="UTC", start_date=date(2026, 1, 1)
    )
    path = write_pbx_row(
        str(data), pbx="hq", vendor="yeastar", timezone="Asia/Kathmandu",
        start_date=date(2026, 2, 1),
    )  # fmt: skip
    assert path == str(data / "pbxs" / "hq.parquet")
    table = pq.read_table(path)
    assert table.schema.equals(PBXS_SCHEMA)
    assert table.to_pylist() == [
        {"pbx": "hq", "vendor": "yeastar", "timezone": "Asia/Kathmandu",
         "start_date": date(2026, 2, 1)}
    ]  # fmt: skip
    assert sorted(p.name for p in data.iterdir()) == ["pbxs"]  # no .staging left behind


def test_a_pbx_row_on_s3(s3_bucket_url: S3Location) -> None:
    import fsspec

    url = write_pbx_row(
        s3_bucket_url.url, pbx="ktm", vendor="zorio", timezone="Asia/Kathmandu",
        start_date=date(2026, 3, 1), storage_options=s3_bucket_url.storage_options,
    )  # fmt: skip
    assert url == f"{s3_bucket_url.url}/pbxs/ktm.parquet"
    with fsspec.open(url, "rb", **s3_bucket_url.storage_options) as f:
        assert pq.read_table(f).column("timezone").to_pylist() == ["Asia/Kathmandu"]
