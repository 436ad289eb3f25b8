"""The `cdr_assets.yaml` file: parsing, validation and secret references.

Owns the shape of the config file (DESIGN.md) and turns `{env: NAME}` (or its `dg` template
spelling `'{{ env.NAME }}'`) into `dg.EnvVar(NAME)` so secrets are resolved by Dagster at run
launch and never stored, and the key-named lines a validation error is reported as
(`config_problems`, shared with the `dg` Component). It must not open network connections or
files other than the config itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cdr_assets.errors import ConfigError
from cdr_assets.vendors.links import parse_host_entry

CONFIG_ENV_VAR = "CDR_ASSETS_CONFIG"
DEFAULT_CONFIG_PATH = "./cdr_assets.yaml"
_PBX_NAME = re.compile(r"^[a-z0-9_]+$")
DEFAULT_STATE_DIR = "./data/.state"
#: Most list pages a PBX is asked for at once: beyond this a value is a typo, not tuning.
MAX_INFLIGHT_REQUESTS = 32
# `{{ env.NAME }}` / `{{ env('NAME') }}`: how a `dg` defs.yaml writes `{env: NAME}`.
_ENV_TEMPLATE = re.compile(
    r"""^\s*\{\{\s*env(?:\.([A-Za-z_]\w*)|\(\s*['"]([A-Za-z_]\w*)['"]\s*\))\s*\}\}\s*$"""
)
# Parts of a pydantic error location that name a union member, not a key of the document.
_UNION_TAGS = frozenset({"yeastar", "zorio", "str", "EnvRef"})


def env_template_name(value: object) -> str | None:
    """`'{{ env.HQ_SECRET }}'` -> `'HQ_SECRET'`; anything else (a literal, another template)
    -> None, so only a whole-value reference is ever taken for one."""
    match = _ENV_TEMPLATE.match(value) if isinstance(value, str) else None
    return (match.group(1) or match.group(2)) if match else None


class EnvRef(BaseModel):
    """A secret given by environment variable name: `{env: HQ_CLIENT_SECRET}`."""

    model_config = ConfigDict(extra="forbid")
    env: str = Field(min_length=1)

    def as_env_var(self) -> dg.EnvVar:
        return dg.EnvVar(self.env)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordingsAuditConfig(_Strict):
    """How the scheduled `recordings_audit` check re-reads the archive against its manifest."""

    sample: int | Literal["all"] = Field(
        default=200,
        description="archived files re-read per run, chosen at random (seeded by the run) and "
        "spread over every day in range; 'all' re-reads each one",
    )
    days: int | Literal["all"] = Field(
        default=30,
        description="local days audited, ending with the day before the run; 'all' audits the "
        "whole archive",
    )
    cron: str | None = Field(
        default="0 3 * * 0",
        description="when the audit runs, in the PBX's time zone (default Sundays 03:00); "
        "null: no schedule, the check runs only when launched",
    )

    @field_validator("sample", "days", mode="before")
    @classmethod
    def _count_or_all(cls, value: Any) -> Any:
        """One message for both spellings, instead of one per member of the union."""
        if value == "all":
            return value
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"must be a whole number of at least 1, or 'all' (got {value!r})")
        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:  # Dagster's own parser decides what a schedule accepts
            dg.ScheduleDefinition(name="recordings_audit", cron_schedule=value, job_name="audit")
        except dg.DagsterInvalidDefinitionError:
            raise ValueError(
                f"{value!r} is not a cron expression of 5 fields (e.g. '0 3 * * 0')"
            ) from None
        return value

    def merged(self, override: RecordingsAuditConfig | None) -> RecordingsAuditConfig:
        """These settings with the keys `override` sets (a PBX's own block) taking precedence."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class StorageConfig(_Strict):
    """Where Parquet, the DuckDB file and the recording archive live."""

    data_dir: str = Field(
        default="./data",
        description="local path or fsspec URL (s3://bucket/prefix) of the Parquet tree; object "
        "storage is reached with the standard variables of the environment (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL), never with keys in this file",
    )
    duckdb_path: str = "./data/cdr.duckdb"
    recordings_dir: str = "./data/recordings"
    recordings_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for recordings_dir, e.g. {client_kwargs: {endpoint_url: "
        "...}} for an S3-compatible store; credentials come from the environment",
    )
    state_dir: str = Field(
        default="",
        description="local directory of state shared by runs and processes (the auth breaker "
        "that keeps a refused credential from being retried); never a URL. Default: "
        "<data_dir>/.state when data_dir is local, else ./data/.state",
    )
    recordings_audit: RecordingsAuditConfig = Field(
        default_factory=RecordingsAuditConfig,
        description="defaults of every PBX's recordings_audit check (sample, days, cron)",
    )

    @model_validator(mode="after")
    def _local_state_dir(self) -> StorageConfig:
        if not self.state_dir.strip():
            local = "://" not in self.data_dir
            self.state_dir = f"{self.data_dir.rstrip('/')}/.state" if local else DEFAULT_STATE_DIR
        elif "://" in self.state_dir:
            raise ValueError(
                f"state_dir {self.state_dir!r} must be a local directory path (the auth breaker "
                "locks files in it)"
            )
        return self


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
    recordings_audit: RecordingsAuditConfig | None = Field(
        default=None,
        description="this PBX's recordings_audit keys (sample, days, cron), over storage's",
    )
    schedule_lag_minutes: int = Field(default=120, ge=0, lt=24 * 60)
    schedule_rerun_days: int = Field(default=1, ge=0, le=31)
    freshness_grace_minutes: int = Field(
        default=120,
        ge=0,
        description="the assets are stale when the closed day was not materialized by the "
        "schedule's tick plus this long",
    )
    pbx_lock_timeout_minutes: float = Field(
        default=240,
        gt=0,
        description="how long a run waits for another live run of the same PBX before failing",
    )
    auth_cooldown_minutes: float = Field(
        default=60,
        gt=0,
        description="minutes a refused credential is not tried again (unless it changes)",
    )
    retry_after_max_s: float = Field(
        default=60,
        gt=0,
        description="longest Retry-After waited for; a longer one fails the request at once",
    )
    pool: str = Field(
        default="",
        description="Dagster concurrency pool of the PBX's step (default 'cdr_assets/<name>'). "
        "A pool has no limit until one is set, e.g. `dagster instance concurrency set "
        "cdr_assets/hq 1` or dagster.yaml's concurrency.pools.default_limit (each PBX's pool "
        "then gets that limit of its own); PBXs given one pool share its limit",
    )
    recording_hosts: list[str] = Field(
        default_factory=list,
        description="hosts ('host' or 'host:port') besides base_url's that recording links "
        "may lead to, e.g. the vendor's storage",
    )

    completeness_passes: int = Field(
        default=3,
        ge=1,
        le=10,
        description="passes over a query window (each from page 1) before its completeness "
        "check fails: a pass counts when its total held still and its distinct CDR ids equal it",
    )
    on_bad_record: Literal["quarantine", "fail"] = Field(
        default="quarantine",
        description="a record that cannot be normalized goes to cdr_rejects (the day's other "
        "CDRs land and a check fails) or fails the day",
    )
    max_rejected_records: int = Field(
        default=1000,
        ge=0,
        description="more rejected records than this in one batch fail the day: a format change, "
        "not a stray record",
    )

    def audit_settings(self, storage: StorageConfig) -> RecordingsAuditConfig:
        """The PBX's `recordings_audit` settings: its own keys, else storage's, else defaults."""
        return storage.recordings_audit.merged(self.recordings_audit)

    @field_validator("recording_hosts")
    @classmethod
    def _check_recording_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_host_entry(entry)
        return value

    @model_validator(mode="after")
    def _deadline_within_the_day(self) -> PbxConfigBase:
        if not 1 <= self.schedule_lag_minutes + self.freshness_grace_minutes < 24 * 60:
            raise ValueError(
                "schedule_lag_minutes + freshness_grace_minutes must be 1..1439 (the freshness "
                "deadline is a time of the local day after midnight)"
            )
        return self

    @model_validator(mode="after")
    def _pool_of_its_own(self) -> PbxConfigBase:
        if not self.pool.strip():
            self.pool = f"cdr_assets/{self.name}"
        elif any(char.isspace() for char in self.pool):
            raise ValueError(f"pool {self.pool!r} must not contain whitespace (a Dagster pool)")
        return self

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

    @field_validator("base_url", mode="before")
    @classmethod
    def _base_url_template_is_a_reference(cls, value: Any) -> Any:
        name = env_template_name(value)
        return {"env": name} if name else value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | EnvRef) -> str | EnvRef:
        if isinstance(value, str) and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} must be an http(s) URL such as https://192.0.2.10:8088")
        return value.rstrip("/") if isinstance(value, str) else value

    def resource_settings(self, storage: StorageConfig | None = None) -> dict[str, Any]:
        """Fields shared by both vendor resources. The auth breaker keeps its state in
        `storage.state_dir`; without `storage`, in the resource's process only."""
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
            "retry_after_max_s": self.retry_after_max_s,
            "recording_hosts": list(self.recording_hosts),
            "auth_state_dir": storage.state_dir if storage is not None else None,
            "auth_cooldown_minutes": self.auth_cooldown_minutes,
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
    max_inflight_requests: int = Field(default=2, ge=1, le=MAX_INFLIGHT_REQUESTS)
    date_format: str | None = None
    clock: Literal[12, 24] | None = None
    verify_clock: bool = True
    window_overlap_minutes: int = Field(default=60, ge=1, le=720)
    recording_format: Literal["auto", "wav", "mp3"] = "auto"

    def resource_settings(self, storage: StorageConfig | None = None) -> dict[str, Any]:
        return {
            **super().resource_settings(storage),
            "client_id": self.client_id.as_env_var(),
            "client_secret": self.client_secret.as_env_var(),
            "page_size": self.page_size,
            "max_inflight_requests": self.max_inflight_requests,
            "date_format": self.date_format,
            "clock": self.clock,
            "verify_clock": self.verify_clock,
            "window_overlap_minutes": self.window_overlap_minutes,
            "recording_format": self.recording_format,
        }


class ZorioPbxConfig(PbxConfigBase):
    """A Zorio PBX (`/api/pbx/cdr`, bearer token)."""

    vendor: Literal["zorio"]
    api_token: EnvRef

    _secrets_by_reference = field_validator("api_token", mode="before")(
        lambda value: _require_env_ref(value)
    )
    per_page: int = Field(default=200, ge=1, le=200)
    max_inflight_requests: int = Field(default=4, ge=1, le=MAX_INFLIGHT_REQUESTS)
    max_window_days: int = Field(default=30, ge=1)
    query_timezone: str | None = None

    def resource_settings(self, storage: StorageConfig | None = None) -> dict[str, Any]:
        return {
            **super().resource_settings(storage),
            "api_token": self.api_token.as_env_var(),
            "per_page": self.per_page,
            "max_inflight_requests": self.max_inflight_requests,
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
    """Secrets never sit in the config file itself: only `{env: NAME}` or `'{{ env.NAME }}'`."""
    if isinstance(value, str):
        name = env_template_name(value)
        if name is None:
            raise ValueError(
                "secrets are given only by environment reference, e.g. {env: HQ_SECRET} or "
                "'{{ env.HQ_SECRET }}'"
            )
        return {"env": name}
    return value


def _value(value: str | EnvRef) -> str | dg.EnvVar:
    return value.as_env_var() if isinstance(value, EnvRef) else value


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config document: the key path into it and what is wrong there."""

    #: Keys and list indexes from the document's root, e.g. `('pbxs', 0, 'timezone')`.
    path: tuple[str | int, ...]
    message: str

    @property
    def where(self) -> str:
        """`pbxs[0].timezone`, or `(top level)` for the document itself."""
        text = ""
        for part in self.path:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                text += f".{part}" if text else part
        return text or "(top level)"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def config_problems(exc: ValidationError) -> list[ConfigProblem]:
    """Each distinct error of a validation of `CdrAssetsConfig` (or a part of it), located by
    document keys: union members (`yeastar`, `str`, `function-after[...]`) are dropped, and a
    wrong `vendor` points at that key. Messages never carry the offending input (a secret)."""
    problems: dict[ConfigProblem, None] = {}
    for error in exc.errors():
        path = tuple(
            part
            for part in error["loc"]
            if isinstance(part, int) or (part not in _UNION_TAGS and "[" not in part)
        )
        if error["type"] == "union_tag_invalid":
            path += (str(error.get("ctx", {}).get("discriminator", "")).strip("'"),)
        message = error["msg"].removeprefix("Value error, ")
        problems[ConfigProblem(path, message)] = None
    return list(problems)


def parse_config(data: Any, source: str = "config") -> CdrAssetsConfig:
    """Validate a loaded YAML document; errors name each wrong key."""
    try:
        return CdrAssetsConfig.model_validate(data)
    except ValidationError as exc:
        lines = "\n  ".join(str(problem) for problem in config_problems(exc))
        raise ConfigError(f"{source} is invalid:\n  {lines}") from None


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
