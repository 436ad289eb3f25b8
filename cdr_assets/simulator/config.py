"""Simulator settings: plain frozen dataclasses, every field defaulted.

Owns the knobs of the simulated PBXs (seed, volume, time zones, display format, credentials,
TTLs, page cache size). It must not know HTTP or how records are generated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

YEASTAR_DATE_FORMATS = (
    "MM/DD/YYYY",
    "DD/MM/YYYY",
    "YYYY/MM/DD",
    "MM-DD-YYYY",
    "DD-MM-YYYY",
    "YYYY-MM-DD",
)
RECORDING_FORMATS = ("wav", "mp3")
MAX_CALLS_PER_DAY = 10**7  # ids are day_ordinal * 10**7 + index


@dataclass(frozen=True)
class YeastarSimConfig:
    """The simulated Yeastar P-Series PBX (OpenAPI v1.0)."""

    timezone: str = "Asia/Singapore"
    date_format: str = "MM/DD/YYYY"  # PBX display format, one of YEASTAR_DATE_FORMATS
    clock: int = 24  # 24 or 12 (12 adds " AM"/" PM")
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    access_token_ttl: int = 1800
    refresh_token_ttl: int = 86400
    link_ttl: int = 1800  # download_resource_url lifetime (s)
    recording_format: str = "wav"  # "wav" or "mp3" (mp3: one concurrent download)
    max_tokens: int = 8  # live access tokens per app (Cloud Edition rule)
    max_auth_failures: int = 5  # consecutive get_token failures before the IP is blocked
    list_days: int = 3  # cdr/list and recording/list cover the last N PBX-local days

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)
        if self.date_format not in YEASTAR_DATE_FORMATS:
            raise ValueError(f"yeastar.date_format must be one of {YEASTAR_DATE_FORMATS}")
        if self.clock not in (12, 24):
            raise ValueError("yeastar.clock must be 12 or 24")
        if self.recording_format not in RECORDING_FORMATS:
            raise ValueError(f"yeastar.recording_format must be one of {RECORDING_FORMATS}")
        if self.list_days < 1:
            raise ValueError("yeastar.list_days must be >= 1")


@dataclass(frozen=True)
class ZorioSimConfig:
    """The simulated Zorio PBX REST API."""

    timezone: str = "Asia/Ho_Chi_Minh"  # PBX-local zone: defines a day of calls
    date_timezone: str = "UTC"  # zone in which the server reads `from`/`to` dates
    api_token: str = "demo-token"
    link_ttl: int = 1800  # signed recording URL lifetime (s)
    max_window_days: int = 30  # (to - from).days must stay below this
    signing_key: str = "sim-signing-key"

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)
        ZoneInfo(self.date_timezone)
        if self.max_window_days < 1:
            raise ValueError("zorio.max_window_days must be >= 1")


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulator serves is a pure function of this config (and the faults)."""

    seed: int = 1
    calls_per_day: int = 200
    recording_ratio: float = 0.7  # fraction of answered calls (talk > 0) with a recording
    page_cache_mb: int = 64  # LRU of rendered list pages (repeated windows are served from it)
    yeastar: YeastarSimConfig = field(default_factory=YeastarSimConfig)
    zorio: ZorioSimConfig = field(default_factory=ZorioSimConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.calls_per_day <= MAX_CALLS_PER_DAY:
            raise ValueError(f"calls_per_day must be in 0..{MAX_CALLS_PER_DAY}")
        if not 0.0 <= self.recording_ratio <= 1.0:
            raise ValueError("recording_ratio must be in [0, 1]")
        if self.page_cache_mb < 0:
            raise ValueError("page_cache_mb must be >= 0")

    def with_overrides(self, **overrides: Any) -> SimulatorConfig:
        """Copy with top-level fields replaced; `yeastar`/`zorio` may be dicts of overrides."""
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in ("yeastar", "zorio") and isinstance(value, dict):
                value = dataclasses.replace(getattr(self, key), **value)
            elif key not in {f.name for f in dataclasses.fields(self)}:
                raise TypeError(f"unknown simulator config field: {key}")
            changes[key] = value
        return dataclasses.replace(self, **changes)
