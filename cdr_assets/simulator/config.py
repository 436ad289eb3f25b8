"""Simulator settings: plain frozen dataclasses, every field defaulted.

Owns the knobs of the simulated PBXs (seed, volume, time zones, display format, credentials,
TTLs, page cache size) and the server-style switches that make them behave like production
servers (envelopes, JSON writing, order, recording delivery), plus `SERVER_STYLES`, the named
one-switch variations client tests run against, and `FleetPbxConfig`, one more PBX the same
server hosts under its own path prefix. It must not know HTTP or how records are generated.
Every switch is off by default: the default config serves what it always served.
"""

from __future__ import annotations

import dataclasses
import re
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
YEASTAR_ORDERS = ("asc", "desc")
RECORD_FILE_SUFFIXES = ("format", "wav")
ZORIO_ENVELOPES = ("minimal", "laravel")
ZORIO_DETAIL_RECORDINGS = ("object", "absent")
AUDIO_CONTENT_TYPES = ("audio", "octet-stream", "none")
VENDORS = ("yeastar", "zorio")
FLEET_PATH_PREFIX = "/pbx/"  # a fleet PBX <name> answers under /pbx/<name>/...
_FLEET_NAME = re.compile(r"^[a-z0-9_]+$")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, not {value!r}")


def _check_base_url(name: str, value: str | None) -> None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http(s):// base URL, not {value!r}")


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
    order: str = "asc"  # cdr/search and cdr/list: "asc" oldest first, "desc" newest first
    # system/information reports this date format (None: the real one) while cdr/search keeps
    # parsing only `date_format`: a PBX whose report and parser disagree
    reported_date_format: str | None = None
    end_time_exclusive: bool = False  # cdr/search end_time excludes its own second
    # record_file names end with the download format ("format") or always ".wav" ("wav": an
    # mp3 PBX serves MP3 bytes behind a .wav name)
    record_file_suffix: str = "format"

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)
        _check_choice("yeastar.date_format", self.date_format, YEASTAR_DATE_FORMATS)
        if self.clock not in (12, 24):
            raise ValueError("yeastar.clock must be 12 or 24")
        _check_choice("yeastar.recording_format", self.recording_format, RECORDING_FORMATS)
        if self.list_days < 1:
            raise ValueError("yeastar.list_days must be >= 1")
        _check_choice("yeastar.order", self.order, YEASTAR_ORDERS)
        if self.reported_date_format is not None:
            _check_choice(
                "yeastar.reported_date_format", self.reported_date_format, YEASTAR_DATE_FORMATS
            )
        _check_choice("yeastar.record_file_suffix", self.record_file_suffix, RECORD_FILE_SUFFIXES)

    @property
    def record_file_ext(self) -> str:
        """The extension CDR record_file names end with."""
        return "wav" if self.record_file_suffix == "wav" else self.recording_format


@dataclass(frozen=True)
class ZorioSimConfig:
    """The simulated Zorio PBX REST API."""

    timezone: str = "Asia/Ho_Chi_Minh"  # PBX-local zone: defines a day of calls
    date_timezone: str = "UTC"  # zone in which the server reads `from`/`to` dates
    api_token: str = "demo-token"
    link_ttl: int = 1800  # signed recording URL lifetime (s)
    max_window_days: int = 30  # (to - from).days must stay below this
    signing_key: str = "sim-signing-key"
    # list envelope: "minimal" (the page's 5 keys) or "laravel" (LengthAwarePaginator::toArray
    # written by PHP's json_encode: `\/`, `\uXXXX`; every Zorio JSON reply is then PHP-written)
    envelope: str = "minimal"
    # detail of a call with a recording: "object" (today) or "absent" (recording_available
    # true, no `recording` object; /recording still redirects to a working URL)
    detail_recording: str = "object"
    file_size_delta: int = 0  # detail recording.file_size is off by this many bytes
    recording_base_url: str | None = None  # signed URLs point here instead of the Host
    audio_redirect_base_url: str | None = None  # the signed audio URL 302s here (a CDN)

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)
        ZoneInfo(self.date_timezone)
        if self.max_window_days < 1:
            raise ValueError("zorio.max_window_days must be >= 1")
        _check_choice("zorio.envelope", self.envelope, ZORIO_ENVELOPES)
        _check_choice("zorio.detail_recording", self.detail_recording, ZORIO_DETAIL_RECORDINGS)
        _check_base_url("zorio.recording_base_url", self.recording_base_url)
        _check_base_url("zorio.audio_redirect_base_url", self.audio_redirect_base_url)


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulator serves is a pure function of this config (and the faults)."""

    seed: int = 1
    calls_per_day: int = 200
    recording_ratio: float = 0.7  # fraction of answered calls (talk > 0) with a recording
    page_cache_mb: int = 64  # LRU of rendered list pages (repeated windows are served from it)
    yeastar: YeastarSimConfig = field(default_factory=YeastarSimConfig)
    zorio: ZorioSimConfig = field(default_factory=ZorioSimConfig)
    pretty: bool = False  # both vendors' JSON bodies as PHP's JSON_PRETTY_PRINT (4 spaces)
    # undocumented keys in list envelopes (Zorio "meta", Yeastar "request_id") and in every
    # CDR record (a scalar, a null, a nested object and an array of objects)
    extra_keys: bool = False
    json_content_type: str = "application/json"  # Content-Type of every vendor JSON reply
    # audio replies: "audio" (audio/wav, audio/mpeg), "octet-stream", "none" (no header)
    audio_content_type: str = "audio"
    # A remote PBX's network: every request waits latency_ms plus a uniform 0..latency_jitter_ms
    # (seeded) before it is answered, each in its own thread so requests in flight overlap;
    # bandwidth_bytes_per_s (0: unlimited) caps how fast each response body is sent.
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    bandwidth_bytes_per_s: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.calls_per_day <= MAX_CALLS_PER_DAY:
            raise ValueError(f"calls_per_day must be in 0..{MAX_CALLS_PER_DAY}")
        if not 0.0 <= self.recording_ratio <= 1.0:
            raise ValueError("recording_ratio must be in [0, 1]")
        if self.page_cache_mb < 0:
            raise ValueError("page_cache_mb must be >= 0")
        if not self.json_content_type or "\n" in self.json_content_type:
            raise ValueError("json_content_type must be a non-empty header value")
        _check_choice("audio_content_type", self.audio_content_type, AUDIO_CONTENT_TYPES)
        for name in ("latency_ms", "latency_jitter_ms", "bandwidth_bytes_per_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

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


@dataclass(frozen=True)
class FleetPbxConfig:
    """One PBX of a simulated fleet: a vendor, served under `/pbx/<name>` on the same port.

    Its `config` is a whole `SimulatorConfig` of its own (seed, calls per day, network, and the
    vendor's sub-config: zone, credentials, display format); only the sub-config of `vendor`
    is used. PBXs of one vendor need different seeds, or their CDR ids would coincide.
    """

    name: str
    vendor: str
    config: SimulatorConfig = field(default_factory=SimulatorConfig)

    def __post_init__(self) -> None:
        if not _FLEET_NAME.match(self.name):
            raise ValueError(f"fleet PBX name {self.name!r} must match [a-z0-9_]+")
        _check_choice(f"fleet PBX {self.name!r}: vendor", self.vendor, VENDORS)

    @property
    def prefix(self) -> str:
        """The path every URL of this PBX starts with."""
        return f"{FLEET_PATH_PREFIX}{self.name}"

    @property
    def timezone(self) -> str:
        return getattr(self.config, self.vendor).timezone


def check_fleet(fleet: tuple[FleetPbxConfig, ...]) -> None:
    """Names unique; PBXs of one vendor on different seeds (distinct CDR ids)."""
    names: set[str] = set()
    seeds: dict[tuple[str, int], str] = {}
    for pbx in fleet:
        if pbx.name in names:
            raise ValueError(f"fleet PBX name {pbx.name!r} is used twice")
        names.add(pbx.name)
        other = seeds.setdefault((pbx.vendor, pbx.config.seed), pbx.name)
        if other != pbx.name:
            raise ValueError(
                f"fleet PBXs {other!r} and {pbx.name!r} are both {pbx.vendor} with seed "
                f"{pbx.config.seed}: their CDR ids would coincide; give each its own seed"
            )


# name -> `SimulatorConfig.with_overrides(**kwargs)` kwargs: each differs from the default in
# exactly one switch, so client tests parametrized over it pin one production behaviour each.
SERVER_STYLES: dict[str, dict[str, Any]] = {
    "default": {},
    "laravel": {"zorio": {"envelope": "laravel"}},
    "pretty": {"pretty": True},
    "extra_keys": {"extra_keys": True},
    "newest_first": {"yeastar": {"order": "desc"}},
    "charset": {"json_content_type": "application/json; charset=utf-8"},
}
