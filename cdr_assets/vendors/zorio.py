"""Zorio PBX REST client: `GET /api/pbx/cdr` windows and paging, signed recording links.

This module owns what the Zorio endpoints mean (seeds/zorio-pbx-cdr.txt): date windows capped at
`max_window_days`, one per run of local days, widened by a date on each side because the page
does not say in which zone `from`/`to` are read (until `zorio_zone` has learned it from the rows;
a window read in a learned zone falls back to margins when a row contradicts it),
Laravel-style paging (`current_page`/`last_page`/`total`), 422/401 handling (a 401 is sent once
more on a fresh connection; a second one opens the auth breaker), and the signed recording URL
from the CDR detail, followed only where `links.py` allows. The common settings, session
lifecycle and request plumbing are `PbxResource`'s (`resource.py`), transport (retries,
redaction) is `transport.py`'s; records are returned exactly as sent.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any, ClassVar, cast
from urllib.parse import quote, urljoin, urlsplit
from zoneinfo import ZoneInfo

import dagster as dg
import orjson
import requests
from pydantic import Field, PrivateAttr, field_validator

from cdr_assets.errors import PbxApiError, PbxAuthError, RecordingMissing, is_transient_status
from cdr_assets.vendors.auth_breaker import AuthAttempt
from cdr_assets.vendors.base import (
    CdrFetch,
    CdrPage,
    CdrWindow,
    FetchedPage,
    JsonRecords,
    PassTotals,
    RecordingStream,
    split_record_array,
)
from cdr_assets.vendors.paging import PageAnswer, fetch_pages_in_order
from cdr_assets.vendors.resource import PbxResource, PbxRuntime, check_iana_zone, is_count
from cdr_assets.vendors.transport import (
    REDIRECT_STATUSES,
    decode_json_body,
    redact_text,
    url_path,
)
from cdr_assets.vendors.zorio_zone import ServerZoneMemory, date_window_instants, server_zone

logger = dg.get_dagster_logger(__name__)

CDR_LIST_PATH = "/api/pbx/cdr"
#: `direction` values the list endpoint accepts.
ZORIO_DIRECTIONS = ("inbound", "outbound", "internal", "local")


def zorio_date_span(
    first_day: date, last_day: date, *, timezone: str, query_timezone: str | None
) -> tuple[date, date]:
    """The `from`..`to` dates (inclusive) that cover the PBX-local days `first_day..last_day`.

    With `query_timezone` unknown (None) each side is widened by a day, which covers the local
    days whatever zone the server reads the dates in (offsets are under 24 h). With it known
    (an IANA name, or a fixed offset `UTC+07:00`), exactly the server dates overlapping the
    local days.
    """
    if first_day > last_day:
        raise ValueError(f"first_day {first_day} is after last_day {last_day}")
    if query_timezone is None:
        return first_day - timedelta(days=1), last_day + timedelta(days=1)
    local, server = ZoneInfo(timezone), server_zone(query_timezone)
    start = datetime.combine(first_day, dtime(0, 0), tzinfo=local)
    # fold=1: on a day that falls back at its end, 23:59:59 happens twice; the later one counts.
    last_instant = datetime.combine(last_day, dtime(23, 59, 59, 999999, fold=1), tzinfo=local)
    return start.astimezone(server).date(), last_instant.astimezone(server).date()


def day_blocks(
    first_day: date,
    last_day: date,
    *,
    timezone: str,
    query_timezone: str | None,
    max_window_days: int,
) -> list[tuple[date, date]]:
    """Consecutive runs of the local days, each as long as one window of at most
    `max_window_days` dates can cover (with its margins when `query_timezone` is None); a day
    needing more dates than that is a run of its own (its span is then split)."""

    def dates(first: date, last: date) -> int:
        span = zorio_date_span(first, last, timezone=timezone, query_timezone=query_timezone)
        return (span[1] - span[0]).days + 1

    blocks = []
    start = first_day
    while start <= last_day:
        end = start
        while end < last_day and dates(start, end + timedelta(days=1)) <= max_window_days:
            end += timedelta(days=1)
        blocks.append((start, end))
        start = end + timedelta(days=1)
    return blocks


def split_date_span(
    span_from: date, span_to: date, max_window_days: int
) -> list[tuple[date, date]]:
    """Consecutive, non-overlapping windows with `(to - from).days <= max_window_days - 1`."""
    if max_window_days < 1:
        raise ValueError("max_window_days must be >= 1")
    windows = []
    current = span_from
    while current <= span_to:
        window_to = min(current + timedelta(days=max_window_days - 1), span_to)
        windows.append((current, window_to))
        current = window_to + timedelta(days=1)
    return windows


def validate_cdr_filters(
    direction: str | None, extension: str | None, phone: str | None
) -> dict[str, str]:
    """The list endpoint's filters as query parameters, checked as the vendor's page states."""
    params: dict[str, str] = {}
    if direction is not None:
        if direction not in ZORIO_DIRECTIONS:
            raise ValueError(f"direction must be one of {ZORIO_DIRECTIONS}, got {direction!r}")
        params["direction"] = direction
    if extension is not None:
        if not isinstance(extension, str) or not 3 <= len(extension) <= 20:
            raise ValueError("extension must be a string of 3 to 20 characters")
        params["extension"] = extension
    if phone is not None:
        if not isinstance(phone, str) or not 1 <= len(phone) <= 50:
            raise ValueError("phone must be a string of 1 to 50 characters")
        params["phone"] = phone
    return params


class _ZorioRuntime(PbxRuntime):
    """Per-resource-instance state: the session, whether the PBX has taken the token, and
    whether slow pages were reported."""

    def __init__(self, session: requests.Session) -> None:
        super().__init__(session)
        self.token_accepted = False
        self.slow_pages_noted = False


class ZorioResource(PbxResource):
    """Zorio PBX (REST, Bearer token): CDRs via `GET /api/pbx/cdr`, recordings via signed URLs.

    A range of days is fetched in windows of at most `max_window_days` dates, each paged with
    `per_page` and checked against the API's `total`. Without `query_timezone` the client learns
    the zone the server reads dates in from the rows (`cdr_assets.vendors.zorio_zone`), keeps it
    under `auth_state_dir`, and forgets it the moment a row falls outside what it predicts.
    Recording links are minted right before each download; the Bearer token is never sent to
    the (possibly foreign) recording host.

    Example:
        ```python
        import datetime as dt

        import dagster as dg

        from cdr_assets.vendors import ZorioResource


        @dg.asset
        def yesterday_cdr_count(zorio: ZorioResource) -> int:
            day = dt.date.today() - dt.timedelta(days=1)
            fetch = zorio.fetch_cdrs(day, day)
            return sum(len(page) for page in fetch.pages())


        defs = dg.Definitions(
            assets=[yesterday_cdr_count],
            resources={
                "zorio": ZorioResource(
                    pbx_name="saigon",
                    base_url="https://app.zorio.vn",
                    api_token=dg.EnvVar("SAIGON_ZORIO_TOKEN"),
                    timezone="Asia/Ho_Chi_Minh",
                )
            },
        )
        ```
    """

    vendor: ClassVar[str] = "zorio"

    api_token: str = Field(
        repr=False,
        description="API token sent as 'Authorization: Bearer'. Pass it as dg.EnvVar; never "
        "logged.",
    )
    per_page: int = Field(default=200, ge=1, le=200, description="Records per page (1..200).")
    max_window_days: int = Field(
        default=30,
        ge=1,
        description="Window cap of the account: each request spans at most this many dates "
        "((to - from).days <= max_window_days - 1); the API answers 422 beyond its cap.",
    )
    query_timezone: str | None = Field(
        default=None,
        description="The zone the server reads from/to in; None = unknown: local days are "
        "fetched with a date of margin on each side (from = first-1, to = last+1) so they are "
        "covered whatever the zone, until the rows show the server's zone (it is then learned, "
        "kept under auth_state_dir, and forgotten as soon as a row contradicts it).",
    )

    _zone_state: ServerZoneMemory | None = PrivateAttr(default=None)

    @field_validator("query_timezone")
    @classmethod
    def _check_query_timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_iana_zone(value)

    # ----------------------------------------------------------------- lifecycle

    def _new_runtime(self, session: requests.Session) -> _ZorioRuntime:
        return _ZorioRuntime(session)

    def _runtime(self) -> _ZorioRuntime:
        return cast(_ZorioRuntime, super()._runtime())

    def _credential(self) -> tuple[str, ...]:
        return (self.api_token,)

    # ----------------------------------------------------------------- plumbing

    def _api_get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        endpoint: str | None = None,
        expect_redirect: bool = False,
    ) -> requests.Response:
        """GET an API path with the Bearer token; raises on 401/422/other errors, returns the
        response (200, or a redirect, not followed, when `expect_redirect`).

        Until the PBX has taken the token once, the request is an auth attempt under the auth
        breaker (fails fast while a refusal of this token cools down)."""
        endpoint = endpoint or path
        url = self._api_url(path, params)
        runtime = self._runtime()
        if runtime.token_accepted:
            response = self._authorized_get(url, endpoint, None)
        else:
            with self._auth_breaker().attempt() as attempt:
                response = self._authorized_get(url, endpoint, attempt)
        status = response.status_code
        if status == 200 or (expect_redirect and status in REDIRECT_STATUSES):
            return response
        with contextlib.closing(response):
            if status == 422:
                raise PbxApiError(
                    self.pbx_name,
                    endpoint,
                    f"request rejected: {self._validation_message(response)}",
                    http_status=status,
                )
            raise PbxApiError(self.pbx_name, endpoint, "unexpected HTTP status", http_status=status)

    def _authorized_get(
        self, url: str, endpoint: str, attempt: AuthAttempt | None
    ) -> requests.Response:
        """The GET with the Bearer token. A 401 is sent once more on a fresh connection (a
        stale pooled connection or a proxy can answer one 401); a second 401 is a refusal and
        opens the auth breaker. Any other answer but a server fault means the token was taken."""
        headers = {"Authorization": f"Bearer {self.api_token}", "Accept": "application/json"}
        response = self._send("GET", url, endpoint=endpoint, headers=headers)
        if response.status_code == 401:
            response.close()
            logger.warning(
                "PBX %r: %s answered 401; sending it once more on a fresh connection",
                self.pbx_name,
                endpoint,
            )
            response = self._send(
                "GET", url, endpoint=endpoint, headers=headers, fresh_connection=True
            )
        if response.status_code == 401:
            response.close()
            error = PbxAuthError(
                self.pbx_name,
                endpoint,
                "api_token refused (Unauthenticated) twice, the second time on a fresh "
                "connection: check api_token (a token revoked or regenerated in the Zorio portal "
                "must be replaced)",
                http_status=401,
            )
            raise attempt.refused(error) if attempt else self._auth_breaker().trip(error)
        if not is_transient_status(response.status_code):
            if attempt is not None:
                attempt.accepted()
            self._runtime().token_accepted = True
        return response

    def _validation_message(self, response: requests.Response) -> str:
        try:
            payload = decode_json_body(self.pbx_name, "", response)
        except PbxApiError:
            return "(no JSON body)"
        if not isinstance(payload, dict):
            return "(unexpected body)"
        parts = []
        if isinstance(payload.get("message"), str):
            parts.append(payload["message"])
        errors = payload.get("errors")
        if isinstance(errors, dict):
            for field, messages in errors.items():
                if isinstance(messages, list):
                    messages = "; ".join(str(m) for m in messages)
                parts.append(f"{field}: {messages}")
        return redact_text(" | ".join(parts) or "(no message)")[:500]

    def _get_json_object(
        self, path: str, params: dict[str, Any] | None = None, *, endpoint: str | None = None
    ) -> dict[str, Any]:
        endpoint = endpoint or path
        return self._json_object(endpoint, self._api_get(path, params, endpoint=endpoint))

    # ----------------------------------------------------------------- CDRs

    def query_windows(self, first_day: date, last_day: date) -> list[tuple[date, date]]:
        """The (from, to) date windows `fetch_cdrs` requests for these PBX-local days."""
        return [
            window for _, windows, _ in self._query_plan(first_day, last_day) for window in windows
        ]

    def _query_plan(
        self, first_day: date, last_day: date
    ) -> list[tuple[tuple[date, date], list[tuple[date, date]], str | None]]:
        """(local days, their date windows, the zone those are read in or None) per run of days.

        A run holds as many days as one window of `max_window_days` dates covers: with the
        zone configured, the dates the days overlap; otherwise with one date of margin on each
        side, also when a zone was learned, so that a window can always fall back to margins.
        """
        zone = self.query_timezone
        if zone is None and self.max_window_days >= 3:
            zone = self._zone_memory().learned()
        plan = []
        blocks = day_blocks(
            first_day,
            last_day,
            timezone=self.timezone,
            query_timezone=self.query_timezone,
            max_window_days=self.max_window_days,
        )
        for block in blocks:
            span = zorio_date_span(*block, timezone=self.timezone, query_timezone=zone)
            plan.append((block, split_date_span(*span, self.max_window_days), zone))
        return plan

    def fetch_cdrs(
        self,
        first_day: date,
        last_day: date,
        *,
        direction: str | None = None,
        extension: str | None = None,
        phone: str | None = None,
    ) -> CdrFetch:
        """CDRs covering the PBX-local days `first_day..last_day`, page by page.

        One window per run of days (`_query_plan`); each window's `days` are the days it holds
        in full. Records outside those days may be returned (windows have margins unless the
        server's zone is configured or learned): assign rows to days by `start_time`. Optional
        filters, checked here as the vendor's page states: `direction`
        (inbound/outbound/internal/local), `extension` (3-20 chars), `phone` (up to 50 chars).
        """
        filters = validate_cdr_filters(direction, extension, phone)
        windows: list[CdrWindow] = []
        for block, dates, zone in self._query_plan(first_day, last_day):
            learned = zone is not None and self.query_timezone is None
            for window_from, window_to in dates:
                windows.append(
                    _ZorioWindow(self, window_from, window_to, block, filters, zone, learned)
                )
        return CdrFetch(pbx=self.pbx_name, endpoint=CDR_LIST_PATH, windows=windows)

    def _zone_memory(self) -> ServerZoneMemory:
        """What this PBX's server was learned to read from/to in (`zorio_zone`), kept under
        `auth_state_dir` across runs."""
        memory = self._zone_state
        if memory is None:
            memory = self._zone_state = ServerZoneMemory(
                self.pbx_name, self.base_url, self.timezone, self.auth_state_dir
            )
        return memory

    def _iter_list_pages(self, params: dict[str, Any], totals: PassTotals) -> Iterator[FetchedPage]:
        """One pass over a window: pages 1.. until the envelope's `last_page` (which follows the
        total as it changes while the day is paged), `max_inflight_requests` at once."""
        return fetch_pages_in_order(
            functools.partial(self._list_page, params),
            totals,
            max_inflight=self.max_inflight_requests,
            pbx=self.pbx_name,
            endpoint=CDR_LIST_PATH,
        )

    def _list_page(self, params: dict[str, Any], page: int) -> PageAnswer:
        """Page `page` of a window, checked against its envelope."""
        payload, records = self._get_list_page(
            {**params, "page": page, "per_page": self.per_page}, page
        )
        envelope = self._check_list_envelope(payload, page)
        data: CdrPage | JsonRecords = payload["data"] if records is None else records
        if isinstance(data, JsonRecords) and len(data) != _page_size(envelope):
            # Not the count the envelope announces: count exactly by parsing the page.
            data = self._parse_records(data)
        final = envelope["current_page"] >= envelope["last_page"] or (not data and page > 1)
        return PageAnswer(page, data, envelope["total"], envelope["last_page"], final)

    def _get_list_page(
        self, params: dict[str, Any], page: int
    ) -> tuple[dict[str, Any], JsonRecords | None]:
        """One list page: its envelope, and its records unparsed when the body allows
        (`split_record_array`); otherwise the whole body parsed, records in `data`. A body
        that is not JSON is asked for again (`_repeating_bad_bodies`)."""
        return self._repeating_bad_bodies(
            CDR_LIST_PATH, lambda: self._get_list_page_once(params, page)
        )

    def _get_list_page_once(
        self, params: dict[str, Any], page: int
    ) -> tuple[dict[str, Any], JsonRecords | None]:
        response = self._api_get(CDR_LIST_PATH, params)
        with contextlib.closing(response):
            split = split_record_array(response.content)
        if isinstance(split, tuple):
            return split
        if isinstance(split, str):
            self._note_slow_pages(page, split)
        return self._json_object(CDR_LIST_PATH, response), None

    def _note_slow_pages(self, page: int, reason: str) -> None:
        """Say once per client session that pages take the slower dict path, and why."""
        runtime = self._runtime()
        if not runtime.slow_pages_noted:
            runtime.slow_pages_noted = True
            logger.info(
                "PBX %r: %s page %d could not be cut without parsing (%s); such pages are parsed "
                "whole, which is correct but slower",
                self.pbx_name,
                CDR_LIST_PATH,
                page,
                reason,
            )

    def _parse_records(self, records: JsonRecords) -> CdrPage:
        try:
            return records.dicts()
        except orjson.JSONDecodeError:
            raise PbxApiError(self.pbx_name, CDR_LIST_PATH, "'data' is not valid JSON") from None

    def _check_list_envelope(self, payload: dict[str, Any], page: int) -> dict[str, int]:
        envelope: dict[str, int] = {}
        for key in ("current_page", "last_page", "per_page", "total"):
            value = payload.get(key)
            if not is_count(value):
                raise PbxApiError(
                    self.pbx_name,
                    CDR_LIST_PATH,
                    f"page {page}: '{key}' is missing or not a "
                    f"non-negative integer (got {type(value).__name__})",
                )
            envelope[key] = value
        if not isinstance(payload.get("data"), list):
            raise PbxApiError(
                self.pbx_name,
                CDR_LIST_PATH,
                f"page {page}: 'data' is not a list (got {type(payload.get('data')).__name__})",
            )
        if envelope["current_page"] != page:
            raise PbxApiError(
                self.pbx_name,
                CDR_LIST_PATH,
                f"asked for page {page}, got current_page {envelope['current_page']}",
            )
        return envelope

    # ----------------------------------------------------------------- detail, recordings

    def _cdr_path(self, uuid: str, suffix: str = "") -> str:
        if not isinstance(uuid, str) or not uuid.strip():
            raise ValueError("uuid must be a non-empty string")
        return f"{CDR_LIST_PATH}/{quote(uuid, safe='')}{suffix}"

    def get_cdr(self, uuid: str) -> dict[str, Any]:
        """`GET /api/pbx/cdr/{uuid}` -> its `data` object (with `recording` when there is one).

        The `recording.url` in it is a signed link: do not log or store it.
        """
        endpoint = f"{CDR_LIST_PATH}/{{uuid}}"
        payload = self._get_json_object(self._cdr_path(uuid), endpoint=endpoint)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise PbxApiError(self.pbx_name, endpoint, "'data' is missing or not an object")
        return data

    def recording_redirect_url(self, uuid: str) -> str:
        """The signed recording URL from `GET /api/pbx/cdr/{uuid}/recording` (a 302; not
        followed). A secret-bearing link: do not log or store it. Raises
        `RecordingLinkRefused` when it leads elsewhere than the PBX's host or
        `recording_hosts`, or from https to http."""
        endpoint = f"{CDR_LIST_PATH}/{{uuid}}/recording"
        try:
            response = self._api_get(
                self._cdr_path(uuid, "/recording"), endpoint=endpoint, expect_redirect=True
            )
        except PbxApiError as exc:
            if exc.http_status == 404:
                raise RecordingMissing(
                    self.pbx_name, endpoint, f"no recording for CDR {uuid!r}", http_status=404
                ) from None
            raise
        with contextlib.closing(response):
            location = response.headers.get("Location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                raise PbxApiError(
                    self.pbx_name,
                    endpoint,
                    "expected a redirect with a Location header",
                    http_status=response.status_code,
                )
        url = urljoin(self.base_url + "/", location)
        self._check_link(url, endpoint=endpoint, what=f"CDR {uuid!r}")
        return url

    def open_recording(self, recording_ref: str) -> RecordingStream:
        """Mint a signed link now (`GET /api/pbx/cdr/{uuid}`) and open the streamed download.

        `recording_ref` is the CDR `uuid`. `expected_bytes` is `recording.file_size`. A detail
        that says `recording_available: true` but carries no `recording` object (servers do)
        gets its link from `GET /api/pbx/cdr/{uuid}/recording` (the 302) instead. Raises
        `RecordingMissing` (`recording_available` false, no recording on either endpoint, 404),
        `RecordingLinkExpired` (403/410 from the signed URL: mint again), `PbxApiError`
        otherwise.
        """
        endpoint = f"{CDR_LIST_PATH}/{{uuid}}"
        try:
            cdr = self.get_cdr(recording_ref)
        except PbxApiError as exc:
            if exc.http_status == 404 and not isinstance(exc, PbxAuthError):
                raise RecordingMissing(
                    self.pbx_name, endpoint, f"CDR {recording_ref!r} not found", http_status=404
                ) from None
            raise
        recording = cdr.get("recording")
        if cdr.get("recording_available") is False:
            raise RecordingMissing(
                self.pbx_name, endpoint, f"CDR {recording_ref!r} has no recording"
            )
        if not recording:
            url = self.recording_redirect_url(recording_ref)
            return self.open_recording_url(url, recording_ref=recording_ref)
        if not isinstance(recording, dict):
            raise PbxApiError(self.pbx_name, endpoint, "'data.recording' is not an object")
        url = recording.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise PbxApiError(
                self.pbx_name, endpoint, "'data.recording.url' is missing or not an http(s) URL"
            )
        file_size = recording.get("file_size")
        if file_size is not None and not is_count(file_size):
            raise PbxApiError(
                self.pbx_name, endpoint, "'data.recording.file_size' is not a non-negative integer"
            )
        stream = self.open_recording_url(url, recording_ref=recording_ref, expected_bytes=file_size)
        stream.recorded_at = _recorded_at(recording.get("recorded_at"))
        return stream

    def open_recording_url(
        self, url: str, *, recording_ref: str = "", expected_bytes: int | None = None
    ) -> RecordingStream:
        """Open the streamed download of a signed recording URL (from `get_cdr` or
        `recording_redirect_url`). Sends no Authorization header: the signature authorizes and
        the host may be foreign. The URL and each redirect must stay on the PBX's host or a
        `recording_hosts` entry, never going from https to http. Raises `RecordingLinkRefused`
        otherwise (before requesting anything from it), `RecordingLinkExpired` (403/410),
        `RecordingMissing` (404), `PbxApiError` otherwise."""
        what = f"CDR {recording_ref!r}" if recording_ref else "signed URL"
        return self._open_download(
            url,
            endpoint=url_path(url),
            what=what,
            expected_bytes=expected_bytes,
        )


def _recorded_at(value: Any) -> datetime | None:
    """`recording.recorded_at` (ISO 8601; no offset read as UTC, like the CDR times) as a UTC
    instant; None when absent or not a date-time: it describes the file, it never fails it."""
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return instant.replace(tzinfo=instant.tzinfo or UTC).astimezone(UTC)


class _ZorioWindow(CdrWindow):
    """A window of dates. Read in a learned zone, it falls back to margins (and the client
    forgets the zone) as soon as a pass returns a call outside the instants that zone gives;
    fetched with margins, its complete passes teach the client the server's zone."""

    def __init__(
        self,
        client: ZorioResource,
        window_from: date,
        window_to: date,
        days: tuple[date, date],
        filters: dict[str, str],
        zone: str | None,
        learned: bool,
    ) -> None:
        self._client = client
        self._filters = filters
        self.learned = learned
        super().__init__("", self._page, days=days)
        self._query(window_from, window_to, zone)

    def _query(self, window_from: date, window_to: date, zone: str | None) -> None:
        self.window_from, self.window_to, self.zone = window_from, window_to, zone
        self.params = {"from": window_from.isoformat(), "to": window_to.isoformat()}
        self.label = f"from={window_from.isoformat()} to={window_to.isoformat()}"
        if self.learned:
            self.label += f" (server zone {zone}, learned)"
        self.start = self.end = None
        if zone is not None:
            self.start, self.end = date_window_instants(server_zone(zone), window_from, window_to)

    def _page(self, totals: PassTotals) -> Iterator[FetchedPage]:
        if self.learned and self._client._zone_memory().state.learned != self.zone:
            self._with_margins()  # another window found the zone wrong meanwhile
        return self._client._iter_list_pages({**self.params, **self._filters}, totals)

    def _with_margins(self) -> None:
        assert self.days is not None
        self.learned = False
        span = zorio_date_span(*self.days, timezone=self._client.timezone, query_timezone=None)
        self._query(*span, None)

    def review_pass(
        self, first_start: datetime | None, last_start: datetime | None, *, complete: bool
    ) -> bool:
        if first_start is None or last_start is None:
            return True
        if self.learned:
            assert self.start is not None and self.end is not None
            if self.start <= first_start and last_start < self.end:
                return True
            self._client._zone_memory().forget(
                f"{self.label} returned calls from {first_start.isoformat()} to "
                f"{last_start.isoformat()}, outside {self.start.isoformat()} .. "
                f"{self.end.isoformat()}"
            )
            self._with_margins()
            return False
        if self.zone is None and complete:
            self._client._zone_memory().observe(
                self.window_from, self.window_to, first_start, last_start
            )
        return True


def _page_size(envelope: dict[str, int]) -> int:
    """How many records the page the envelope describes holds (the last one may be short)."""
    before = (envelope["current_page"] - 1) * envelope["per_page"]
    return max(min(envelope["per_page"], envelope["total"] - before), 0)
