"""The `cdr_assets.yaml` file: parsing, validation and secret references.

Owns the shape of the config file (DESIGN.md) and turns `{env: NAME}` into `dg.EnvVar(NAME)`
so secrets are resolved by Dagster at run launch and never stored. It must not open network
connections or files other than the config itself.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cdr_assets.errors import ConfigError

CONFIG_ENV_VAR = "CDR_ASSETS_CONFIG"
DEFAULT_CONFIG_PATH = "./cdr_assets.yaml"
_PBX_NAME = re.compile(r"^[a-z0-9_]+$")


class EnvRef(BaseModel):
    """A secret given by environment variable name: `{env: HQ_CLIENT_SECRET}`."""

    model_config = ConfigDict(extra="forbid")
    env: str = Field(min_length=1)

    def as_env_var(self) -> dg.EnvVar:
        return dg.EnvVar(self.env)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageConfig(_Strict):
    """Where Parquet, the DuckDB file and the recording archive live."""

    data_dir: str = "./data"
    duckdb_path: str = "./data/cdr.duckdb"
    recordings_dir: str = "./data/recordings"
    recordings_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for recordings_dir, e.g. {client_kwargs: {endpoint_url: "
        "...}} for an S3-compatible store; credentials come from the environment",
    )


class PbxConfigBase(_Strict):
    """Settings every PBX has, whatever its vendor."""

    name: str
    base_url: str | EnvRef
    timezone: str
    start_date: date
    verify_tls: bool = True
    ca_bundle_path: str | None = None
    timeout_s: float = Field(default=30, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    user_agent: str = "cdr_assets"
    recording_concurrency: int = Field(default=4, ge=1, le=64)
    recording_attempts: int = Field(default=3, ge=1, le=10)
    missing_rechecks: int = Field(
        default=3, ge=1, description="runs that look again for a recording the PBX called missing"
    )
    archive_recordings: bool = True
    schedule_lag_minutes: int = Field(default=120, ge=0, lt=24 * 60)
    schedule_rerun_days: int = Field(default=1, ge=0, le=31)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _PBX_NAME.match(value):
            raise ValueError(f"{value!r} must match [a-z0-9_]+ (it becomes the asset key prefix)")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Asia/Singapore)") from None
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | EnvRef) -> str | EnvRef:
        if isinstance(value, str) and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} must be an http(s) URL such as https://192.0.2.10:8088")
        return value.rstrip("/") if isinstance(value, str) else value

    def resource_settings(self) -> dict[str, Any]:
        """Fields shared by both vendor resources."""
        return {
            "pbx_name": self.name,
            "base_url": _value(self.base_url),
            "timezone": self.timezone,
            "verify_tls": self.verify_tls,
            "ca_bundle_path": self.ca_bundle_path,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "user_agent": self.user_agent,
            "download_concurrency": self.recording_concurrency,
        }


class YeastarPbxConfig(PbxConfigBase):
    """A Yeastar P-Series PBX (`/openapi/v1.0`, token auth)."""

    vendor: Literal["yeastar"]
    client_id: EnvRef
    client_secret: EnvRef

    _secrets_by_reference = field_validator("client_id", "client_secret", mode="before")(
        lambda value: _require_env_ref(value)
    )
    page_size: int = Field(default=1000, ge=1, le=10000)
    date_format: str | None = None
    clock: Literal[12, 24] | None = None

    def resource_settings(self) -> dict[str, Any]:
        return {
            **super().resource_settings(),
            "client_id": self.client_id.as_env_var(),
            "client_secret": self.client_secret.as_env_var(),
            "page_size": self.page_size,
            "date_format": self.date_format,
            "clock": self.clock,
        }


class ZorioPbxConfig(PbxConfigBase):
    """A Zorio PBX (`/api/pbx/cdr`, bearer token)."""

    vendor: Literal["zorio"]
    api_token: EnvRef

    _secrets_by_reference = field_validator("api_token", mode="before")(
        lambda value: _require_env_ref(value)
    )
    per_page: int = Field(default=200, ge=1, le=200)
    max_window_days: int = Field(default=30, ge=1)
    query_timezone: str | None = None

    def resource_settings(self) -> dict[str, Any]:
        return {
            **super().resource_settings(),
            "api_token": self.api_token.as_env_var(),
            "per_page": self.per_page,
            "max_window_days": self.max_window_days,
            "query_timezone": self.query_timezone,
        }


PbxConfig = Annotated[YeastarPbxConfig | ZorioPbxConfig, Field(discriminator="vendor")]


class CdrAssetsConfig(_Strict):
    """The whole config file."""

    storage: StorageConfig = StorageConfig()
    pbxs: list[PbxConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> CdrAssetsConfig:
        seen: set[str] = set()
        for index, pbx in enumerate(self.pbxs):
            if pbx.name in seen:
                raise ValueError(f"pbxs[{index}].name {pbx.name!r} is used twice")
            seen.add(pbx.name)
        return self


def _require_env_ref(value: Any) -> Any:
    """Secrets never sit in the config file itself: only `{env: NAME}` is accepted."""
    if isinstance(value, str):
        raise ValueError("secrets are given only by environment reference, e.g. {env: HQ_SECRET}")
    return value


def _value(value: str | EnvRef) -> str | dg.EnvVar:
    return value.as_env_var() if isinstance(value, EnvRef) else value


def _error_location(loc: tuple[int | str, ...]) -> str:
    """`('pbxs', 0, 'yeastar', 'timezone')` -> `pbxs[0].timezone` (drops union tags)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("yeastar", "zorio", "str", "EnvRef") or "[" in str(part):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def parse_config(data: Any, source: str = "config") -> CdrAssetsConfig:
    """Validate a loaded YAML document; errors name each wrong key."""
    try:
        return CdrAssetsConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{_error_location(error['loc'])}: {message}")
        unique = list(dict.fromkeys(problems))
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(unique)) from None


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH))


def load_config(path: str | os.PathLike[str] | None = None) -> CdrAssetsConfig:
    """Read and validate the config file (default: `$CDR_ASSETS_CONFIG` or ./cdr_assets.yaml)."""
    file = Path(path) if path is not None else config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {str(file)!r} not found (set {CONFIG_ENV_VAR} to its path)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    return parse_config(data, source=str(file))
