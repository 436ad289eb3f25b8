"""The config file: what loads, what fails, and that every failure names its key."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest
from pydantic import ValidationError

from cdr_assets.assets import build_definitions
from cdr_assets.config import (
    CdrAssetsConfig,
    ConfigProblem,
    YeastarPbxConfig,
    ZorioPbxConfig,
    config_problems,
    env_template_name,
    load_config,
    parse_config,
)
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
        (_pbx(recording_hosts=["https://x.example"]), r"pbxs\[0\]\.recording_hosts: .*'https"),
        (_pbx(auth_cooldown_minutes=0), r"pbxs\[0\]\.auth_cooldown_minutes"),
        (_pbx(retry_after_max_s=-1), r"pbxs\[0\]\.retry_after_max_s"),
        (_pbx(max_inflight_requests=0), r"pbxs\[0\]\.max_inflight_requests: .*equal to 1"),
        (_pbx(max_inflight_requests=500), r"pbxs\[0\]\.max_inflight_requests: .*equal to 32"),
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


def test_auth_breaker_and_link_settings_reach_the_resource() -> None:
    config = parse_config(
        {
            "storage": {"data_dir": "/srv/cdr", "state_dir": "/var/lib/cdr_assets"},
            "pbxs": [
                _pbx(
                    recording_hosts=["files.zorio.vn", "cdn.example:8443"],
                    auth_cooldown_minutes=15,
                    retry_after_max_s=120,
                )
            ],
        }
    )
    (pbx,) = config.pbxs
    settings = pbx.resource_settings(config.storage)
    assert settings["auth_state_dir"] == "/var/lib/cdr_assets"
    assert settings["auth_cooldown_minutes"] == 15
    assert settings["retry_after_max_s"] == 120
    assert settings["recording_hosts"] == ["files.zorio.vn", "cdn.example:8443"]
    assert pbx.resource_settings()["auth_state_dir"] is None  # no storage: in-process only


def test_state_dir_defaults_beside_local_data_and_must_be_local() -> None:
    assert parse_config({"pbxs": [_pbx()]}).storage.state_dir == "./data/.state"
    local = parse_config({"storage": {"data_dir": "/srv/cdr/"}, "pbxs": [_pbx()]})
    assert local.storage.state_dir == "/srv/cdr/.state"
    remote = parse_config({"storage": {"data_dir": "s3://bucket/cdr"}, "pbxs": [_pbx()]})
    assert remote.storage.state_dir == "./data/.state"
    with pytest.raises(ConfigError, match=r"storage: state_dir 's3://b/state' must be a local"):
        parse_config({"storage": {"state_dir": "s3://b/state"}, "pbxs": [_pbx()]})


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("{{ env.HQ_SECRET }}", "HQ_SECRET"),
        ("{{env.hq_secret_2}}", "hq_secret_2"),
        ("  {{ env('HQ_SECRET') }} ", "HQ_SECRET"),
        ('{{ env("HQ_SECRET") }}', "HQ_SECRET"),
        ("{{ env.HQ_SECRET | default('x') }}", None),
        ("https://{{ env.HOST }}:8088", None),
        ("HQ_SECRET", None),
        ("{{ env.1BAD }}", None),
    ],
)
def test_env_template_name_takes_only_a_whole_value_reference(text: str, name: str | None) -> None:
    assert env_template_name(text) == name


def test_secrets_and_base_url_accept_the_dg_template_spelling() -> None:
    yeastar = {
        "name": "hq",
        "vendor": "yeastar",
        "base_url": "https://192.0.2.10:8088",
        "timezone": "Asia/Singapore",
        "start_date": "2026-01-01",
        "client_id": "{{ env.HQ_CLIENT_ID }}",
        "client_secret": {"env": "HQ_CLIENT_SECRET"},
    }
    zorio = _pbx(
        name="saigon", api_token="{{ env.SAIGON_ZORIO_TOKEN }}", base_url="{{ env('SAIGON_URL') }}"
    )
    hq, saigon = parse_config({"pbxs": [yeastar, zorio]}).pbxs
    assert hq.resource_settings()["client_id"] == dg.EnvVar("HQ_CLIENT_ID")
    assert hq.resource_settings()["client_secret"] == dg.EnvVar("HQ_CLIENT_SECRET")
    assert saigon.resource_settings()["api_token"] == dg.EnvVar("SAIGON_ZORIO_TOKEN")
    assert saigon.resource_settings()["base_url"] == dg.EnvVar("SAIGON_URL")


@pytest.mark.parametrize("template", ["{{ env.X | default('s3cr3t') }}", "{{ 's3cr3t' }}"])
def test_a_secret_template_other_than_a_reference_is_refused(template: str) -> None:
    expected = r"pbxs\[0\]\.api_token: secrets are given only"
    with pytest.raises(ConfigError, match=expected) as raised:
        parse_config({"pbxs": [_pbx(api_token=template)]})
    assert "s3cr3t" not in str(raised.value)


def test_env_referenced_base_url_builds_definitions_and_stays_a_reference() -> None:
    config = parse_config({"pbxs": [_pbx(base_url={"env": "HQ_URL"})]})
    defs = build_definitions(config)
    resource = defs.resources["hq_pbx"]
    assert resource.base_url == dg.EnvVar("HQ_URL")


def test_config_problems_locate_each_error_by_document_keys() -> None:
    with pytest.raises(ValidationError) as raised:
        CdrAssetsConfig.model_validate(
            {
                "pbxs": [
                    _pbx(timezone="Asia/Singapur"),
                    _pbx(name="b", vendor="avaya"),
                    _pbx(name="c", base_url="pbx.example", colour="blue"),
                ]
            }
        )
    problems = config_problems(raised.value)
    assert [p.path for p in problems] == [
        ("pbxs", 0, "timezone"),
        ("pbxs", 1, "vendor"),
        ("pbxs", 2, "base_url"),
        ("pbxs", 2, "colour"),
    ]
    assert str(problems[0]) == (
        "pbxs[0].timezone: 'Asia/Singapur' is not an IANA time zone (e.g. Asia/Singapore)"
    )
    assert problems[1].where == "pbxs[1].vendor" and "'avaya'" in problems[1].message
    assert ConfigProblem((), "x").where == "(top level)"


def test_recordings_audit_defaults_storage_wide_keys_and_per_pbx_overrides() -> None:
    config = parse_config(
        {
            "storage": {"recordings_audit": {"sample": 50, "cron": "0 4 * * *"}},
            "pbxs": [
                _pbx(name="a", recordings_audit={"days": "all"}),
                _pbx(name="b", recordings_audit={"sample": "all", "cron": None}),
                _pbx(name="c"),
            ],
        }
    )
    audits = [pbx.audit_settings(config.storage) for pbx in config.pbxs]
    assert [(a.sample, a.days, a.cron) for a in audits] == [
        (50, "all", "0 4 * * *"),
        ("all", 30, None),
        (50, 30, "0 4 * * *"),
    ]
    default = parse_config({"pbxs": [_pbx()]})
    settings = default.pbxs[0].audit_settings(default.storage)
    assert (settings.sample, settings.days, settings.cron) == (200, 30, "0 3 * * 0")


@pytest.mark.parametrize(
    ("audit", "expected"),
    [
        (
            {"sample": 0},
            r"recordings_audit\.sample: must be a whole number of at least 1, or 'all'",
        ),
        ({"sample": "some"}, r"recordings_audit\.sample: must be .* \(got 'some'\)"),
        ({"days": -1}, r"recordings_audit\.days: must be a whole number"),
        ({"cron": "0 3 * *"}, r"recordings_audit\.cron: '0 3 \* \*' is not a cron expression"),
        ({"every": 1}, r"recordings_audit\.every: Extra inputs"),
    ],
)
@pytest.mark.parametrize("where", ["pbxs[0]", "storage"])
def test_a_bad_recordings_audit_key_is_named(
    audit: dict[str, object], expected: str, where: str
) -> None:
    document: dict[str, object] = {"pbxs": [_pbx()]}
    if where == "storage":
        document["storage"] = {"recordings_audit": audit}
    else:
        document["pbxs"] = [_pbx(recordings_audit=audit)]
    with pytest.raises(ConfigError, match=re.escape(where) + r"\." + expected) as raised:
        parse_config(document)
    assert str(raised.value).count("\n") == 1  # one line, not one per member of a union
