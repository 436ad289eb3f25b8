"""HTTP transport shared by the vendor clients: session, retries, redaction, error wrapping.

This module owns how bytes travel (one `requests.Session` per resource, urllib3 `Retry` on
429/5xx honouring a sane `Retry-After`, the User-Agent on every request) and how secrets are kept
out of logs and exceptions (`redact_url`, a logging filter on urllib3's debug lines, exception
messages built from safe parts). It must not know what any endpoint means: no tokens, no paging,
no vendor error codes.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader

from cdr_assets.errors import PbxApiError

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
RETRY_STATUSES = (429, 500, 502, 503, 504)

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


class CappedRetry(urllib3.Retry):
    """`urllib3.Retry` whose `Retry-After` handling cannot stall or hot-loop a run.

    urllib3 2 treats `Retry-After: 0` as "no hint" (exponential backoff applies) but raises
    `InvalidHeader` on a negative or fractional value and honours up to 6 hours. Here a value
    that is not a positive number is "no hint" and a positive one is capped at `backoff_max`.
    """

    def parse_retry_after(self, retry_after: str) -> float:
        text = retry_after.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = super().parse_retry_after(text)
            except InvalidHeader:
                return 0.0
        if not math.isfinite(seconds) or seconds <= 0:
            return 0.0
        cap = min(self.backoff_max, getattr(self, "retry_after_max", self.backoff_max))
        return min(seconds, cap)


def build_retry(*, max_retries: int, backoff_factor: float, backoff_max_s: float) -> CappedRetry:
    """The retry policy of every vendor session (GET, and POST: the clients' only POSTs are the
    Yeastar token calls, where a 5xx is a server fault, not an auth failure)."""
    return CappedRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        redirect=0,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max_s,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )


def build_session(
    *,
    user_agent: str,
    max_retries: int,
    backoff_factor: float,
    verify_tls: bool | str,
    pool_size: int,
    backoff_max_s: float = 30.0,
) -> requests.Session:
    """A `requests.Session` sending `user_agent` on every request, retrying 429/5xx and
    connection errors up to `max_retries` times with exponential backoff (`Retry-After` honoured,
    capped at `backoff_max_s`). `verify_tls` is True/False or a CA bundle path."""
    if not user_agent.strip():
        raise ValueError("user_agent must not be empty (Yeastar requires a User-Agent header)")
    install_log_redaction()
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    session.verify = verify_tls
    adapter = HTTPAdapter(
        max_retries=build_retry(
            max_retries=max_retries, backoff_factor=backoff_factor, backoff_max_s=backoff_max_s
        ),
        pool_connections=max(1, pool_size),
        pool_maxsize=max(1, pool_size),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
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

    Raise the result `from None`: the original exception's text holds the full URL.
    """
    return PbxApiError(pbx, endpoint, describe_request_exception(exc))


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
        raise PbxApiError(
            pbx,
            endpoint,
            f"response body is {looks} (Content-Type {content_type!r}, {len(content)} bytes)",
            http_status=response.status_code,
        ) from None
