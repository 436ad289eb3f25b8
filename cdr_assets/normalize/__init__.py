"""Vendor CDR records -> Arrow tables in `CDR_SCHEMA`, one page at a time.

Owns the vendor-field-to-column mapping and the `NORMALIZERS` registry that assets look
normalizers up in by `vendor` name. Knows fields, not HTTP: it must not fetch, page, or write
files. Adding a vendor = one module with a `normalize_<vendor>_records` and one line below.

Each call has a fixed cost of ~1-3 ms (dozens of Arrow kernel calls), so feed it batches of
thousands of records: `batch_pages(client_pages, 10_000)` joins Zorio's 200-record pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pyarrow as pa

from cdr_assets.normalize.common import batch_pages
from cdr_assets.normalize.yeastar import normalize_yeastar_records
from cdr_assets.normalize.zorio import normalize_zorio_records
from cdr_assets.records import JsonRecords


class Normalizer(Protocol):
    """`(records, *, pbx, timezone, ingested_at) -> pa.Table` in CDR_SCHEMA."""

    def __call__(
        self,
        records: Sequence[dict[str, Any]] | JsonRecords,
        *,
        pbx: str,
        timezone: ZoneInfo | str,
        ingested_at: datetime,
    ) -> pa.Table: ...


NORMALIZERS: dict[str, Normalizer] = {
    "yeastar": normalize_yeastar_records,
    "zorio": normalize_zorio_records,
}
"""Normalizer per config `vendor` value."""

__all__ = [
    "NORMALIZERS",
    "Normalizer",
    "batch_pages",
    "normalize_yeastar_records",
    "normalize_zorio_records",
]
