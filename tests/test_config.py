"""The config file: what loads, what fails, and that every failure names its key."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from cdr_assets.config import YeastarPbxConfig, ZorioPbxConfig, load_config, parse_config
from cdr_assets.errors import ConfigError

GOOD = """
storage:
  data_dir: ./data
  duckdb_path: ./data/cdr.duckdb
  recordings_dir: s3://bucket/prefix
pbxs:
  - name: hq
    vendor: yeastar
    base_url: https://192.0.2.10:8088/
    timezone: Asia/Singapore
    start_date: 2026-01-01
    client_id: {env: HQ_CLIENT_ID}
    client_secret: {env: HQ_CLIENT_SECRET}
  - name: saigon
    vendor: zorio
    base_url: https://app.zorio.vn
    timezone: Asia/Ho_Chi_Minh
    start_date: 2026-06-01
    api_token: {env: SAIGON_ZORIO_TOKEN}
"""


def _pbx(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "hq",
        "vendor": "zorio",
        "base_url": "https://pbx.example",
        "timezone": "UTC",
        "start_date": "2026-01-01",
        "api_token": {"env": "TOKEN"},
    }
    return {**base, **fields}


def test_design_example_loads_with_secrets_as_env_vars(tmp_path: Path) -> None:
    path = tmp_path / "cdr_assets.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    hq, saigon = config.pbxs
    assert isinstance(hq, YeastarPbxConfig) and isinstance(saigon, ZorioPbxConfig)
    assert config.storage.recordings_dir == "s3://bucket/prefix"
    settings = hq.resource_settings()
    assert settings["base_url"] == "https://192.0.2.10:8088"
    assert settings["client_secret"] == dg.EnvVar("HQ_CLIENT_SECRET")
    assert saigon.resource_settings()["api_token"] == dg.EnvVar("SAIGON_ZORIO_TOKEN")


def test_config_path_comes_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text(GOOD)
    monkeypatch.setenv("CDR_ASSETS_CONFIG", str(path))
    assert [p.name for p in load_config().pbxs] == ["hq", "saigon"]


def test_missing_file_names_the_path_and_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml.*CDR_ASSETS_CONFIG"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("pbx", "expected"),
    [
        (_pbx(timezone="Asia/Singapur"), r"pbxs\[0\]\.timezone: 'Asia/Singapur' is not an IANA"),
        (_pbx(name="HQ"), r"pbxs\[0\]\.name: 'HQ' must match"),
        (_pbx(api_token="plain-secret"), r"pbxs\[0\]\.api_token: secrets are given only by env"),
        (_pbx(per_page=500), r"pbxs\[0\]\.per_page"),
        (_pbx(vendor="asterisk"), r"pbxs\[0\]"),
        (_pbx(base_url="pbx.example"), r"pbxs\[0\]\.base_url: 'pbx.example' must be an http"),
        (_pbx(start_date="yesterday"), r"pbxs\[0\]\.start_date"),
        (_pbx(colour="blue"), r"pbxs\[0\]\.colour: Extra inputs"),
    ],
)
def test_bad_key_is_named(pbx: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config({"pbxs": [pbx]})


def test_secret_value_never_echoed_in_error() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"pbxs": [_pbx(api_token="s3cr3t-value")]})
    assert "s3cr3t-value" not in str(raised.value)


def test_duplicate_pbx_names_rejected() -> None:
    with pytest.raises(ConfigError, match="'hq' is used twice"):
        parse_config({"pbxs": [_pbx(), _pbx()]})


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pbxs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
