"""The starter defs.yaml: the keys of cdr_assets.yaml, secrets as `{{ env.X }}` references listed
under `requirements.env`, and it loads as written once those variables are set."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from cdr_assets import CdrAssetsComponent
from cdr_assets.component_scaffolder import CdrAssetsScaffolder, CdrAssetsScaffoldParams
from cdr_assets.config import EnvRef
from cdr_assets.errors import ConfigError


def scaffold(target: Path, **params: Any) -> dict[str, Any]:
    target.mkdir(parents=True, exist_ok=True)
    request = dg.ScaffoldRequest(
        type_name="cdr_assets.CdrAssetsComponent",
        target_path=target,
        scaffold_format="yaml",
        project_root=target.parent,
        params=CdrAssetsScaffoldParams(**params),
    )
    CdrAssetsScaffolder().scaffold(request)
    return yaml.safe_load((target / "defs.yaml").read_text())


def test_default_scaffold_is_one_yeastar_pbx_with_secret_references(tmp_path: Path) -> None:
    document = scaffold(tmp_path / "pbx_fleet")
    assert document["type"] == "cdr_assets.CdrAssetsComponent"
    attributes = document["attributes"]
    assert attributes["storage"] == {
        "data_dir": "./data",
        "duckdb_path": "./data/cdr.duckdb",
        "recordings_dir": "./data/recordings",
    }
    (pbx,) = attributes["pbxs"]
    assert pbx["client_id"] == "{{ env.HQ_CLIENT_ID }}"
    assert pbx["client_secret"] == "{{ env.HQ_CLIENT_SECRET }}"
    assert pbx["start_date"] == date.today().replace(day=1).isoformat()
    assert document["requirements"] == {"env": ["HQ_CLIENT_ID", "HQ_CLIENT_SECRET"]}


def test_the_scaffold_loads_as_written(tmp_path: Path) -> None:
    document = scaffold(
        tmp_path / "zorio_fleet",
        pbx_name="saigon",
        vendor="zorio",
        timezone="Asia/Ho_Chi_Minh",
        start_date=date(2026, 6, 1),
        data_dir="/srv/cdr/",
    )
    assert document["requirements"] == {"env": ["SAIGON_ZORIO_TOKEN"]}
    component = CdrAssetsComponent.resolve_from_dict(document["attributes"])
    (pbx,) = component.pbxs
    assert (pbx.name, pbx.vendor, pbx.base_url) == ("saigon", "zorio", "https://app.zorio.vn")
    assert pbx.api_token == EnvRef(env="SAIGON_ZORIO_TOKEN")
    assert pbx.start_date == date(2026, 6, 1)
    assert component.storage.duckdb_path == "/srv/cdr/cdr.duckdb"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"timezone": "Asia/Singapur"}, "--timezone: 'Asia/Singapur' is not an IANA time zone"),
        ({"pbx_name": "Head Office"}, "--pbx-name: 'Head Office' must match [a-z0-9_]+"),
        ({"base_url": "192.0.2.10"}, "--base-url: '192.0.2.10' must be an http(s) URL"),
    ],
)
def test_bad_parameters_fail_naming_the_option(
    tmp_path: Path, params: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        scaffold(tmp_path / "bad", **params)
    assert expected in str(raised.value)
    assert not (tmp_path / "bad" / "defs.yaml").exists()
