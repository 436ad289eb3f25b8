"""Exception types shared by every layer.

Each carries the context an on-call engineer needs (PBX, endpoint, partition, errcode) and
never a secret: messages are built from redacted parts only.
"""

from __future__ import annotations


class CdrAssetsError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(CdrAssetsError):
    """The config file is unreadable or a key in it is wrong; the message names the key."""


class PbxApiError(CdrAssetsError):
    """A PBX API call failed: HTTP error, vendor errcode, or a body unlike the vendor's page."""

    def __init__(
        self,
        pbx: str,
        endpoint: str,
        message: str,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
    ) -> None:
        self.pbx = pbx
        self.endpoint = endpoint
        self.errcode = errcode
        self.http_status = http_status
        parts = [f"PBX {pbx!r}", f"endpoint {endpoint}"]
        if http_status is not None:
            parts.append(f"HTTP {http_status}")
        if errcode is not None:
            parts.append(f"errcode {errcode}")
        super().__init__(f"{', '.join(parts)}: {message}")


class PbxAuthError(PbxApiError):
    """Authentication was refused. Never retried automatically: repeated failures block the IP."""


class CdrCountMismatch(PbxApiError):
    """Paging ended with a different number of records than the API's own total."""


class RecordFormatError(CdrAssetsError):
    """A vendor record does not have the documented shape (wrong type, missing required field)."""

    def __init__(self, vendor: str, field: str, record_id: str | None, detail: str) -> None:
        self.vendor = vendor
        self.field = field
        self.record_id = record_id
        where = f"record {record_id!r}" if record_id else "a record"
        super().__init__(f"{vendor} {where}: field {field!r} {detail}")


class RecordingLinkExpired(PbxApiError):
    """A signed recording link was refused (expired or rejected); mint a fresh one and retry."""


class RecordingMissing(PbxApiError):
    """The PBX says the recording does not exist (no recording object, 404, DATA NOT FOUND)."""


class RecordingCorrupt(CdrAssetsError):
    """Downloaded bytes failed verification (short body, size mismatch, implausible header)."""
