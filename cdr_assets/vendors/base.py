"""Types every vendor client shares: the `PbxClient` protocol, `CdrFetch` and `RecordingStream`.

This module owns the shapes the asset layer sees (architecture.md, "Vendor clients"). It knows no
vendor, no endpoint and no HTTP beyond holding an open streamed `requests.Response`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, Protocol, runtime_checkable

import orjson
import requests

from cdr_assets.errors import PbxApiError, RecordingCorrupt
from cdr_assets.records import CdrPage, JsonRecords


def split_record_array(body: bytes, key: str = "data") -> tuple[dict[str, Any], JsonRecords] | None:
    """A JSON object body's envelope (with `key` emptied to `[]`) and the records of `key`.

    Only the envelope is parsed here; the records are cut from the body by their `},{`
    boundaries. Returns None, so the caller parses the whole body as before, unless the body has
    the compact shape that makes this safe: `key` holds a non-empty array of objects written
    without newlines, and the body without that array is a JSON object whose `key` is `[]`. A
    `},{` inside a string would cut a record in two: the caller compares `len()` with the page
    size the envelope announces, and the normalizer's parse refuses a line that ends inside a
    string, then falls back to `dicts()`.
    """
    marker = b'"' + key.encode() + b'":[{'
    start = body.find(marker)
    if start < 0:
        return None
    start += len(marker) - 2
    end = body.rfind(b"}]")  # the last one: from the right, it costs nothing to find
    if end < start:
        return None
    end += 2
    array = body[start:end]
    if b"\n" in array or b"\r" in array:
        return None
    try:
        envelope = orjson.loads(body[:start] + b"[]" + body[end:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(envelope, dict) or envelope.get(key) != []:
        return None
    lines = array[1:-1].replace(b"},{", b"}\n{")
    return envelope, JsonRecords(lines, lines.count(b"\n") + 1)


@runtime_checkable
class PbxClient(Protocol):
    """What the assets call; both vendor resources implement it, so assets never branch."""

    vendor: str

    def fetch_cdrs(self, first_day: date, last_day: date) -> CdrFetch:
        """CDRs of the PBX-local days `first_day..last_day` (inclusive), page by page."""
        ...

    def open_recording(self, recording_ref: str) -> RecordingStream:
        """Mint a fresh signed link now and open the streamed download."""
        ...

    def download_slot(self, recording_ref: str) -> AbstractContextManager[None]:
        """Hold this around a download to respect the vendor's concurrency limit."""
        ...


class WindowCounter:
    """Running counts of one pass over one query window (what `CdrFetch` sums up)."""

    def __init__(self) -> None:
        self.api_total: int | None = None
        self.fetched = 0
        self.restarts = 0

    def reset_pass(self) -> None:
        """Start the window again from its first page (keeps `restarts`)."""
        self.api_total = None
        self.fetched = 0


#: Yields the pages of one window; sets `counter.api_total` / `counter.fetched` as it goes and
#: raises `CdrCountMismatch` itself when the counts disagree after its own restart.
WindowPager = Callable[[WindowCounter], Iterator[CdrPage | JsonRecords]]


class CdrFetch:
    """A lazy fetch of CDR pages over one or more query windows.

    `pages()` is a generator: one API page in memory at a time. When it is exhausted,
    `api_total` is the sum of the API's totals over the windows and `fetched` the number of
    records yielded in the accepted pass of each window. A window whose count disagreed with the
    API's total is fetched once more from its first page (records may arrive while a day is still
    open), so its records can be yielded twice: consumers keep one row per CDR id. `restarts`
    counts those second passes.
    """

    def __init__(self, *, pbx: str, endpoint: str, windows: list[tuple[str, WindowPager]]) -> None:
        self.pbx = pbx
        #: The list endpoint's path, for messages about what it returned.
        self.endpoint = endpoint
        #: Human-readable description of each window, in the order they are fetched.
        self.window_labels = [label for label, _ in windows]
        self._windows = windows
        self._consumed = False
        self.api_total: int | None = None
        self.fetched: int | None = None
        self.restarts = 0

    def pages(self) -> Iterator[CdrPage]:
        """Yield each page (a list of record dicts); can be consumed once."""
        for page in self.record_pages():
            yield page.dicts() if isinstance(page, JsonRecords) else page

    def record_pages(self) -> Iterator[CdrPage | JsonRecords]:
        """Like `pages()`, but a page may come as unparsed `JsonRecords` (for the normalizer,
        which parses them straight into Arrow); can be consumed once."""
        if self._consumed:
            raise RuntimeError("CdrFetch.pages() can be consumed only once; call fetch_cdrs again")
        self._consumed = True
        api_total = 0
        fetched = 0
        for _label, pager in self._windows:
            counter = WindowCounter()
            yield from pager(counter)
            api_total += counter.api_total or 0
            fetched += counter.fetched
            self.restarts += counter.restarts
        self.api_total = api_total
        self.fetched = fetched


class RecordingStream(AbstractContextManager["RecordingStream"]):
    """An open, streamed recording download; leave the `with` block to release the connection.

    `content_length` is the Content-Length header (None if absent), `expected_bytes` the size
    the PBX's metadata announced (Zorio `recording.file_size`; None for Yeastar), `extension` is
    "wav" or "mp3".
    """

    def __init__(
        self,
        *,
        pbx: str,
        endpoint: str,
        response: requests.Response,
        extension: str,
        expected_bytes: int | None = None,
    ) -> None:
        self.pbx = pbx
        self.endpoint = endpoint
        self.extension = extension
        self.expected_bytes = expected_bytes
        self.content_type: str | None = response.headers.get("Content-Type")
        self.content_length: int | None = _parse_content_length(
            response.headers.get("Content-Length")
        )
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        self._encoded = encoding not in ("", "identity")
        self._response = response
        self.bytes_read = 0

    def iter_chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the body in chunks of at most `chunk_size` bytes.

        Raises `RecordingCorrupt` when the body ends before its Content-Length, `PbxApiError`
        when the connection fails mid-body. Messages hold the endpoint path only.
        """
        try:
            for chunk in self._response.iter_content(chunk_size=chunk_size):
                if chunk:
                    self.bytes_read += len(chunk)
                    yield chunk
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            raise RecordingCorrupt(
                f"PBX {self.pbx!r}, endpoint {self.endpoint}: body ended after "
                f"{self.bytes_read} bytes (Content-Length {self.content_length})"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise PbxApiError(
                self.pbx,
                self.endpoint,
                f"download failed after {self.bytes_read} bytes ({type(exc).__name__})",
            ) from None
        if (
            not self._encoded
            and self.content_length is not None
            and self.bytes_read != self.content_length
        ):
            raise RecordingCorrupt(
                f"PBX {self.pbx!r}, endpoint {self.endpoint}: read {self.bytes_read} bytes, "
                f"Content-Length said {self.content_length}"
            )

    def close(self) -> None:
        """Release the connection (idempotent)."""
        self._response.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _parse_content_length(value: str | None) -> int | None:
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        length = int(value.strip())
        if length >= 0:
            return length
    return None


def extension_for(file_name: str | None, content_type: str | None) -> str:
    """The extension (wav or mp3) from a recording's file name, else its Content-Type."""
    if file_name:
        suffix = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
        if suffix in ("wav", "mp3"):
            return suffix
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("audio/mpeg", "audio/mp3", "audio/mpeg3", "audio/x-mpeg-3"):
        return "mp3"
    return "wav"
