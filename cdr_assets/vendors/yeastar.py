"""Yeastar P-Series OpenAPI v1.0 client: tokens, display format, `cdr/search` paging, recordings.

This module owns what the Yeastar endpoints mean (research/yeastar-p-series.md): the token
life cycle (cache, refresh before expiry, one re-authentication on 10004, never a get_token loop:
token POSTs are sent at most once and a refusal opens the auth breaker, `auth_breaker.py`),
errors carried as `errcode` in HTTP 200 bodies (and which of them a retry can help), window
strings in the PBX's display format, paging against `total_number`, and the two-step recording
download (the token only on the API host). The common settings, session
lifecycle and request plumbing are `PbxResource`'s (`resource.py`), transport (retries,
redaction) is `transport.py`'s; records are returned exactly as sent (normalization is
`cdr_assets.normalize`'s job).
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any, ClassVar, Literal, NoReturn, TypeVar, cast
from urllib.parse import urlencode, urljoin
from zoneinfo import ZoneInfo

import dagster as dg
import orjson
import requests
from pydantic import Field, field_validator

from cdr_assets.errors import PbxApiError, PbxAuthError, RecordingLinkExpired, RecordingMissing
from cdr_assets.records import CdrPage, JsonRecords
from cdr_assets.vendors.auth_breaker import AuthAttempt
from cdr_assets.vendors.base import (
    CdrFetch,
    CdrWindow,
    FetchedPage,
    PassTotals,
    RecordingStream,
    split_record_array,
)
from cdr_assets.vendors.paging import PageAnswer, fetch_pages_in_order
from cdr_assets.vendors.resource import PbxResource, PbxRuntime, is_count
from cdr_assets.vendors.transport import redact_text

logger = dg.get_dagster_logger(__name__)

#: What a call's reader makes of the answer besides its JSON object (e.g. its unparsed records).
_Extra = TypeVar("_Extra")

ERRCODE_TOKEN_EXPIRED = 10004
ERRCODE_DATA_NOT_FOUND = 60001
#: Auth errcodes that mean "stop trying from this IP/app", with what the operator should do.
AUTH_ERRCODE_HINTS: dict[int, str] = {
    70004: (
        "ACCOUNT IP BLOCKED: the PBX blocked this client's IP after repeated authentication "
        "failures; fix client_id/client_secret, then unblock the IP in the PBX web UI "
        "(Security > Security Rules > Blocked IPs)"
    ),
    70087: (
        "IP FORBIDDEN: this client's IP is not allowed to use the API; add it to the PBX's "
        "API IP allowlist (Integrations > API)"
    ),
    60002: (
        "MAX LIMITATION EXCEEDED: the app holds the maximum number of valid access tokens "
        "(8 on Cloud Edition); wait for tokens to expire (30 min) or revoke them (del_token)"
    ),
    10005: "ACCESS DENIED: the API app lacks a permission this client needs",
}
#: Refresh errcodes after which a get_token is pointless (and would count towards an IP block).
_NO_FALLBACK_ERRCODES = frozenset({70004, 70087, 60002})
#: Errcodes of a server in trouble, which a later attempt may not get (INTERNAL SERVER ERROR,
#: OVERLOAD_TASK_RUNNING); every other errcode is an answer that will not change on retry
#: (40001/40002 parameter errors, 10001-10003 wrong interface or API version, ...).
TRANSIENT_ERRCODES = frozenset({-2, 70082})

#: How download paths are named in messages (the path itself is a capability).
DOWNLOAD_ENDPOINT_LABEL = "/api/download/..."

#: Documented lifetimes, used when a token response omits them.
DEFAULT_ACCESS_TTL_S = 1800
DEFAULT_REFRESH_TTL_S = 86400

_DATE_TOKENS = {"YYYY": "%Y", "MM": "%m", "DD": "%d"}
_DATE_FORMAT_RE = re.compile(r"^(YYYY|MM|DD)([/-])(YYYY|MM|DD)\2(YYYY|MM|DD)$")
_MERIDIEM_RE = re.compile(r"(?i)\s*(AM|PM|A)\s*$")
_MERIDIEM_END = re.compile(r"(?i)\s+(AM|PM)$")
#: Every display format a P-Series PBX offers (date order and separator, 12- or 24-hour clock).
DISPLAY_DATE_FORMATS = (
    "MM/DD/YYYY",
    "DD/MM/YYYY",
    "YYYY/MM/DD",
    "MM-DD-YYYY",
    "DD-MM-YYYY",
    "YYYY-MM-DD",
)


def date_pattern_for(display_date_format: str) -> str:
    """strftime pattern of a Yeastar date display format: "MM/DD/YYYY" -> "%m/%d/%Y".

    Accepts YYYY, MM and DD once each, in any order, separated by "/" or "-" (case-insensitive).
    Raises ValueError otherwise.
    """
    match = _DATE_FORMAT_RE.match(display_date_format.strip().upper())
    if not match or len({match.group(1), match.group(3), match.group(4)}) != 3:
        raise ValueError(
            f"unsupported Yeastar date display format {display_date_format!r}: expected YYYY, MM "
            "and DD separated by '/' or '-' (e.g. 'MM/DD/YYYY', 'YYYY-MM-DD')"
        )
    sep = match.group(2)
    return sep.join(_DATE_TOKENS[match.group(i)] for i in (1, 3, 4))


def clock_from_system_information(system_time_format: str | None, system_time: str | None) -> int:
    """12 if the PBX shows a meridiem (trailing AM/PM in `system_time` or the format), else 24.

    The format alone is not enough: the vendor's own example pairs "hh:mm:ss" with a 24-hour
    `system_time`, so "hh" does not imply a 12-hour clock.
    """
    for text in (system_time, system_time_format):
        if isinstance(text, str) and _MERIDIEM_RE.search(text):
            return 12
    return 24


@dataclass(frozen=True)
class YeastarDisplayFormat:
    """The PBX's date/time display format, which `cdr/search` window strings must follow."""

    date_format: str  # as the PBX names it, e.g. "MM/DD/YYYY"
    clock: int  # 12 or 24

    @property
    def strftime_pattern(self) -> str:
        """e.g. "%m/%d/%Y %H:%M:%S" or "%Y/%m/%d %I:%M:%S %p"."""
        time_part = "%I:%M:%S %p" if self.clock == 12 else "%H:%M:%S"
        return f"{date_pattern_for(self.date_format)} {time_part}"

    def parse_wall_time(self, text: str) -> datetime | None:
        """A wall-clock time shown in this format, naive; None when `text` is not in it."""
        text = text.strip()
        meridiem = _MERIDIEM_END.search(text) if self.clock == 12 else None
        if self.clock == 12:
            if meridiem is None:
                return None
            text = text[: meridiem.start()]
        try:
            wall = datetime.strptime(text, f"{date_pattern_for(self.date_format)} %H:%M:%S")
        except ValueError:
            return None
        if meridiem is not None:
            if not 1 <= wall.hour <= 12:
                return None
            wall = wall.replace(hour=wall.hour % 12 + (12 if meridiem[1].upper() == "PM" else 0))
        return wall

    def __str__(self) -> str:
        time_part = "hh:mm:ss AM/PM" if self.clock == 12 else "HH:mm:ss"
        return f"{self.date_format} {time_part}"

    def format_wall_time(self, wall: datetime) -> str:
        """Format a naive PBX-local wall-clock time (AM/PM independent of the process locale)."""
        day = wall.strftime(date_pattern_for(self.date_format))
        if self.clock == 12:
            hour12 = wall.hour % 12 or 12
            meridiem = "AM" if wall.hour < 12 else "PM"
            return f"{day} {hour12:02d}:{wall.minute:02d}:{wall.second:02d} {meridiem}"
        return f"{day} {wall.hour:02d}:{wall.minute:02d}:{wall.second:02d}"


def check_system_clock(
    system_time: str,
    timestamp: int,
    display: YeastarDisplayFormat,
    timezone: str,
    *,
    tolerance_s: float = 120,
) -> str | None:
    """Why `system/information`'s `system_time`, read in `display` and `timezone`, is not the
    instant of its `timestamp` (None when it is, within `tolerance_s`).

    `cdr/search` reads its window strings the same way, so a wrong display format returns
    nothing ("will not return any CDR records") and a wrong zone shifts the window; this says
    which of the two is wrong, with the values seen.
    """
    zone = ZoneInfo(timezone)

    def fits(fmt: YeastarDisplayFormat) -> bool:
        wall = fmt.parse_wall_time(system_time)
        return wall is not None and any(
            abs(wall.replace(tzinfo=zone, fold=fold).timestamp() - timestamp) <= tolerance_s
            for fold in (0, 1)
        )

    if fits(display):
        return None
    others = [
        fmt
        for fmt in (YeastarDisplayFormat(d, c) for d in DISPLAY_DATE_FORMATS for c in (24, 12))
        if fmt != display and fits(fmt)
    ]
    instant = datetime.fromtimestamp(timestamp, UTC)
    seen = f"system_time {system_time!r}, timestamp {timestamp} ({instant:%Y-%m-%d %H:%M:%S}Z)"
    if others:
        return (
            f"the display format is wrong: {seen} read as {display} does not give that instant, "
            f"read as {others[0]} it does; set date_format/clock to match the PBX "
            "(System > Date and Time > Display Format) or leave them unset to use its report"
        )
    wall = display.parse_wall_time(system_time)
    if wall is None:
        return (
            f"the display format is wrong: {seen} is not in the format {display}; set "
            "date_format/clock to match the PBX (System > Date and Time > Display Format)"
        )
    pbx_offset = wall - instant.replace(tzinfo=None)
    zone_offset = instant.astimezone(zone).utcoffset() or timedelta(0)
    return (
        f"the time zone is wrong: {seen} read as {display} in {timezone} (UTC"
        f"{_offset_text(zone_offset)} then) is {_offset_text(pbx_offset - zone_offset)} off; "
        f"the PBX clock runs at UTC{_offset_text(pbx_offset)}. Set timezone to the PBX's own "
        "zone (System > Date and Time)"
    )


def _offset_text(offset: timedelta) -> str:
    """`+07:00`, `-03:30`, `+00:00` (to the minute)."""
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


@dataclass(frozen=True)
class YeastarRecordingLink:
    """A minted `download_resource_url`, valid 30 minutes: a path on the PBX as documented, or
    an absolute URL (then followed only to the PBX's host or a `recording_hosts` entry)."""

    path: str
    file_name: str | None
    label: str  # what to call it in messages: the record_file, or "recording id N"

    def __repr__(self) -> str:  # the path is a capability: keep it out of reprs and logs
        return f"YeastarRecordingLink(file_name={self.file_name!r}, label={self.label!r})"


@dataclass
class _Tokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    renew_access_at: float  # monotonic; renew from here on
    refresh_usable_until: float  # monotonic


class _YeastarRuntime(PbxRuntime):
    """Per-resource-instance state: session, token cache, display format, MP3 slot."""

    def __init__(self, session: requests.Session) -> None:
        super().__init__(session)
        self.token_lock = threading.Lock()
        self.tokens: _Tokens | None = None
        self.display_lock = threading.Lock()
        self.display: YeastarDisplayFormat | None = None
        self.mp3_slot = threading.Semaphore(1)
        self.download_format: str | None = None  # learned from this session's downloads
        self.slow_pages_noted = False


class YeastarResource(PbxResource):
    """Yeastar P-Series PBX (OpenAPI v1.0): CDRs via `cdr/search` and recording downloads.

    Holds one access token per resource instance (refreshed before expiry, rotated with the
    refresh token), so a run never loops on `get_token`: a refused `get_token` raises
    `PbxAuthError` at once and opens the auth breaker (five failures block the client's IP), so
    later runs and processes fail fast too until the credential changes or the cool-down ends.

    Example:
        ```python
        import datetime as dt

        import dagster as dg

        from cdr_assets.vendors import YeastarResource


        @dg.asset
        def yesterday_cdr_count(yeastar: YeastarResource) -> int:
            day = dt.date.today() - dt.timedelta(days=1)
            fetch = yeastar.fetch_cdrs(day, day)
            return sum(len(page) for page in fetch.pages())


        defs = dg.Definitions(
            assets=[yesterday_cdr_count],
            resources={
                "yeastar": YeastarResource(
                    pbx_name="hq",
                    base_url="https://192.0.2.10:8088",
                    client_id=dg.EnvVar("HQ_CLIENT_ID"),
                    client_secret=dg.EnvVar("HQ_CLIENT_SECRET"),
                    timezone="Asia/Singapore",
                )
            },
        )
        ```
    """

    vendor: ClassVar[str] = "yeastar"

    client_id: str = Field(description="Client ID of the PBX API app (Integrations > API).")
    client_secret: str = Field(
        repr=False,
        description="Client Secret of the PBX API app. Pass it as dg.EnvVar; never logged.",
    )
    api_path: str = Field(default="openapi/v1.0", description="API prefix below base_url.")
    page_size: int = Field(
        default=1000, ge=1, le=10000, description="Records per cdr/search page (1..10000)."
    )
    max_inflight_requests: int = Field(
        default=2,
        ge=1,
        description="cdr/search pages of a window requested at once once its first page gave "
        "the total (in page order into the normalizer; 1 = one at a time). Lower than Zorio's: "
        "a P-Series PBX is a small appliance that also carries the calls.",
    )
    date_format: str | None = Field(
        default=None,
        description="Override of the PBX date display format, e.g. 'MM/DD/YYYY' or "
        "'YYYY-MM-DD'; None reads it from system/information.",
    )
    clock: int | None = Field(
        default=None,
        description="Override of the PBX clock: 12 or 24; None detects it from "
        "system/information (a trailing AM/PM means 12).",
    )
    window_overlap_minutes: int = Field(
        default=60,
        ge=1,
        le=720,
        description="cdr/search windows start this long before the local day and end this long "
        "after it; rows are assigned to days by their instant, so an exclusive end_time or a "
        "DST change at midnight cannot drop a call.",
    )
    verify_clock: bool = Field(
        default=True,
        description="Before the first CDR query, check that system/information's system_time, "
        "read in the display format and timezone, is its timestamp (fails naming which is "
        "wrong). Without it an empty day cannot be told from a wrong format.",
    )
    clock_tolerance_s: float = Field(
        default=120, gt=0, description="Allowed difference in the clock check, seconds."
    )
    recording_format: Literal["auto", "wav", "mp3"] = Field(
        default="auto",
        description="The PBX's recording download format (PBX web > Recording settings): mp3 "
        "downloads go one at a time (the PBX serves one at once), wav ones concurrently; auto "
        "keeps them one at a time until the first download shows the format.",
    )
    token_refresh_margin_s: int = Field(
        default=120,
        ge=0,
        description="Refresh the access token this many seconds before it expires (at most "
        "half its lifetime).",
    )

    @field_validator("api_path")
    @classmethod
    def _check_api_path(cls, value: str) -> str:
        return value.strip().strip("/")

    @field_validator("date_format")
    @classmethod
    def _check_date_format(cls, value: str | None) -> str | None:
        if value is not None:
            date_pattern_for(value)
        return value

    @field_validator("clock")
    @classmethod
    def _check_clock(cls, value: int | None) -> int | None:
        if value not in (None, 12, 24):
            raise ValueError("clock must be 12, 24 or None (detect)")
        return value

    # ----------------------------------------------------------------- lifecycle

    def _new_runtime(self, session: requests.Session) -> _YeastarRuntime:
        return _YeastarRuntime(session)

    def _credential(self) -> tuple[str, ...]:
        return (self.client_id, self.client_secret)

    def _send_once_url_prefixes(self) -> tuple[str, ...]:
        """The token POSTs: a repeated get_token can orphan tokens against the PBX's cap."""
        return (self._url("get_token"), self._url("refresh_token"))

    def _runtime(self) -> _YeastarRuntime:
        return cast(_YeastarRuntime, super()._runtime())

    def _before_close(self, runtime: PbxRuntime) -> None:
        """Revoke the cached access token: it frees a slot under the PBX's token cap."""
        state = cast(_YeastarRuntime, runtime)
        with state.token_lock:
            tokens, state.tokens = state.tokens, None
        if tokens is not None:
            self._revoke_access_token(tokens.access_token)

    def _revoke_access_token(self, access_token: str) -> None:
        url = self._url("del_token", {"access_token": access_token})
        try:
            self._send("GET", url, endpoint=self._endpoint("del_token")).close()
        except PbxApiError:
            logger.debug("PBX %r: del_token failed; the token expires on its own", self.pbx_name)

    # ----------------------------------------------------------------- plumbing

    def _endpoint(self, name: str) -> str:
        return f"/{self.api_path}/{name}"

    def _url(self, name: str, params: dict[str, Any] | None = None) -> str:
        return self._api_url(self._endpoint(name), params)

    def _read_json_object(self, endpoint: str, response: requests.Response) -> dict[str, Any]:
        if response.status_code != 200:
            response.close()
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                "unexpected HTTP status (the API answers 200 with an errcode)",
                http_status=response.status_code,
            )
        return self._json_object(endpoint, response)

    def _errcode(self, endpoint: str, payload: dict[str, Any]) -> int:
        errcode = payload.get("errcode")
        if isinstance(errcode, str) and re.fullmatch(r"-?\d+", errcode.strip()):
            errcode = int(errcode)
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            raise PbxApiError(self.pbx_name, endpoint, "response has no integer 'errcode'")
        return errcode

    def _errmsg(self, payload: dict[str, Any]) -> str:
        errmsg = payload.get("errmsg")
        return redact_text(str(errmsg))[:200] if errmsg is not None else "(no errmsg)"

    def _post_token_endpoint(self, name: str, body: dict[str, str]) -> dict[str, Any]:
        endpoint = self._endpoint(name)
        response = self._send("POST", self._url(name), endpoint=endpoint, json=body)
        return self._read_json_object(endpoint, response)

    def _tokens_from(self, endpoint: str, payload: dict[str, Any], sent_at: float) -> _Tokens:
        access_token = payload.get("access_token")
        refresh_token = payload.get("refresh_token")
        if not isinstance(access_token, str) or not access_token:
            raise PbxApiError(self.pbx_name, endpoint, "token response has no 'access_token'")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise PbxApiError(self.pbx_name, endpoint, "token response has no 'refresh_token'")
        access_ttl = _positive_int(payload.get("access_token_expire_time"), DEFAULT_ACCESS_TTL_S)
        refresh_ttl = _positive_int(payload.get("refresh_token_expire_time"), DEFAULT_REFRESH_TTL_S)
        return _Tokens(
            access_token=access_token,
            refresh_token=refresh_token,
            renew_access_at=sent_at + access_ttl - self._margin(access_ttl),
            refresh_usable_until=sent_at + refresh_ttl - self._margin(refresh_ttl),
        )

    def _margin(self, ttl: int) -> float:
        return min(float(self.token_refresh_margin_s), ttl / 2)

    # ----------------------------------------------------------------- tokens

    def _access_token(self) -> str:
        """A valid access token: cached, refreshed near expiry, or newly obtained."""
        runtime = self._runtime()
        with runtime.token_lock:
            tokens = runtime.tokens
            if tokens is not None and time.monotonic() < tokens.renew_access_at:
                return tokens.access_token
            runtime.tokens = self._renew_tokens_locked(runtime)
            return runtime.tokens.access_token

    def _renew_tokens_locked(self, runtime: _YeastarRuntime) -> _Tokens:
        """Refresh or get new tokens under the auth breaker (fails fast while it is open)."""
        with self._auth_breaker().attempt() as attempt:
            tokens = runtime.tokens
            if tokens is not None and time.monotonic() < tokens.refresh_usable_until:
                refreshed = self._refresh_tokens_locked(attempt, tokens.refresh_token)
                if refreshed is not None:
                    return refreshed
            return self._get_token_locked(attempt)

    def _refresh_tokens_locked(self, attempt: AuthAttempt, refresh_token: str) -> _Tokens | None:
        """New tokens from `refresh_token`, or None when the PBX refused it (then get_token)."""
        endpoint = self._endpoint("refresh_token")
        sent_at = time.monotonic()
        payload = self._post_token_endpoint("refresh_token", {"refresh_token": refresh_token})
        errcode = self._errcode(endpoint, payload)
        if errcode == 0:
            attempt.accepted()
            return self._tokens_from(endpoint, payload, sent_at)
        if errcode in _NO_FALLBACK_ERRCODES:
            raise attempt.refused(
                PbxAuthError(self.pbx_name, endpoint, AUTH_ERRCODE_HINTS[errcode], errcode=errcode)
            )
        logger.info(
            "PBX %r: refresh_token refused (errcode %s); requesting a new token",
            self.pbx_name,
            errcode,
        )
        return None

    def _get_token_locked(self, attempt: AuthAttempt) -> _Tokens:
        endpoint = self._endpoint("get_token")
        sent_at = time.monotonic()
        payload = self._post_token_endpoint(
            "get_token", {"username": self.client_id, "password": self.client_secret}
        )
        errcode = self._errcode(endpoint, payload)
        if errcode != 0:
            hint = AUTH_ERRCODE_HINTS.get(
                errcode,
                "check client_id/client_secret; not retried automatically, because five "
                "failed attempts block this IP on the PBX",
            )
            raise attempt.refused(
                PbxAuthError(
                    self.pbx_name,
                    endpoint,
                    f"get_token refused ({self._errmsg(payload)}): {hint}",
                    errcode=errcode,
                )
            )
        attempt.accepted()
        logger.debug("PBX %r: obtained a new access token", self.pbx_name)
        return self._tokens_from(endpoint, payload, sent_at)

    def _invalidate_access_token(self, rejected: str) -> None:
        runtime = self._runtime()
        with runtime.token_lock:
            tokens = runtime.tokens
            if tokens is not None and tokens.access_token == rejected:
                tokens.renew_access_at = 0.0

    def _auth_refused(self, endpoint: str, errcode: int, errmsg: str) -> PbxAuthError:
        """An auth errcode on an ordinary call (IP blocked, IP forbidden, token cap, access
        denied): drop the tokens and open the breaker; returns the error to raise."""
        runtime = self._runtime()
        with runtime.token_lock:
            runtime.tokens = None
        hint = AUTH_ERRCODE_HINTS[errcode]
        error = PbxAuthError(self.pbx_name, endpoint, f"{errmsg}: {hint}", errcode=errcode)
        return self._auth_breaker().trip(error)

    # ----------------------------------------------------------------- API calls

    def _call(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET an API endpoint; returns the payload of errcode 0 or raises `PbxApiError`.

        A 10004 (TOKEN EXPIRED) answer re-authenticates once and repeats the call once; a second
        one is not transient, nor is any errcode but a server fault (`TRANSIENT_ERRCODES`). An
        auth errcode (`AUTH_ERRCODE_HINTS`) raises `PbxAuthError` and opens the auth breaker.
        """
        payload, _ = self._call_reading(
            name,
            params,
            lambda endpoint, response: (self._read_json_object(endpoint, response), None),
        )
        return payload

    def _call_reading(
        self,
        name: str,
        params: dict[str, Any] | None,
        read: Callable[[str, requests.Response], tuple[dict[str, Any], _Extra]],
    ) -> tuple[dict[str, Any], _Extra]:
        """`_call` with the answer read by `read(endpoint, response)`: (the JSON object whose
        errcode decides, anything else read from the same body)."""
        endpoint = self._endpoint(name)
        for attempt in (1, 2):
            token = self._access_token()
            url = self._url(name, {**(params or {}), "access_token": token})
            payload, extra = self._repeating_bad_bodies(
                endpoint,
                lambda url=url: read(endpoint, self._send("GET", url, endpoint=endpoint)),
            )
            errcode = self._errcode(endpoint, payload)
            if errcode == 0:
                return payload, extra
            if errcode == ERRCODE_TOKEN_EXPIRED and attempt == 1:
                logger.info(
                    "PBX %r: %s answered TOKEN EXPIRED; re-authenticating", self.pbx_name, endpoint
                )
                self._invalidate_access_token(token)
                continue
            message = self._errmsg(payload)
            if errcode in AUTH_ERRCODE_HINTS:
                raise self._auth_refused(endpoint, errcode, message)
            if errcode == ERRCODE_TOKEN_EXPIRED:
                message = f"{message}: token refused again right after re-authentication"
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                message,
                errcode=errcode,
                transient=errcode in TRANSIENT_ERRCODES,
            )
        raise AssertionError("unreachable")

    def system_information(self) -> dict[str, Any]:
        """`GET system/information` -> its `data` object (device, firmware, display format)."""
        endpoint = self._endpoint("system/information")
        data = self._call("system/information").get("data")
        if not isinstance(data, dict):
            raise PbxApiError(self.pbx_name, endpoint, "'data' is missing or not an object")
        return data

    def display_format(self) -> YeastarDisplayFormat:
        """The PBX's display format (the config overrides, else its report), checked once per
        client session against the PBX's own clock unless `verify_clock` is off."""
        runtime = self._runtime()
        with runtime.display_lock:
            if runtime.display is None:
                runtime.display = self._verified_display_format()
            return runtime.display

    def _verified_display_format(self) -> YeastarDisplayFormat:
        if not self.verify_clock and self.date_format is not None and self.clock is not None:
            return YeastarDisplayFormat(self.date_format, self.clock)
        endpoint = self._endpoint("system/information")
        info = self.system_information()
        display = self._display_format_from(info)
        logger.info("PBX %r: display format %s", self.pbx_name, display)
        if not self.verify_clock:
            return display
        system_time, timestamp = info.get("system_time"), info.get("timestamp")
        if not isinstance(system_time, str) or not is_count(timestamp):
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                "'data.system_time' (text) and 'data.timestamp' (epoch seconds) are needed to "
                "check the display format and timezone; set verify_clock: false to skip the "
                "check (an empty day is then not trusted)",
            )
        problem = check_system_clock(
            system_time, timestamp, display, self.timezone, tolerance_s=self.clock_tolerance_s
        )
        if problem is not None:
            raise PbxApiError(self.pbx_name, endpoint, problem)
        return display

    def _display_format_from(self, info: dict[str, Any]) -> YeastarDisplayFormat:
        """The configured overrides, else what `system/information` reports."""
        endpoint = self._endpoint("system/information")
        date_format = self.date_format
        if date_format is None:
            reported = info.get("system_date_format")
            if not isinstance(reported, str):
                raise PbxApiError(
                    self.pbx_name,
                    endpoint,
                    "'data.system_date_format' is missing; set date_format in the resource config",
                )
            try:
                date_pattern_for(reported)
            except ValueError as exc:
                raise PbxApiError(
                    self.pbx_name, endpoint, f"{exc}; set date_format in the resource config"
                ) from None
            date_format = reported
        clock = self.clock
        if clock is None:
            clock = clock_from_system_information(
                info.get("system_time_format"), info.get("system_time")
            )
        return YeastarDisplayFormat(date_format, clock)

    # ----------------------------------------------------------------- CDRs

    def fetch_cdrs(
        self,
        first_day: date,
        last_day: date,
        *,
        call_from: str | None = None,
        call_to: str | None = None,
        status: str | None = None,
    ) -> CdrFetch:
        """CDRs of the PBX-local days `first_day..last_day` via `cdr/search`, page by page.

        One window from `window_overlap_minutes` before `first_day` 00:00:00 to as long after
        `last_day` 23:59:59, in the PBX's display format (read from the PBX, and checked
        against its clock, on the first call unless configured); rows of the margins belong to
        other days and are assigned by their instant. Optional filters are passed through as
        given: `call_from`/`call_to` (numbers), `status` (ANSWERED, NO ANSWER, BUSY, FAILED or
        VOICEMAIL).
        """
        if first_day > last_day:
            raise ValueError(f"first_day {first_day} is after last_day {last_day}")
        display = self.display_format()
        overlap = timedelta(minutes=self.window_overlap_minutes)
        start_wall = datetime.combine(first_day, dtime(0, 0, 0)) - overlap
        end_wall = datetime.combine(last_day, dtime(23, 59, 59)) + overlap
        start, end = display.format_wall_time(start_wall), display.format_wall_time(end_wall)
        params: dict[str, Any] = {"start_time": start, "end_time": end}
        for key, value in (("call_from", call_from), ("call_to", call_to), ("status", status)):
            if value is not None:
                params[key] = value
        zone = ZoneInfo(self.timezone)
        folds = [
            (wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1))
            for wall in (start_wall, end_wall)
        ]
        window = CdrWindow(
            f"{start} .. {end}",
            functools.partial(self._iter_search_pages, params),
            start=min(folds[0], key=lambda t: t.timestamp()),
            end=max(folds[1], key=lambda t: t.timestamp()) + timedelta(seconds=1),
        )
        return CdrFetch(
            pbx=self.pbx_name,
            endpoint=self._endpoint("cdr/search"),
            windows=[window],
            query_verified=self.verify_clock,
        )

    def _iter_search_pages(
        self, params: dict[str, Any], totals: PassTotals
    ) -> Iterator[FetchedPage]:
        """One pass over a window: pages 1.. until `total_number` (as it stands on each page;
        it changes if CDRs land while the day is paged) is covered, or a page comes back
        empty, `max_inflight_requests` at once. The PBX's page order (oldest or newest first)
        does not matter."""
        return fetch_pages_in_order(
            functools.partial(self._search_page, params),
            totals,
            max_inflight=self.max_inflight_requests,
            pbx=self.pbx_name,
            endpoint=self._endpoint("cdr/search"),
        )

    def _search_page(self, params: dict[str, Any], page: int) -> PageAnswer:
        """Page `page` of a `cdr/search` window, checked."""
        endpoint = self._endpoint("cdr/search")
        payload, records = self._get_search_page(
            {**params, "page": page, "page_size": self.page_size}, page
        )
        total = payload.get("total_number")
        if not is_count(total):
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                f"page {page}: 'total_number' is missing or not a "
                f"non-negative integer (got {type(total).__name__})",
            )
        data: CdrPage | JsonRecords | None = (
            payload.get("data", [] if total == 0 else None) if records is None else records
        )
        if not isinstance(data, list | JsonRecords):
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                f"page {page}: 'data' is not a list (got {type(data).__name__})",
            )
        if isinstance(data, JsonRecords) and len(data) != self._page_records(total, page):
            # Not the count total_number implies: count exactly by parsing the page.
            data = self._parse_records(data)
        last_page = max(1, -(-total // self.page_size))
        final = not data or page * self.page_size >= total
        return PageAnswer(page, data, total, last_page, final)

    def _get_search_page(
        self, params: dict[str, Any], page: int
    ) -> tuple[dict[str, Any], JsonRecords | None]:
        """One `cdr/search` page through `_call`'s errcode and token handling: its envelope, and
        its records unparsed when the body allows (`split_record_array`, `data` emptied in the
        envelope); otherwise the whole body parsed, records in `data`."""
        return self._call_reading(
            "cdr/search", params, functools.partial(self._read_search_page, page)
        )

    def _read_search_page(
        self, page: int, endpoint: str, response: requests.Response
    ) -> tuple[dict[str, Any], JsonRecords | None]:
        split: tuple[dict[str, Any], JsonRecords] | str | None = None
        if response.status_code == 200:
            with contextlib.closing(response):
                split = split_record_array(response.content)
            if isinstance(split, tuple):
                return split
        payload = self._read_json_object(endpoint, response)
        if isinstance(split, str) and payload.get("data"):  # an errcode answer has no records
            self._note_slow_pages(endpoint, page, split)
        return payload, None

    def _page_records(self, total: int, page: int) -> int:
        """How many records page `page` holds when the window has `total` (the last is short)."""
        return max(min(self.page_size, total - (page - 1) * self.page_size), 0)

    def _note_slow_pages(self, endpoint: str, page: int, reason: str) -> None:
        """Say once per client session that pages take the slower dict path, and why."""
        runtime = self._runtime()
        if not runtime.slow_pages_noted:
            runtime.slow_pages_noted = True
            logger.info(
                "PBX %r: %s page %d could not be cut without parsing (%s); such pages are parsed "
                "whole, which is correct but slower",
                self.pbx_name,
                endpoint,
                page,
                reason,
            )

    def _parse_records(self, records: JsonRecords) -> CdrPage:
        try:
            return records.dicts()
        except orjson.JSONDecodeError:
            raise PbxApiError(
                self.pbx_name, self._endpoint("cdr/search"), "'data' is not valid JSON"
            ) from None

    # ----------------------------------------------------------------- recordings

    def list_recordings(self, page: int = 1, page_size: int = 100) -> dict[str, Any]:
        """`GET recording/list`: `{"total_number": int, "data": [recording, ...]}` of one page."""
        endpoint = self._endpoint("recording/list")
        payload = self._call("recording/list", {"page": page, "page_size": page_size})
        data = payload.get("data", [])
        total = payload.get("total_number")
        if not isinstance(data, list) or not is_count(total):
            raise PbxApiError(
                self.pbx_name, endpoint, "expected 'total_number' (int) and 'data' (list)"
            )
        return {"total_number": total, "data": data}

    def recording_link(
        self, recording_ref: str | None = None, *, recording_id: int | str | None = None
    ) -> YeastarRecordingLink:
        """Mint a download link now with `recording/download` (valid 30 minutes).

        `recording_ref` is the CDR's `record_file`; `recording_id` (the `recording/list` id)
        looks it up by id instead. Raises `RecordingMissing` on DATA NOT FOUND. The link is a
        capability: do not log or store it.
        """
        if (recording_ref is None) == (recording_id is None):
            raise ValueError("pass exactly one of recording_ref and recording_id")
        endpoint = self._endpoint("recording/download")
        what = f"recording {recording_ref!r}" if recording_ref else f"recording id {recording_id}"
        params = {"file": recording_ref} if recording_ref else {"id": str(recording_id)}
        try:
            payload = self._call("recording/download", params)
        except PbxApiError as exc:
            if exc.errcode == ERRCODE_DATA_NOT_FOUND:
                raise RecordingMissing(
                    self.pbx_name, endpoint, f"{what}: DATA NOT FOUND", errcode=exc.errcode
                ) from None
            raise
        body = payload.get("data") if isinstance(payload.get("data"), dict) else payload
        link = body.get("download_resource_url")
        file_name = body.get("file")
        if not isinstance(link, str) or not link.strip():
            raise PbxApiError(
                self.pbx_name, endpoint, f"{what}: 'download_resource_url' is missing"
            )
        self._check_link(self._download_url(link), endpoint=endpoint, what=what)
        return YeastarRecordingLink(
            path=link,
            file_name=file_name if isinstance(file_name, str) else None,
            label=recording_ref or what,
        )

    def open_recording(
        self, recording_ref: str | None = None, *, recording_id: int | str | None = None
    ) -> RecordingStream:
        """Mint a download link now (`recording/download`) and open the streamed download.

        `recording_ref` is the CDR's `record_file`; pass `recording_id` (the `recording/list`
        id) instead to look it up by id. Raises `RecordingMissing` (DATA NOT FOUND, 404),
        `RecordingLinkExpired` (403/410, or an errcode instead of audio; mint again),
        `PbxApiError` otherwise.
        """
        link = self.recording_link(recording_ref, recording_id=recording_id)
        return self.open_recording_link(link)

    def open_recording_link(self, link: YeastarRecordingLink) -> RecordingStream:
        """Open the streamed download of a link from `recording_link` (adds the access token).

        The access token is appended only when the link is on the API host. Raises
        `RecordingLinkRefused` for a link (or redirect) that leads elsewhere than the PBX's host
        or `recording_hosts`, `RecordingLinkExpired` (403/410, or JSON with an errcode instead
        of audio; a 10004 re-authenticates first), `RecordingMissing` (404), `PbxApiError`
        otherwise.
        """
        endpoint = DOWNLOAD_ENDPOINT_LABEL
        url = self._download_url(link.path)
        token = None
        if self._link_policy().is_api_host(url):  # the token goes to the API host only
            token = self._access_token()
            url += f"{'&' if '?' in url else '?'}{urlencode({'access_token': token})}"
        return self._open_download(
            url,
            endpoint=endpoint,
            what=link.label,
            on_non_audio=functools.partial(self._raise_for_non_audio, endpoint, link.label, token),
            on_format=self._learn_download_format,
        )

    def _learn_download_format(self, fmt: str) -> None:
        """Remember the download format the PBX serves; an MP3 keeps downloads one at a time."""
        runtime = self._runtime()
        if runtime.download_format != "mp3":
            runtime.download_format = fmt

    def _download_url(self, download_resource_url: str) -> str:
        """The absolute URL of a `download_resource_url` (documented as a path on the PBX)."""
        return urljoin(self.base_url + "/", download_resource_url.strip())

    def _raise_for_non_audio(
        self, endpoint: str, ref: str, token: str | None, response: requests.Response
    ) -> NoReturn:
        with contextlib.closing(response):
            head = next(response.iter_content(65536), b"")
        try:
            payload = orjson.loads(head)
        except orjson.JSONDecodeError:
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                f"{ref}: got {response.headers.get('Content-Type')!r} instead of audio",
                http_status=response.status_code,
            ) from None
        errcode = payload.get("errcode") if isinstance(payload, dict) else None
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            raise PbxApiError(
                self.pbx_name, endpoint, f"{ref}: got JSON without an errcode instead of audio"
            )
        if errcode == ERRCODE_DATA_NOT_FOUND:
            raise RecordingMissing(
                self.pbx_name, endpoint, f"{ref}: DATA NOT FOUND", errcode=errcode
            )
        if errcode in AUTH_ERRCODE_HINTS:
            raise self._auth_refused(endpoint, errcode, self._errmsg(payload))
        if errcode == ERRCODE_TOKEN_EXPIRED and token is not None:
            self._invalidate_access_token(token)
            self._access_token()  # re-authenticate now: an auth failure surfaces as such
        raise RecordingLinkExpired(
            self.pbx_name,
            endpoint,
            f"{ref}: the download answered with an error instead of audio "
            f"({self._errmsg(payload)})",
            errcode=errcode,
        )

    def download_format(self) -> str | None:
        """The PBX's download format: configured, else learned from this session's downloads
        (None until the first one shows it)."""
        if self.recording_format != "auto":
            return self.recording_format
        return self._runtime().download_format

    def download_slot(self, recording_ref: str) -> AbstractContextManager[None]:
        """One download at a time unless the downloads are known to be WAV: the PBX serves a
        single concurrent MP3 download, and a record_file named `.wav` says nothing about the
        download format (set under the PBX's recording settings), so with `recording_format:
        auto` downloads stay serial until the first one shows its format."""
        if self.download_format() == "wav":
            return contextlib.nullcontext()
        return self._serial_unless_wav()

    @contextlib.contextmanager
    def _serial_unless_wav(self) -> Iterator[None]:
        """Hold the single download slot; let go at once if, by the time it is ours, the
        format has turned out to be WAV (so the waiting downloads all start)."""
        slot = self._runtime().mp3_slot
        slot.acquire()
        if self.download_format() == "wav":
            slot.release()
            yield
            return
        try:
            yield
        finally:
            slot.release()


def _positive_int(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return default
