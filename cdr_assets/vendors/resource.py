"""`PbxResource`: what every vendor resource has in common, so a vendor module holds only its API.

This module owns the settings every PBX client has (name, URL, zone, TLS, timeouts, retries,
download sizing, recording hosts, auth breaker) with their `Field(description=...)` and
validators, the per-instance runtime (one lazily built `requests.Session`, closed on teardown),
and the plumbing the endpoints run on: a request whose failure never shows its URL, a JSON-object
body, a streamed recording download that follows only
links that belong to the PBX (`links.py`), the auth breaker of this PBX's credential
(`auth_breaker.py`). It must not know any endpoint, token, error code or paging scheme: those
belong to the vendor modules.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, ClassVar, NoReturn, TypeGuard, TypeVar
from urllib.parse import quote, urlencode, urljoin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import requests
from pydantic import Field, PrivateAttr, field_validator

from cdr_assets.errors import (
    PbxApiError,
    PbxBodyError,
    RecordingLinkExpired,
    RecordingLinkRefused,
    RecordingMissing,
    RetryAfterTooLong,
)
from cdr_assets.vendors.auth_breaker import AuthBreaker
from cdr_assets.vendors.base import RecordingStream
from cdr_assets.vendors.links import LinkPolicy, parse_host_entry
from cdr_assets.vendors.transport import (
    REDIRECT_STATUSES,
    RetryAfterExceeded,
    build_session,
    decode_json_body,
    request_failure,
)

logger = dg.get_dagster_logger(__name__)

T = TypeVar("T")
#: A body that is not the API's JSON is asked for again this many times, `BAD_BODY_PAUSE_S`
#: (then twice that) apart, before it counts as the server's answer: a proxy or a restarting
#: server can spoil one answer, and a wrong one that stays fails well within a minute.
BAD_BODY_REPEATS = 2
BAD_BODY_PAUSE_S = 1.0

_RUNTIME_INIT_LOCK = threading.Lock()

#: Redirect hops a recording download follows (each checked against the link policy).
MAX_DOWNLOAD_REDIRECTS = 5


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
    `_json_object` and `_open_download`. It overrides `download_slot` if the
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
    max_inflight_requests: int = Field(
        default=4,
        ge=1,
        description="CDR list pages of a window requested at once once its first page gave the "
        "total (in page order into the normalizer; 1 = one at a time).",
    )
    retry_after_max_s: float = Field(
        default=60,
        gt=0,
        description="Longest Retry-After the client waits, seconds; a server asking for longer "
        "fails the request at once (RetryAfterTooLong, naming when to retry) instead of "
        "stalling the run.",
    )
    recording_hosts: list[str] = Field(
        default=[],
        description="Hosts besides the PBX's own (base_url) that recording links and their "
        "redirects may lead to, as 'host' (any port) or 'host:port', e.g. the vendor's "
        "storage host. Links anywhere else, or from https down to http, are refused.",
    )
    auth_state_dir: str | None = Field(
        default=None,
        description="Local directory of the auth breaker's state, shared by every run and "
        "process on this machine: a refused credential is then not retried by the next run. "
        "None keeps the breaker in this process's memory only.",
    )
    auth_cooldown_minutes: float = Field(
        default=60,
        gt=0,
        description="Minutes after a refused credential before one new attempt is made "
        "(sooner when the credential changes, or after `python -m cdr_assets.auth_breaker "
        "reset`).",
    )

    _runtime_state: PbxRuntime | None = PrivateAttr(default=None)
    _breaker: AuthBreaker | None = PrivateAttr(default=None)
    _links: LinkPolicy | None = PrivateAttr(default=None)

    @field_validator("base_url", mode="before")
    @classmethod
    def _check_base_url(cls, value: object) -> object:
        # Before pydantic turns an EnvVar into a plain str (its name): only the name is known
        # at load, and Dagster builds the resource again with the resolved URL at run launch,
        # where that value is checked. A non-str is left to pydantic's own type error.
        if isinstance(value, dg.EnvVar) or not isinstance(value, str):
            return value
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return check_iana_zone(value)

    @field_validator("recording_hosts")
    @classmethod
    def _check_recording_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_host_entry(entry)
        return value

    @field_validator("auth_state_dir")
    @classmethod
    def _check_auth_state_dir(cls, value: str | None) -> str | None:
        if value is not None and ("://" in value or not value.strip()):
            raise ValueError(
                f"auth_state_dir {value!r} must be a local directory (the breaker locks a file "
                "in it)"
            )
        return value

    # ----------------------------------------------------------------- lifecycle

    def _new_runtime(self, session: requests.Session) -> PbxRuntime:
        """The per-instance state around a new session (override to add vendor state)."""
        return PbxRuntime(session)

    def _send_once_url_prefixes(self) -> tuple[str, ...]:
        """URL prefixes whose requests must reach the PBX at most once (retried only when the
        connection could not be made); override for non-idempotent calls such as logins."""
        return ()

    def _credential(self) -> tuple[str, ...]:
        """The credential the auth breaker fingerprints; a vendor with auth overrides it."""
        raise NotImplementedError(f"{type(self).__name__} has no credential for the breaker")

    def _build_session(self) -> requests.Session:
        verify: bool | str = self.verify_tls
        if self.verify_tls and self.ca_bundle_path:
            verify = self.ca_bundle_path
        return build_session(
            user_agent=self.user_agent,
            max_retries=self.max_retries,
            backoff_factor=self.backoff_factor,
            verify_tls=verify,
            # Connections for the downloads, the pages in flight and the odd API call beside.
            pool_size=self.download_concurrency + self.max_inflight_requests + 4,
            retry_after_max_s=self.retry_after_max_s,
            send_once_prefixes=self._send_once_url_prefixes(),
        )

    def _runtime(self) -> PbxRuntime:
        runtime = self._runtime_state
        if runtime is None:
            with _RUNTIME_INIT_LOCK:
                runtime = self._runtime_state
                if runtime is None:
                    runtime = self._new_runtime(self._build_session())
                    self._runtime_state = runtime
        return runtime

    def _auth_breaker(self) -> AuthBreaker:
        """The breaker of this PBX and credential (state in `auth_state_dir`, else memory)."""
        breaker = self._breaker
        if breaker is None:
            with _RUNTIME_INIT_LOCK:
                breaker = self._breaker
                if breaker is None:
                    breaker = AuthBreaker(
                        self.pbx_name,
                        self.base_url,
                        self._credential(),
                        state_dir=self.auth_state_dir,
                        cooldown=timedelta(minutes=self.auth_cooldown_minutes),
                    )
                    self._breaker = breaker
        return breaker

    def _link_policy(self) -> LinkPolicy:
        links = self._links
        if links is None:
            links = self._links = LinkPolicy(self.base_url, self.recording_hosts)
        return links

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

    def _send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        fresh_connection: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """One request on the session with `timeout_s`, not following redirects (a caller that
        wants one follows it itself, checking where it leads). A transport failure raises
        `PbxApiError` naming `endpoint` (never the URL, which may carry secrets); a Retry-After
        beyond `retry_after_max_s` raises `RetryAfterTooLong`. `fresh_connection` sends it on a
        new connection of its own (read in full, not streamed), for a repeat that must not ride
        a pooled connection."""
        kwargs.setdefault("allow_redirects", False)
        try:
            if fresh_connection:
                with self._build_session() as session:
                    return session.request(
                        method, url, timeout=self.timeout_s, **{**kwargs, "stream": False}
                    )
            return self._runtime().session.request(method, url, timeout=self.timeout_s, **kwargs)
        except RetryAfterExceeded as exc:
            raise RetryAfterTooLong(
                self.pbx_name,
                endpoint,
                http_status=exc.status,
                retry_after_s=exc.retry_after_s,
                retry_at=exc.retry_at,
                limit_s=exc.limit_s,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise request_failure(self.pbx_name, endpoint, exc) from None

    def _repeating_bad_bodies(self, endpoint: str, get: Callable[[], T]) -> T:
        """`get()` (one GET and its parse), asked again while its body is not the API's JSON or
        broke off; the last `PbxBodyError` says how many answers in a row were spoilt."""
        attempt = 1
        while True:
            try:
                return get()
            except PbxBodyError as exc:
                if attempt > BAD_BODY_REPEATS:
                    raise PbxBodyError(
                        self.pbx_name,
                        endpoint,
                        f"{exc.detail}, {attempt} answers in a row",
                        http_status=exc.http_status,
                        transient=exc.transient,
                    ) from None
                logger.warning(
                    "PBX %r: %s answered a spoilt body (%s); asking again",
                    self.pbx_name,
                    endpoint,
                    exc.detail,
                )
                time.sleep(BAD_BODY_PAUSE_S * attempt)
                attempt += 1

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

    def _check_link(
        self, url: str, *, endpoint: str, what: str, came_from: str | None = None
    ) -> None:
        """Raise `RecordingLinkRefused` if `url` (reached from `came_from`) must not be
        requested: the message names its host, never its path or query."""
        reason = self._link_policy().refusal(url, came_from=came_from)
        if reason is not None:
            raise RecordingLinkRefused(self.pbx_name, endpoint, f"{what}: {reason}")

    def _open_download(
        self,
        url: str,
        *,
        endpoint: str,
        what: str,
        expected_bytes: int | None = None,
        on_non_audio: Callable[[requests.Response], NoReturn] | None = None,
        on_format: Callable[[str], None] | None = None,
    ) -> RecordingStream:
        """GET a recording streamed and wrap it in a `RecordingStream`.

        The link and each redirect hop (followed here, at most `MAX_DOWNLOAD_REDIRECTS`) are
        checked before they are requested: `RecordingLinkRefused` unless on the PBX's host or
        a `recording_hosts` entry, and never from https to http. `what` names the recording in
        messages; `on_format` hears the audio format once the response shows it. Raises
        `RecordingLinkExpired` (403/410: mint again), `RecordingMissing` (404), `PbxApiError`
        otherwise. A JSON or text body instead of audio goes to `on_non_audio` (which must
        raise), else raises `PbxApiError`.
        """
        came_from: str | None = None
        for _hop in range(MAX_DOWNLOAD_REDIRECTS + 1):
            self._check_link(url, endpoint=endpoint, what=what, came_from=came_from)
            response = self._send(
                "GET",
                url,
                endpoint=endpoint,
                stream=True,
                headers={"Accept-Encoding": "identity"},
            )
            location = response.headers.get("Location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                break
            response.close()
            came_from, url = url, urljoin(url, location)
        else:
            raise PbxApiError(
                self.pbx_name,
                endpoint,
                f"{what}: more than {MAX_DOWNLOAD_REDIRECTS} redirects",
                transient=False,
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
            expected_bytes=expected_bytes,
            on_format=on_format,
        )
