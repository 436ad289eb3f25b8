"""The vendor registry: one entry per vendor, everything the pipeline looks up by `vendor`."""

from __future__ import annotations

import pytest

from cdr_assets.normalize import (
    NORMALIZERS,
    VENDOR_NORMALIZERS,
    normalize_yeastar_records,
    normalize_zorio_records,
    vendor_normalizer,
    yeastar,
    zorio,
)


def test_registry_maps_vendor_names_to_normalizers() -> None:
    assert NORMALIZERS["yeastar"] is normalize_yeastar_records
    assert NORMALIZERS["zorio"] is normalize_zorio_records
    assert set(NORMALIZERS) == set(VENDOR_NORMALIZERS) == {"yeastar", "zorio"}


def test_each_entry_knows_its_id_field_and_how_to_read_a_start() -> None:
    assert (vendor_normalizer("yeastar").id_field, vendor_normalizer("zorio").id_field) == (
        "uid",
        "uuid",
    )
    assert vendor_normalizer("yeastar").record_start is yeastar.record_start
    assert vendor_normalizer("zorio").record_start is zorio.record_start
    assert all(name == entry.vendor for name, entry in VENDOR_NORMALIZERS.items())


def test_an_unknown_vendor_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'avaya'.*yeastar, zorio"):
        vendor_normalizer("avaya")
