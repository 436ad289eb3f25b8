"""Yeastar P-Series OpenAPI v1.0 client: tokens, display format, `cdr/search` paging, recordings.

This module owns what the Yeastar endpoints mean (research/yeastar-p-series.md): the token
life cycle (cache, refresh before expiry, one re-authentication on 10004, never a get_token loop),
errors carried as `errcode` in HTTP 200 bodies, window strings in the PBX's display format, paging
against `total_number`, and the two-step recording download. The common settings, session
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
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from typing import Any, ClassVar, NoReturn, cast
from urllib.parse import urlencode

import dagster as dg
import orjson
import requests
from pydantic import Field, field_validator

from cdr_assets.errors import PbxApiError, PbxAuthError, RecordingLinkExpired, RecordingMissing
from cdr_assets.vendors.base import CdrFetch, CdrPage, RecordingStream, WindowCounter
from cdr_assets.vendors.resource import PbxResource, PbxRuntime, is_count
from cdr_assets.vendors.transport import redact_text

logger = dg.get_dagster_logger(__name__)

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

#: How download paths are named in messages (the path itself is a capability).
DOWNLOAD_ENDPOINT_LABEL = "/api/download/..."

#: Documented lifetimes, used when a token response omits them.
DEFAULT_ACCESS_TTL_S = 1800
DEFAULT_REFRESH_TTL_S = 86400

_DATE_TOKENS = {"YYYY": "%Y", "MM": "%m", "DD": "%d"}
_DATE_FORMAT_RE = re.compile(r"^(YYYY|MM|DD)([/-])(YYYY|MM|DD)\2(YYYY|MM|DD)$")
_MERIDIEM_RE = re.compile(r"(?i)\s*(AM|PM|A)\s*$")


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

    def format_wall_time(self, wall: datetime) -> str:
        """Format a naive PBX-local wall-clock time (AM/PM independent of the process locale)."""
        day = wall.strftime(date_pattern_for(self.date_format))
        if self.clock == 12:
            hour12 = wall.hour % 12 or 12
            meridiem = "AM" if wall.hour < 12 else "PM"
            return f"{day} {hour12:02d}:{wall.minute:02d}:{wall.second:02d} {meridiem}"
        return f"{day} {wall.hour:02d}:{wall.minute:02d}:{wall.second:02d}"


@dataclass(frozen=True)
class YeastarRecordingLink:
    """A minted `download_resource_url` (a path on the PBX, valid 30 minutes)."""

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
        self.auth_failure: PbxAuthError | None = None
        self.display_lock = threading.Lock()
        self.display: YeastarDisplayFormat | None = None
        self.mp3_slot = threading.Semaphore(1)
        self.mp3_seen = False


class YeastarResource(PbxResource):
    """Yeastar P-Series PBX (OpenAPI v1.0): CDRs via `cdr/search` and recording downloads.

    Holds one access token per resource instance (refreshed before expiry, rotated with the
    refresh token), so a run never loops on `get_token`: a refused `get_token` raises
    `PbxAuthError` at once and is remembered (five failures block the client's IP).

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
        tokens = runtime.tokens
        if tokens is not None and time.monotonic() < tokens.refresh_usable_until:
            refreshed = self._refresh_tokens_locked(runtime, tokens.refresh_token)
            if refreshed is not None:
                return refreshed
        return self._get_token_locked(runtime)

    def _refresh_tokens_locked(
        self, runtime: _YeastarRuntime, refresh_token: str
    ) -> _Tokens | None:
        """New tokens from `refresh_token`, or None when the PBX refused it (then get_token)."""
        endpoint = self._endpoint("refresh_token")
        sent_at = time.monotonic()
        payload = self._post_token_endpoint("refresh_token", {"refresh_token": refresh_token})
        errcode = self._errcode(endpoint, payload)
        if errcode == 0:
            return self._tokens_from(endpoint, payload, sent_at)
        if errcode in _NO_FALLBACK_ERRCODES:
            error = PbxAuthError(
                self.pbx_name, endpoint, AUTH_ERRCODE_HINTS[errcode], errcode=errcode
            )
            runtime.auth_failure = error
            raise error
        logger.info(
            "PBX %r: refresh_token refused (errcode %s); requesting a new token",
            self.pbx_name,
            errcode,
        )
        return None

    def _get_token_locked(self, runtime: _YeastarRuntime) -> _Tokens:
        if runtime.auth_failure is not None:
            raise runtime.auth_failure
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
            error = PbxAuthError(
                self.pbx_name,
                endpoint,
                f"get_token refused ({self._errmsg(payload)}): {hint}",
                errcode=errcode,
            )
            runtime.auth_failure = error
            raise error
        logger.debug("PBX %r: obtained a new access token", self.pbx_name)
        return self._tokens_from(endpoint, payload, sent_at)

    def _invalidate_access_token(self, rejected: str) -> None:
        runtime = self._runtime()
        with runtime.token_lock:
            tokens = runtime.tokens
            if tokens is not None and tokens.access_token == rejected:
                tokens.renew_access_at = 0.0

    # ----------------------------------------------------------------- API calls

    def _call(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET an API endpoint; returns the payload of errcode 0 or raises `PbxApiError`.

        A 10004 (TOKEN EXPIRED) answer re-authenticates once and repeats the call once.
        """
        endpoint = self._endpoint(name)
        for attempt in (1, 2):
            token = self._access_token()
            url = self._url(name, {**(params or {}), "access_token": token})
            payload = self._read_json_object(endpoint, self._send("GET", url, endpoint=endpoint))
            errcode = self._errcode(endpoint, payload)
            if errcode == 0:
                return payload
            if errcode == ERRCODE_TOKEN_EXPIRED and attempt == 1:
                logger.info(
                    "PBX %r: %s answered TOKEN EXPIRED; re-authenticating", self.pbx_name, endpoint
                )
                self._invalidate_access_token(token)
                continue
            message = self._errmsg(payload)
            if errcode == ERRCODE_TOKEN_EXPIRED:
                message = f"{message}: token refused again right after re-authentication"
            raise PbxApiError(self.pbx_name, endpoint, message, errcode=errcode)
        raise AssertionError("unreachable")

    def system_information(self) -> dict[str, Any]:
        """`GET system/information` -> its `data` object (device, firmware, display format)."""
        endpoint = self._endpoint("system/information")
        data = self._call("system/information").get("data")
        if not isinstance(data, dict):
            raise PbxApiError(self.pbx_name, endpoint, "'data' is missing or not an object")
        return data

    def display_format(self) -> YeastarDisplayFormat:
        """The PBX's display format: the config overrides, else read once from the PBX."""
        runtime = self._runtime()
        with runtime.display_lock:
            if runtime.display is None:
                runtime.display = self._detect_display_format()
            return runtime.display

    def _detect_display_format(self) -> YeastarDisplayFormat:
        if self.date_format is not None and self.clock is not None:
            return YeastarDisplayFormat(self.date_format, self.clock)
        endpoint = self._endpoint("system/information")
        info = self.system_information()
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
        display = YeastarDisplayFormat(date_format, clock)
        logger.info("PBX %r: display format %r (%s-hour clock)", self.pbx_name, date_format, clock)
        return display

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

        One window, `first_day 00:00:00` to `last_day 23:59:59` in the PBX's display format (both
        ends inclusive, as in the vendor's example); the display format is read from the PBX on
        the first call unless configured. Optional filters are passed through as given:
        `call_from`/`call_to` (numbers), `status` (ANSWERED, NO ANSWER, BUSY, FAILED or
        VOICEMAIL).
        """
        if first_day > last_day:
            raise ValueError(f"first_day {first_day} is after last_day {last_day}")
        display = self.display_format()
        start = display.format_wall_time(datetime.combine(first_day, dtime(0, 0, 0)))
        end = display.format_wall_time(datetime.combine(last_day, dtime(23, 59, 59)))
        params: dict[str, Any] = {"start_time": start, "end_time": end}
        for key, value in (("call_from", call_from), ("call_to", call_to), ("status", status)):
            if value is not None:
                params[key] = value
        label = f"{start} .. {end}"
        pages = functools.partial(self._iter_search_pages, params)
        pager = self._counted_window(
            label, pages, endpoint=self._endpoint("cdr/search"), total_name="total_number"
        )
        return CdrFetch(
            pbx=self.pbx_name, endpoint=self._endpoint("cdr/search"), windows=[(label, pager)]
        )

    def _iter_search_pages(
        self, params: dict[str, Any], counter: WindowCounter
    ) -> Iterator[CdrPage]:
        endpoint = self._endpoint("cdr/search")
        page = 1
        while True:
            payload = self._call(
                "cdr/search", {**params, "page": page, "page_size": self.page_size}
            )
            total = payload.get("total_number")
            if not is_count(total):
                raise PbxApiError(
                    self.pbx_name,
                    endpoint,
                    f"page {page}: 'total_number' is missing or not a "
                    f"non-negative integer (got {type(total).__name__})",
                )
            data = payload.get("data", [] if total == 0 else None)
            if not isinstance(data, list):
                raise PbxApiError(
                    self.pbx_name,
                    endpoint,
                    f"page {page}: 'data' is not a list (got {type(data).__name__})",
                )
            counter.api_total = total
            if not data:
                return
            counter.fetched += len(data)
            yield data
            if counter.fetched >= total:
                return
            page += 1

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
        if not isinstance(link, str) or not link.startswith("/") or link.startswith("//"):
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                f"{what}: 'download_resource_url' is missing or not a path on the PBX",
            )
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

        Raises `RecordingLinkExpired` (403/410, or JSON with an errcode instead of audio; a
        10004 re-authenticates first), `RecordingMissing` (404), `PbxApiError` otherwise.
        """
        endpoint = DOWNLOAD_ENDPOINT_LABEL
        token = self._access_token()
        url = f"{self.base_url}{link.path}{'&' if '?' in link.path else '?'}"
        url += urlencode({"access_token": token})
        stream = self._open_download(
            url,
            endpoint=endpoint,
            what=link.label,
            file_name=link.file_name or link.label,
            on_non_audio=functools.partial(self._raise_for_non_audio, endpoint, link.label, token),
        )
        if stream.extension == "mp3":
            self._runtime().mp3_seen = True
        return stream

    def _raise_for_non_audio(
        self, endpoint: str, ref: str, token: str, response: requests.Response
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
        if errcode == ERRCODE_TOKEN_EXPIRED:
            self._invalidate_access_token(token)
            self._access_token()  # re-authenticate now: an auth failure surfaces as such
        raise RecordingLinkExpired(
            self.pbx_name,
            endpoint,
            f"{ref}: the download answered with an error instead of audio "
            f"({self._errmsg(payload)})",
            errcode=errcode,
        )

    def download_slot(self, recording_ref: str) -> AbstractContextManager[None]:
        """One MP3 download at a time (the PBX supports a single concurrent MP3 download);
        no limit for WAV. Once an MP3 was served, every download takes the slot."""
        runtime = self._runtime()
        if recording_ref.lower().endswith(".mp3") or runtime.mp3_seen:
            return _hold(runtime.mp3_slot)
        return contextlib.nullcontext()


@contextlib.contextmanager
def _hold(semaphore: threading.Semaphore) -> Iterator[None]:
    with semaphore:
        yield


def _positive_int(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return default
