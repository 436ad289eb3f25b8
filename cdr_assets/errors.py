"""Exception types shared by every layer.

Each carries the context an on-call engineer needs (PBX, endpoint, partition, errcode) and
never a secret: messages are built from redacted parts only.
"""

from __future__ import annotations

from datetime import datetime

#: HTTP statuses a later attempt may not get again (timeouts, throttling, server faults).
TRANSIENT_HTTP_STATUSES = frozenset({408, 429})


def is_transient_status(status: int | None) -> bool:
    """True for an HTTP status that a retry later may not see again: 408, 429 and 5xx."""
    return status is not None and (status in TRANSIENT_HTTP_STATUSES or 500 <= status <= 599)


class CdrAssetsError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(CdrAssetsError):
    """The config file is unreadable or a key in it is wrong; the message names the key."""


class PbxApiError(CdrAssetsError):
    """A PBX API call failed: HTTP error, vendor errcode, or a body unlike the vendor's page.

    `transient` says whether trying again later can help (a connection error, a timeout, a body
    cut off, HTTP 408/429/5xx once the transport's own retries gave up), so a caller's retry
    policy can tell those from answers that will not change (a 4xx, an HTML page, a vendor
    errcode meaning "your request is wrong"). When not given it follows `http_status`.
    """

    def __init__(
        self,
        pbx: str,
        endpoint: str,
        message: str,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        transient: bool | None = None,
    ) -> None:
        self.pbx = pbx
        self.endpoint = endpoint
        self.detail = message
        self.errcode = errcode
        self.http_status = http_status
        self.transient = is_transient_status(http_status) if transient is None else transient
        parts = [f"PBX {pbx!r}", f"endpoint {endpoint}"]
        if http_status is not None:
            parts.append(f"HTTP {http_status}")
        if errcode is not None:
            parts.append(f"errcode {errcode}")
        super().__init__(f"{', '.join(parts)}: {message}")


class PbxBodyError(PbxApiError):
    """An answer whose body is spoilt: not the API's JSON (an HTML page, a body cut short) or
    broken off mid-read. The client asks again a couple of times (a proxy or a restarting
    server can spoil one answer); a body that stays wrong is the server's answer and is not
    transient, while one that keeps breaking off is (the network, not the server's answer)."""


class PbxAuthError(PbxApiError):
    """Authentication was refused, or is suspended because it was refused before (the auth
    breaker). Never transient, never retried automatically: repeated failures block the IP."""

    def __init__(
        self,
        pbx: str,
        endpoint: str,
        message: str,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(
            pbx, endpoint, message, errcode=errcode, http_status=http_status, transient=False
        )


class RetryAfterTooLong(PbxApiError):
    """The PBX asked to be retried later than `retry_after_max_s` allows; nothing was waited.

    Not transient in the sense of "retry now": the server has said when. `retry_after_s` is how
    long it asked for, `retry_at` the UTC instant to try again at.
    """

    def __init__(
        self,
        pbx: str,
        endpoint: str,
        *,
        http_status: int,
        retry_after_s: float,
        retry_at: datetime,
        limit_s: float,
    ) -> None:
        self.retry_after_s = retry_after_s
        self.retry_at = retry_at
        super().__init__(
            pbx,
            endpoint,
            f"the server asked to retry after {retry_after_s:.0f} s (at "
            f"{retry_at:%Y-%m-%d %H:%M:%S} UTC), longer than retry_after_max_s={limit_s:g}; "
            "not waiting for it",
            http_status=http_status,
            transient=False,
        )


class RecordFormatError(CdrAssetsError):
    """A vendor record does not have the documented shape (wrong type, missing required field).

    `index` is the record's position among the records given to that normalizer call, or None
    when no single record is to blame (a body that is not JSON at all). The message names vendor,
    record and field but no position: only the caller knows pages and adds "page P, position Q".
    """

    def __init__(
        self,
        vendor: str,
        field: str,
        record_id: str | None,
        detail: str,
        *,
        index: int | None = None,
    ) -> None:
        self.vendor = vendor
        self.field = field
        self.record_id = record_id
        self.detail = detail
        self.index = index
        where = f"record {record_id!r}" if record_id else "a record"
        super().__init__(f"{vendor} {where}: field {field!r} {detail}")


class TooManyRejectedRecords(CdrAssetsError):
    """More records of one batch failed to normalize than may be quarantined.

    A systematically changed format must fail the day instead of quarantining all of it.
    """

    def __init__(
        self, pbx: str, vendor: str, rejected: int, total: int, max_rejects: int, reasons: list[str]
    ) -> None:
        self.pbx = pbx
        self.vendor = vendor
        self.rejected = rejected
        self.total = total
        self.max_rejects = max_rejects
        self.reasons = reasons
        super().__init__(
            f"PBX {pbx!r} ({vendor}): at least {rejected} of {total} records in one batch could "
            f"not be normalized, more than the {max_rejects} allowed to be quarantined; "
            f"first: {'; '.join(reasons)}"
        )


class RecordingLinkExpired(PbxApiError):
    """A signed recording link was refused (expired or rejected); mint a fresh one and retry."""


class RecordingLinkRefused(PbxApiError):
    """A recording link (or one of its redirects) points somewhere it does not belong: a host
    other than the PBX's own or those in `recording_hosts`, or from https down to http. Refused
    before any byte is requested from it; not transient."""

    def __init__(self, pbx: str, endpoint: str, message: str) -> None:
        super().__init__(pbx, endpoint, message, transient=False)


class RecordingMissing(PbxApiError):
    """The PBX says the recording does not exist (no recording object, 404, DATA NOT FOUND)."""


class RecordingCorrupt(CdrAssetsError):
    """Downloaded bytes failed verification (short body, size mismatch, implausible header)."""
