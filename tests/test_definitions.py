"""The default definitions load from the config file, with every PBX's assets and schedule."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_default_definitions(monkeypatch: pytest.MonkeyPatch, config: Path) -> dg.Definitions:
    monkeypatch.setenv("CDR_ASSETS_CONFIG", str(config))
    sys.modules.pop("cdr_assets.definitions", None)
    return importlib.import_module("cdr_assets.definitions").defs


def test_shipped_demo_config_is_loadable(monkeypatch: pytest.MonkeyPatch) -> None:
    defs = _load_default_definitions(monkeypatch, REPO / "cdr_assets.yaml")
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert keys == {
        "hq/cdr",
        "hq/recordings",
        "saigon/cdr",
        "saigon/recordings",
        "analytics/cdr_daily_kpis",
    }
    assert {s.name for s in defs.schedules or []} == {
        "hq_daily",
        "saigon_daily",
        "hq_recordings_audit",
        "saigon_recordings_audit",
    }


def test_partitions_are_daily_in_each_pbx_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    defs = _load_default_definitions(monkeypatch, REPO / "cdr_assets.yaml")
    hq = defs.resolve_assets_def(dg.AssetKey(["hq", "cdr"]))
    partitions = hq.partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.timezone == "Asia/Singapore"
    assert partitions.get_first_partition_key() == "2026-01-01"


def test_recordings_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        (REPO / "cdr_assets.yaml")
        .read_text()
        .replace(
            "    timezone: Asia/Singapore\n",
            "    timezone: Asia/Singapore\n    archive_recordings: false\n",
        )
    )
    config = tmp_path / "cdr_assets.yaml"
    config.write_text(text)
    defs = _load_default_definitions(monkeypatch, config)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert "hq/recordings" not in keys and "saigon/recordings" in keys


def test_broken_config_fails_at_load_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cdr_assets.yaml"
    config.write_text((REPO / "cdr_assets.yaml").read_text().replace("Asia/Singapore", "Mars/Base"))
    with pytest.raises(Exception, match=r"pbxs\[0\]\.timezone"):
        _load_default_definitions(monkeypatch, config)
    sys.modules.pop("cdr_assets.definitions", None)


def test_assets_document_their_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    defs = _load_default_definitions(monkeypatch, REPO / "cdr_assets.yaml")
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == "hq/cdr")
    columns = {c.name: c for c in spec.metadata["dagster/column_schema"].columns}
    assert columns["start_time"].type == "TIMESTAMPTZ"
    assert columns["answer_time"].constraints.nullable is True
    assert "UTC" in columns["start_time"].description
