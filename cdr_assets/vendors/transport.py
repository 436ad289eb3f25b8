"""HTTP transport shared by the vendor clients: session, retries, redaction, error wrapping.

This module owns how bytes travel (one `requests.Session` per resource, urllib3 `Retry` on
408/429/5xx for GETs honouring a bounded `Retry-After`, requests that must reach the server at most
once, the User-Agent on every request) and how secrets are kept
out of logs and exceptions (`redact_url`, a logging filter on urllib3's debug lines, exception
messages built from safe parts). It must not know what any endpoint means: no tokens, no paging,
no vendor error codes.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.cookiejar
import logging
import math
import os
import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies
from urllib3.connectionpool import ConnectionPool
from urllib3.response import BaseHTTPResponse

from cdr_assets.errors import PbxApiError, PbxBodyError

#: Query-parameter names whose values are secrets (compared case-insensitively).
SECRET_QUERY_PARAMS = frozenset(
    {
        "access_token",
        "refresh_token",
        "token",
        "api_token",
        "apikey",
        "api_key",
        "key",
        "signature",
        "sig",
        "expires",
        "password",
        "client_secret",
        "secret",
        "random",
    }
)
#: Name prefixes that mark signed-URL parameters (`expires_at`, `X-Amz-Signature`, ...).
SECRET_QUERY_PREFIXES = ("expires", "x-amz-", "x-goog-")

REDACTED = "***"

#: Path prefixes after which the rest of the path is a capability (Yeastar's
#: `download_resource_url` carries a random/signed file name).
SECRET_PATH_PREFIXES = ("/api/download/",)

#: Status codes retried by the transport (with `Retry-After` when the server sends one).
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
#: Statuses by which a server asks its clients to slow down (heard by `hearing_throttling`).
THROTTLE_STATUSES = (429, 503)
#: Statuses whose `Location` a client may follow (downloads do, hop by hop, after checking it).
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
#: Methods the transport may send again after the server may have seen them.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})

#: urllib3/requests loggers that print request paths (with their query strings) at DEBUG.
URL_LOGGING_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.util.retry",
    "urllib3.poolmanager",
    "requests",
)


def is_secret_param(name: str) -> bool:
    """True if a query parameter of this name carries a secret."""
    lowered = name.strip().lower()
    return lowered in SECRET_QUERY_PARAMS or lowered.startswith(SECRET_QUERY_PREFIXES)


def redact_url(url: str) -> str:
    """Return `url` with the values of secret query parameters (and any password) replaced.

    Parameter names are kept, values become `***`: `...?access_token=abc&page=2` ->
    `...?access_token=***&page=2`. Works on absolute URLs and on bare paths.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}" if ":" in userinfo else netloc
    query = "&".join(_redact_query_item(item) for item in parts.query.split("&"))
    path = parts.path
    for prefix in SECRET_PATH_PREFIXES:
        if path.startswith(prefix):
            path = prefix + REDACTED
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def url_path(url: str) -> str:
    """The path of `url` without query string or fragment (safe to put in a message)."""
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return "<unparseable url>"


def _redact_query_item(item: str) -> str:
    name, sep, _value = item.partition("=")
    if sep and is_secret_param(unquote_plus(name)):
        return f"{name}={REDACTED}"
    return item


_NAMES = "|".join(
    sorted((re.escape(n) for n in SECRET_QUERY_PARAMS), key=len, reverse=True)
    + [re.escape(p) + r"[A-Za-z0-9_\-]*" for p in SECRET_QUERY_PREFIXES]
)
_QUERY_SECRET = re.compile(rf"(?i)(?<![A-Za-z0-9_\-])({_NAMES})=([^&\s\"'#<>,;)]*)")
_JSON_SECRET = re.compile(rf"(?i)(\"(?:{_NAMES}|username)\"\s*:\s*\")([^\"]*)(\")")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+")
_SECRET_PATH = re.compile(
    "(" + "|".join(re.escape(p) for p in SECRET_PATH_PREFIXES) + r")[^\s?#\"']+"
)


def redact_text(text: str) -> str:
    """Redact secret values in free text: `name=value` pairs, JSON `"name": "value"`, Bearer
    tokens and capability paths (`/api/download/...`)."""
    text = _SECRET_PATH.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _JSON_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


class RedactingLogFilter(logging.Filter):
    """Rewrites a log record's message with `redact_text` (urllib3 logs full request paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to break
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_LOG_FILTER = RedactingLogFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to the loggers that print URLs (idempotent)."""
    for name in URL_LOGGING_LOGGERS:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


#: Hears that a request of this thread was answered with a `THROTTLE_STATUSES` status: the
#: status and the `Retry-After` it asked for in seconds (None: no usable header).
ThrottleListener = Callable[[int, float | None], None]
_THROTTLE_LISTENER: ContextVar[ThrottleListener | None] = ContextVar(
    "cdr_assets_throttle_listener", default=None
)


@contextlib.contextmanager
def hearing_throttling(listener: ThrottleListener) -> Iterator[None]:
    """Within the block, `listener` hears every 429/503 the requests of this thread get, as the
    retry policy sees them (before it waits and asks again), so a caller running several
    requests at once can slow down as a whole. The transport still retries as before."""
    token = _THROTTLE_LISTENER.set(listener)
    try:
        yield
    finally:
        _THROTTLE_LISTENER.reset(token)


class RetryAfterExceeded(Exception):
    """Raised out of a request by `CappedRetry` when the server asks to be retried later than
    allowed: nothing was waited. `status` is the answer's HTTP status, `retry_after_s` how long
    it asked for, `retry_at` the UTC instant that is. Not an `OSError` (as requests' exceptions
    are), so requests lets it through instead of calling it a connection error."""

    def __init__(self, status: int, retry_after_s: float, retry_at: datetime, limit_s: float):
        super().__init__(f"HTTP {status}: Retry-After {retry_after_s:.0f} s exceeds {limit_s:g} s")
        self.status = status
        self.retry_after_s = retry_after_s
        self.retry_at = retry_at
        self.limit_s = limit_s


class CappedRetry(urllib3.Retry):
    """`urllib3.Retry` whose `Retry-After` handling can neither stall a run nor hot-loop it.

    urllib3 2 treats `Retry-After: 0` as "no hint" (exponential backoff applies) but raises
    `InvalidHeader` on a negative or fractional value and sleeps up to 6 hours. Here a value that
    is not a positive number of seconds or a future HTTP-date is "no hint"; one up to
    `max_retry_after_s` is honoured; a longer one makes the request fail at once with
    `RetryAfterExceeded` instead of sleeping (a run must not hang for hours, and a retry before
    the time the server named only earns another refusal).
    """

    def __init__(self, *args: Any, max_retry_after_s: float = 60.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after_s = max_retry_after_s

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.max_retry_after_s = self.max_retry_after_s
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        text = retry_after.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return 0.0
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        if not math.isfinite(seconds) or seconds <= 0:
            return 0.0
        return seconds

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        """Refuse to schedule a retry the server asked to come back for too late; tell the
        thread's throttle listener (`hearing_throttling`) about a 429/503."""
        if response is not None and error is None:
            wait = self.get_retry_after(response) if self.respect_retry_after_header else None
            listener = _THROTTLE_LISTENER.get()
            if listener is not None and response.status in THROTTLE_STATUSES:
                listener(response.status, wait or None)
            if wait is not None and wait > self.max_retry_after_s:
                response.drain_conn()
                raise RetryAfterExceeded(
                    response.status,
                    wait,
                    datetime.now(UTC) + timedelta(seconds=wait),
                    self.max_retry_after_s,
                )
        return super().increment(method, url, response, error, _pool, _stacktrace)


def build_retry(
    *,
    max_retries: int,
    backoff_factor: float,
    backoff_max_s: float,
    retry_after_max_s: float = 60.0,
) -> CappedRetry:
    """The retry policy of every vendor request but the ones that must not be repeated: GETs are
    retried on connection errors, read errors, 408, 429 and 5xx (`Retry-After` honoured up to
    `retry_after_max_s`, else `RetryAfterExceeded`); other methods only when the connection
    could not be made, so nothing was sent."""
    return CappedRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        redirect=0,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max_s,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=IDEMPOTENT_METHODS,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
        max_retry_after_s=retry_after_max_s,
    )


def build_send_once_retry(*, max_retries: int, backoff_factor: float) -> urllib3.Retry:
    """The retry policy of requests that must reach the server at most once (Yeastar's token
    POSTs: a repeated `get_token` can orphan tokens against the PBX's cap, and each refused one
    counts towards an IP block): retried only when the connection could not be made, never after
    a read timeout, a reset once sent, or any status."""
    return urllib3.Retry(
        total=max_retries,
        connect=max_retries,
        read=False,
        status=0,
        other=0,
        redirect=0,
        backoff_factor=backoff_factor,
        status_forcelist=(),
        respect_retry_after_header=False,
        raise_on_status=False,
        raise_on_redirect=False,
    )


class EnvironmentOnceSession(requests.Session):
    """A `requests.Session` that reads the proxy environment (`HTTP(S)_PROXY`, `NO_PROXY`) once per
    scheme and host, and `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` once, instead of on every request.

    Plain requests scans `os.environ` twice per request for them: about 0.2 ms, some 15 % of a
    page answered on a LAN. The answers are the same as requests' own as long as the environment
    does not change while the session lives (a resource builds its session per run)."""

    def __init__(self) -> None:
        super().__init__()
        self._proxies_by_host: dict[tuple[str, str, str | None], dict[str, str]] = {}
        self._ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def merge_environment_settings(
        self,
        url: str,
        proxies: dict[str, str] | None,
        stream: bool | None,
        verify: bool | str | None,
        cert: Any,
    ) -> dict[str, Any]:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        key = (parts.scheme, parts.netloc, no_proxy)
        env_proxies = self._proxies_by_host.get(key)
        if env_proxies is None:
            env_proxies = self._proxies_by_host[key] = get_environ_proxies(url, no_proxy=no_proxy)
        merged = dict(proxies or {})
        for scheme, proxy in env_proxies.items():
            merged.setdefault(scheme, proxy)
        if verify is True or verify is None:
            verify = self._ca_bundle or verify
        return {
            "proxies": merge_setting(merged, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


def build_session(
    *,
    user_agent: str,
    max_retries: int,
    backoff_factor: float,
    verify_tls: bool | str,
    pool_size: int,
    backoff_max_s: float = 30.0,
    retry_after_max_s: float = 60.0,
    send_once_prefixes: Sequence[str] = (),
) -> requests.Session:
    """A `requests.Session` sending `user_agent` on every request, retrying GETs on connection
    errors, 408, 429 and 5xx up to `max_retries` times with exponential backoff (at most
    `backoff_max_s`; a `Retry-After` up to `retry_after_max_s` is honoured, a longer one raises
    `RetryAfterExceeded`). Requests to a URL under one of `send_once_prefixes` are sent at most
    once (retried only on connect failures). `verify_tls` is True/False or a CA bundle path."""
    if not user_agent.strip():
        raise ValueError("user_agent must not be empty (Yeastar requires a User-Agent header)")
    install_log_redaction()
    session = EnvironmentOnceSession()
    session.headers["User-Agent"] = user_agent
    # The session is shared by threads (pages in flight, downloads). Requests leaves it alone
    # while sending except for its cookie jar, which it iterates without a lock: keep no
    # cookies (the APIs authenticate by header or query, never by cookie).
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.verify = verify_tls
    adapter = HTTPAdapter(
        max_retries=build_retry(
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            backoff_max_s=backoff_max_s,
            retry_after_max_s=retry_after_max_s,
        ),
        pool_connections=max(1, pool_size),
        pool_maxsize=max(1, pool_size),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if send_once_prefixes:
        # requests picks the adapter of the longest matching prefix.
        send_once = HTTPAdapter(
            max_retries=build_send_once_retry(
                max_retries=max_retries, backoff_factor=backoff_factor
            )
        )
        for prefix in send_once_prefixes:
            session.mount(prefix, send_once)
    return session


def describe_request_exception(exc: requests.exceptions.RequestException) -> str:
    """A message for a failed request that never contains its URL (requests' strings do)."""
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"timed out connecting ({name})"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no response within the timeout ({name})"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS verification or handshake failed; check verify_tls / ca_bundle ({name})"
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"the proxy refused or failed the request ({name})"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = _root_reason(exc)
        if isinstance(reason, urllib3.exceptions.ReadTimeoutError):  # after urllib3's retries
            return f"no response within the timeout ({name}: {type(reason).__name__})"
        return f"connection failed ({name}: {type(reason).__name__})"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"the connection broke while reading the body ({name})"
    return f"request failed ({name})"


def _root_reason(exc: BaseException) -> BaseException:
    reason: BaseException = exc
    for _ in range(5):
        nxt = getattr(reason, "reason", None)
        if nxt is None and reason.args and isinstance(reason.args[0], BaseException):
            nxt = reason.args[0]
        if not isinstance(nxt, BaseException) or nxt is reason:
            break
        reason = nxt
    return reason


def request_failure(
    pbx: str, endpoint: str, exc: requests.exceptions.RequestException
) -> PbxApiError:
    """Turn a `requests` exception into a `PbxApiError` without the secret-bearing URL.

    Raise the result `from None`: the original exception's text holds the full URL. Connection
    failures, timeouts and bodies cut off are transient (a body cut off is a `PbxBodyError`,
    which the vendor clients ask for again); a certificate that does not verify, a malformed
    URL or a redirect loop are not.
    """
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        # the headers came, the body broke off: the answer is spoilt, not refused
        return PbxBodyError(pbx, endpoint, describe_request_exception(exc), transient=True)
    return PbxApiError(
        pbx, endpoint, describe_request_exception(exc), transient=is_transient_failure(exc)
    )


def is_transient_failure(exc: requests.exceptions.RequestException) -> bool:
    """True when the same request may succeed later (network trouble, not a configuration)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return not isinstance(_root_reason(exc), ssl.SSLCertVerificationError)
    return isinstance(
        exc,
        (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ),
    )


def decode_json_body(pbx: str, endpoint: str, response: requests.Response) -> Any:
    """The response body parsed as JSON, or a `PbxApiError` saying what came instead.

    The body itself is left out of the message: an error page may echo the request URL.
    """
    content = response.content
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        content_type = response.headers.get("Content-Type", "none")
        looks = "an HTML page" if content.lstrip()[:1] == b"<" else "not JSON"
        raise PbxBodyError(
            pbx,
            endpoint,
            f"response body is {looks} (Content-Type {content_type!r}, {len(content)} bytes)",
            http_status=response.status_code,
            transient=False,
        ) from None
