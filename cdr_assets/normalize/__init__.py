"""Vendor CDR records -> Arrow tables in `CDR_SCHEMA`, one batch at a time.

Owns the vendor-field-to-column mapping (`yeastar.py`, `zorio.py`), the registry the assets look
a vendor up in by `vendor` name (`registry.py`), and the quarantine of records a vendor got
wrong (`quarantine.py`). Knows fields, not HTTP: it must not fetch, page, or write files.
Adding a vendor = one module with `normalize_<vendor>_records`, `ID_FIELD` and `record_start`,
and one entry in `registry.VENDOR_NORMALIZERS`.

Each call has a fixed cost of ~1-3 ms (dozens of Arrow kernel calls), so feed it batches of
thousands of records: `batch_pages(client_pages, 10_000)` joins Zorio's 200-record pages.
"""

from __future__ import annotations

from cdr_assets.normalize.common import batch_pages
from cdr_assets.normalize.quarantine import NormalizedBatch, RejectedRecord, normalize_quarantined
from cdr_assets.normalize.registry import (
    NORMALIZERS,
    VENDOR_NORMALIZERS,
    Normalizer,
    VendorNormalizer,
    vendor_normalizer,
)
from cdr_assets.normalize.yeastar import normalize_yeastar_records
from cdr_assets.normalize.zorio import normalize_zorio_records

__all__ = [
    "NORMALIZERS",
    "VENDOR_NORMALIZERS",
    "NormalizedBatch",
    "Normalizer",
    "RejectedRecord",
    "VendorNormalizer",
    "batch_pages",
    "normalize_quarantined",
    "normalize_yeastar_records",
    "normalize_zorio_records",
    "vendor_normalizer",
]
