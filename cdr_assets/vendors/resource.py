"""`PbxResource`: what every vendor resource has in common, so a vendor module holds only its API.

This module owns the settings every PBX client has (name, URL, zone, TLS, timeouts, retries,
download sizing) with their `Field(description=...)` and validators, the per-instance runtime
(one lazily built `requests.Session`, closed on teardown), and the plumbing the endpoints run on:
a request whose failure never shows its URL, a JSON-object body, a window checked against the
API's total, a streamed recording download. It must not know any endpoint, token, error code or
paging scheme: those belong to the vendor modules.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, ClassVar, NoReturn, TypeGuard
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import requests
from pydantic import Field, PrivateAttr, field_validator

from cdr_assets.errors import (
    CdrCountMismatch,
    PbxApiError,
    RecordingLinkExpired,
    RecordingMissing,
)
from cdr_assets.vendors.base import (
    CdrPage,
    RecordingStream,
    WindowCounter,
    WindowPager,
    extension_for,
)
from cdr_assets.vendors.transport import build_session, decode_json_body, request_failure

logger = dg.get_dagster_logger(__name__)

_RUNTIME_INIT_LOCK = threading.Lock()


def check_iana_zone(value: str) -> str:
    """`value` if it names an IANA time zone, else ValueError."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone") from None
    return value


def is_count(value: object) -> TypeGuard[int]:
    """True for a non-negative JSON integer (a total, a page number, a size; not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class PbxRuntime:
    """What a resource instance holds from first use until `close()`: its HTTP session.

    Subclass it for vendor state (tokens, caches, semaphores) and return it from
    `PbxResource._new_runtime`, so that `close()` drops that state with the session.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session


class PbxResource(dg.ConfigurableResource):
    """Base of the vendor resources: common settings, session lifecycle, HTTP plumbing.

    A vendor subclass sets `vendor`, adds its own fields (credentials with `repr=False`, paging),
    and implements `fetch_cdrs` and `open_recording` (`PbxClient`) on top of `_send`,
    `_json_object`, `_counted_window` and `_open_download`. It overrides `download_slot` if the
    PBX limits concurrent downloads, `_new_runtime` if it keeps per-instance state, and
    `_before_close` if that state must be released at the PBX (e.g. a token revoked).
    """

    vendor: ClassVar[str]

    pbx_name: str = Field(description="Name of this PBX, used in error messages and logs.")
    base_url: str = Field(
        description="Scheme, host and port of the PBX API (no path), e.g. "
        "https://192.0.2.10:8088 or https://app.zorio.vn."
    )
    timezone: str = Field(
        description="IANA zone of the PBX's local clock (e.g. Asia/Singapore); CDR windows are "
        "PBX-local days."
    )
    user_agent: str = Field(
        default="cdr_assets",
        description="User-Agent header sent on every request (Yeastar PBXs require one).",
    )
    verify_tls: bool = Field(
        default=True, description="Verify the PBX's TLS certificate (see also ca_bundle_path)."
    )
    ca_bundle_path: str | None = Field(
        default=None,
        description="Path of a CA bundle (PEM) to verify a PBX's self-signed certificate with.",
    )
    timeout_s: float = Field(default=30, gt=0, description="Connect and read timeout, seconds.")
    max_retries: int = Field(
        default=5, ge=0, description="Retries of a request on connection errors, 429 and 5xx."
    )
    backoff_factor: float = Field(
        default=0.5, ge=0, description="Exponential backoff factor between retries, seconds."
    )
    download_concurrency: int = Field(
        default=4, ge=1, description="Concurrent recording downloads this client is sized for."
    )

    _runtime_state: PbxRuntime | None = PrivateAttr(default=None)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return check_iana_zone(value)

    # ----------------------------------------------------------------- lifecycle

    def _new_runtime(self, session: requests.Session) -> PbxRuntime:
        """The per-instance state around a new session (override to add vendor state)."""
        return PbxRuntime(session)

    def _runtime(self) -> PbxRuntime:
        runtime = self._runtime_state
        if runtime is None:
            with _RUNTIME_INIT_LOCK:
                runtime = self._runtime_state
                if runtime is None:
                    verify: bool | str = self.verify_tls
                    if self.verify_tls and self.ca_bundle_path:
                        verify = self.ca_bundle_path
                    session = build_session(
                        user_agent=self.user_agent,
                        max_retries=self.max_retries,
                        backoff_factor=self.backoff_factor,
                        verify_tls=verify,
                        pool_size=self.download_concurrency + 4,
                    )
                    runtime = self._new_runtime(session)
                    self._runtime_state = runtime
        return runtime

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        """Release what the PBX holds for this client and close the HTTP session. The resource
        can be used again afterwards (it opens a new session)."""
        runtime = self._runtime_state
        if runtime is None:
            return
        try:
            self._before_close(runtime)
        finally:
            self._runtime_state = None
            runtime.session.close()

    def _before_close(self, runtime: PbxRuntime) -> None:
        """Called by `close()` while the session is still open (override to release state)."""

    def download_slot(self, recording_ref: str) -> AbstractContextManager[None]:
        """No vendor-imposed download limit: a no-op."""
        return contextlib.nullcontext()

    # ----------------------------------------------------------------- plumbing

    def _api_url(self, path: str, params: dict[str, Any] | None = None) -> str:
        url = f"{self.base_url}{path}"
        if params:
            # %20 for spaces (not '+'): Yeastar window strings contain spaces.
            url += "?" + urlencode(params, quote_via=quote)
        return url

    def _send(self, method: str, url: str, *, endpoint: str, **kwargs: Any) -> requests.Response:
        """One request on the session with `timeout_s`; a transport failure raises `PbxApiError`
        naming `endpoint` (never the URL, which may carry secrets)."""
        try:
            return self._runtime().session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise request_failure(self.pbx_name, endpoint, exc) from None

    def _json_object(self, endpoint: str, response: requests.Response) -> dict[str, Any]:
        """The body of `response` (closed here) as a JSON object, or `PbxApiError`."""
        with contextlib.closing(response):
            payload = decode_json_body(self.pbx_name, endpoint, response)
        if not isinstance(payload, dict):
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                f"response is a JSON {type(payload).__name__}, not an object",
            )
        return payload

    def _counted_window(
        self,
        label: str,
        iter_pages: Callable[[WindowCounter], Iterator[CdrPage]],
        *,
        endpoint: str,
        total_name: str,
    ) -> WindowPager:
        """A `WindowPager` over one query window's pages (`iter_pages` sets `counter.api_total`
        and `counter.fetched`). A pass whose count differs from the API's total (`total_name` in
        messages) is fetched once more from the first page, since records may arrive while a day
        is open; a second mismatch raises `CdrCountMismatch`."""

        def pager(counter: WindowCounter) -> Iterator[CdrPage]:
            for attempt in (1, 2):
                counter.reset_pass()
                yield from iter_pages(counter)
                if counter.fetched == counter.api_total:
                    return
                if attempt == 1:
                    counter.restarts += 1
                    logger.warning(
                        "PBX %r: window %s ended with %d records, %s %s; fetching it again",
                        self.pbx_name,
                        label,
                        counter.fetched,
                        total_name,
                        counter.api_total,
                    )
            raise CdrCountMismatch(
                self.pbx_name,
                endpoint,
                f"fetched {counter.fetched} of {total_name} {counter.api_total} for window "
                f"{label} (twice)",
            )

        return pager

    def _open_download(
        self,
        url: str,
        *,
        endpoint: str,
        what: str,
        file_name: str,
        expected_bytes: int | None = None,
        on_non_audio: Callable[[requests.Response], NoReturn] | None = None,
    ) -> RecordingStream:
        """GET a recording streamed and wrap it in a `RecordingStream`.

        `what` names the recording in messages, `file_name` (or else the Content-Type) gives
        the extension. Raises `RecordingLinkExpired` (403/410: mint again), `RecordingMissing`
        (404), `PbxApiError` otherwise. A JSON or text body instead of audio goes to
        `on_non_audio` (which must raise), else raises `PbxApiError`.
        """
        response = self._send(
            "GET",
            url,
            endpoint=endpoint,
            stream=True,
            headers={"Accept-Encoding": "identity"},
        )
        status = response.status_code
        if status != 200:
            response.close()
            if status in (403, 410):
                raise RecordingLinkExpired(
                    self.pbx_name, endpoint, f"{what}: download link refused", http_status=status
                )
            if status == 404:
                raise RecordingMissing(
                    self.pbx_name, endpoint, f"{what}: recording not found", http_status=status
                )
            raise PbxApiError(
                self.pbx_name, endpoint, f"{what}: download failed", http_status=status
            )
        content_type = response.headers.get("Content-Type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if "json" in media or media.startswith("text/"):
            if on_non_audio is not None:
                on_non_audio(response)
            response.close()
            raise PbxApiError(
                self.pbx_name, endpoint, f"{what}: got {media!r} instead of audio", http_status=200
            )
        return RecordingStream(
            pbx=self.pbx_name,
            endpoint=endpoint,
            response=response,
            extension=extension_for(file_name, content_type),
            expected_bytes=expected_bytes,
        )
