"""The vendors whose records can be normalized, looked up by the config's `vendor` name.

Owns the one place a vendor is registered: its normalizer, the field that becomes `cdr_id`, and
how to read a record's start instant when the record cannot be normalized (so a reject is filed
under the right day). Adding a vendor = one module with those three and one entry below.
It must not normalize, fetch or write anything itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pyarrow as pa

from cdr_assets.normalize import yeastar, zorio
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


@dataclass(frozen=True)
class VendorNormalizer:
    """What the pipeline needs to know about one vendor's CDR records."""

    vendor: str
    normalize: Normalizer
    id_field: str
    """The record field that becomes `cdr_id` (Yeastar `uid`, Zorio `uuid`)."""
    record_start: Callable[[Any], datetime | None]
    """Best-effort start instant of one raw record; None when it has no usable one."""


VENDOR_NORMALIZERS: dict[str, VendorNormalizer] = {
    yeastar.VENDOR: VendorNormalizer(
        yeastar.VENDOR, yeastar.normalize_yeastar_records, yeastar.ID_FIELD, yeastar.record_start
    ),
    zorio.VENDOR: VendorNormalizer(
        zorio.VENDOR, zorio.normalize_zorio_records, zorio.ID_FIELD, zorio.record_start
    ),
}
"""Everything about a vendor's records, by config `vendor` value."""

NORMALIZERS: dict[str, Normalizer] = {
    name: entry.normalize for name, entry in VENDOR_NORMALIZERS.items()
}
"""Normalizer per config `vendor` value (the `normalize` of `VENDOR_NORMALIZERS`)."""


def vendor_normalizer(vendor: str) -> VendorNormalizer:
    """The registry entry of `vendor`, or a ValueError listing the vendors there are."""
    try:
        return VENDOR_NORMALIZERS[vendor]
    except KeyError:
        known = ", ".join(sorted(VENDOR_NORMALIZERS))
        raise ValueError(f"no normalizer for vendor {vendor!r} (known: {known})") from None
