"""Types every vendor client shares: the `PbxClient` protocol, `CdrFetch` and `RecordingStream`.

This module owns the shapes the asset layer sees (architecture.md, "Vendor clients"). It knows no
vendor, no endpoint and no HTTP beyond holding an open streamed `requests.Response`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

import orjson
import requests

from cdr_assets.audio import announced_format, detect_audio
from cdr_assets.errors import PbxApiError, RecordingCorrupt
from cdr_assets.records import CdrPage, JsonRecords

#: Why `split_record_array` could not cut a body (None: it could, or the page was empty).
SplitRefusal = str
#: `}]` sequences tried as the end of the records array. Flat records hold none, so the first is
#: the end; records with nested arrays of objects would cost a parse per record to cut, and
#: their `},{` would miscount the lines anyway, so those pages are parsed whole instead.
_MAX_ARRAY_END_CANDIDATES = 3


def split_record_array(
    body: bytes, key: str = "data"
) -> tuple[dict[str, Any], JsonRecords] | SplitRefusal | None:
    """A JSON object body's envelope (with `key` emptied to `[]`) and the records of `key`.

    Only the envelope is parsed here; the records are cut from the body by their `},{`
    boundaries, so this applies to compact JSON only (PHP's `json_encode`, `\\/` escapes and all,
    is compact). The array's end is the first `}]` after its start whose removal leaves a JSON
    object with `key` empty: Laravel's envelope has a `links` array after `data`, so the last `}]`
    of the body is not it. Returns the split, None for an empty array (nothing to cut), or the
    reason it refused (pretty-printed body, no such array, newlines in it) so the caller parses
    the whole body instead. A `},{` inside a record (a nested array of objects, or a string) adds
    lines: the caller compares `len()` with the page size its envelope announces, and the
    normalizer's parse refuses a line that is not one object, then falls back to `dicts()`.
    """
    marker = b'"' + key.encode() + b'":['
    found = body.find(marker)
    if found < 0:
        return f"no compact '{key}' array (pretty-printed or unusual JSON)"
    start = found + len(marker) - 1  # the '['
    if body[start + 1 : start + 2] == b"]":
        return None
    if body[start + 1 : start + 2] != b"{":
        return f"'{key}' is not an array of objects"
    head = body[:start]
    end = _next_array_end(body, start)
    for _ in range(_MAX_ARRAY_END_CANDIDATES):
        if end < 0:
            break
        follows = body[end + 2 : end + 4]
        if follows == b',"' or follows[:1] == b"}":
            envelope = _envelope_without(head, body[end + 2 :], key)
            if envelope is not None:
                array = body[start : end + 2]
                if b"\n" in array or b"\r" in array:
                    return f"'{key}' array spans several lines"
                lines = array[1:-1].replace(b"},{", b"}\n{")
                return envelope, JsonRecords(lines, lines.count(b"\n") + 1)
        end = _next_array_end(body, end + 2)
    return f"no end of the '{key}' array that leaves a valid envelope (nested arrays in records?)"


def _next_array_end(body: bytes, start: int) -> int:
    """Index of the next `}]` at or after `start`, or -1. A one-byte `find` is a memchr; a
    two-byte one costs some 90 µs on a 200-record page, half of the whole split."""
    end = body.find(b"]", start + 1)
    while end >= 0 and body[end - 1] != 0x7D:  # "}"
        end = body.find(b"]", end + 1)
    return end - 1 if end >= 0 else -1


def _envelope_without(head: bytes, tail: bytes, key: str) -> dict[str, Any] | None:
    """`head + [] + tail` parsed, if it is a JSON object whose `key` is `[]`."""
    try:
        envelope = orjson.loads(head + b"[]" + tail)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(envelope, dict) or envelope.get(key) != []:
        return None
    return envelope


@runtime_checkable
class PbxClient(Protocol):
    """What the assets call; both vendor resources implement it, so assets never branch."""

    vendor: str

    def fetch_cdrs(self, first_day: date, last_day: date) -> CdrFetch:
        """CDRs of the PBX-local days `first_day..last_day` (inclusive), window by window."""
        ...

    def open_recording(self, recording_ref: str) -> RecordingStream:
        """Mint a fresh signed link now and open the streamed download."""
        ...

    def download_slot(self, recording_ref: str) -> AbstractContextManager[None]:
        """Hold this around a download to respect the vendor's concurrency limit."""
        ...


@dataclass(frozen=True)
class FetchedPage:
    """One API page of a pass over a window: its page number (1-based) and its records."""

    number: int
    records: CdrPage | JsonRecords


@dataclass
class PassTotals:
    """What one pass over a window saw: the API's total on each page, and what came back.

    The API's total may change while a day is paged (a CDR lands or is deleted); a pass whose
    pages did not all announce the same total is not a consistent snapshot.
    """

    first_total: int | None = None
    last_total: int | None = None
    stable: bool = True
    records: int = 0
    pages: int = 0

    def see(self, total: int, records: int) -> None:
        """Account for one page announcing `total` and holding `records` records."""
        if self.first_total is None:
            self.first_total = total
        elif total != self.last_total:
            self.stable = False
        self.last_total = total
        self.records += records
        self.pages += 1


#: Yields one pass over a window's pages from page 1, filling in the `PassTotals` as it goes.
PassPager = Callable[[PassTotals], Iterator[FetchedPage]]


class CdrWindow:
    """One query window of a fetch, which can be paged again from page 1 as often as needed.

    `label` describes the query for messages (no secrets). `start`/`end` are the instants the
    window covers, when the vendor's query makes them known (Yeastar: wall times in the PBX's
    zone; None when the server's reading of the query is unknown, as with Zorio's dates).
    Completeness (distinct CDR ids against the final total) is judged by the caller, who sees
    the normalized ids: `cdr_assets.ingest`. `days` (first, last) are the PBX-local days of the
    fetch whose rows this window holds in full (None: every day of the fetch).
    """

    def __init__(
        self,
        label: str,
        pager: PassPager,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        days: tuple[date, date] | None = None,
    ) -> None:
        self.label = label
        self.start = start
        self.end = end
        self.days = days
        self._pager = pager
        self.passes = 0
        self.last_pass = PassTotals()

    def review_pass(
        self, first_start: datetime | None, last_start: datetime | None, *, complete: bool
    ) -> bool:
        """Hear the earliest and latest start instant of the rows a pass returned (None: no
        rows) and whether the pass was complete. False means the window changed its query
        because of them (Zorio: rows outside a learned server zone) and must be paged again
        from page 1; this base window always keeps its query."""
        return True

    def fetch_pass(self) -> Iterator[FetchedPage]:
        """Page the window once from page 1; `last_pass` describes this pass as it goes."""
        self.passes += 1
        self.last_pass = PassTotals()
        yield from self._pager(self.last_pass)


class CdrFetch:
    """A lazy fetch of CDRs over one or more query windows (one API page in memory at a time).

    `windows` are for callers that judge completeness and page a window again when it drifted
    (`cdr_assets.ingest`). `pages()` / `record_pages()` are the simple stream: one pass over each
    window, in order; afterwards `api_total` is the sum of the windows' last totals and `fetched`
    the number of records yielded.
    """

    def __init__(
        self, *, pbx: str, endpoint: str, windows: list[CdrWindow], query_verified: bool = True
    ) -> None:
        self.pbx = pbx
        #: The list endpoint's path, for messages about what it returned.
        self.endpoint = endpoint
        self.windows = windows
        #: False when the PBX's reading of the window queries could not be checked (Yeastar with
        #: `verify_clock` off): then an empty answer cannot be told from a misread window.
        self.query_verified = query_verified
        self.api_total: int | None = None
        self.fetched: int | None = None

    @property
    def window_labels(self) -> list[str]:
        """Human-readable description of each window, in the order they are fetched."""
        return [window.label for window in self.windows]

    def pages(self) -> Iterator[CdrPage]:
        """Yield each page as a list of record dicts, one pass over each window."""
        for page in self.record_pages():
            yield page.dicts() if isinstance(page, JsonRecords) else page

    def record_pages(self) -> Iterator[CdrPage | JsonRecords]:
        """Like `pages()`, but a page may come as unparsed `JsonRecords` (for the normalizer,
        which parses them straight into Arrow)."""
        api_total = fetched = 0
        for window in self.windows:
            for page in window.fetch_pass():
                yield page.records
            api_total += window.last_pass.last_total or 0
            fetched += window.last_pass.records
        self.api_total = api_total
        self.fetched = fetched


class RecordingStream(AbstractContextManager["RecordingStream"]):
    """An open, streamed recording download; leave the `with` block to release the connection.

    `content_length` is the Content-Length header (None if absent), `expected_bytes` the size
    the PBX's metadata announced (Zorio `recording.file_size`; None for Yeastar). `format` is
    what the response says the audio is ("wav"/"mp3"): its Content-Type, else the magic bytes
    of the first chunk (None until then). A recording's file name says nothing reliable: a PBX
    set to MP3 downloads serves MP3 for a `.wav` record_file. `on_format`, if given, hears the
    format once it is known. `recorded_at` is when the recording started (UTC) where the
    vendor states it (Zorio `recording.recorded_at`), else None.
    """

    def __init__(
        self,
        *,
        pbx: str,
        endpoint: str,
        response: requests.Response,
        expected_bytes: int | None = None,
        on_format: Callable[[str], None] | None = None,
    ) -> None:
        self.pbx = pbx
        self.endpoint = endpoint
        self.expected_bytes = expected_bytes
        self.content_type: str | None = response.headers.get("Content-Type")
        self.content_length: int | None = _parse_content_length(
            response.headers.get("Content-Length")
        )
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        self._encoded = encoding not in ("", "identity")
        self._response = response
        self._on_format = on_format
        self.format: str | None = None
        self.recorded_at: datetime | None = None
        self.bytes_read = 0
        self._learn(announced_format(self.content_type))

    def _learn(self, fmt: str | None) -> None:
        if fmt is None or self.format is not None:
            return
        self.format = fmt
        if self._on_format is not None:
            self._on_format(fmt)

    def iter_chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the body in chunks of at most `chunk_size` bytes.

        Raises `RecordingCorrupt` when the body ends before its Content-Length, `PbxApiError`
        when the connection fails mid-body. Messages hold the endpoint path only.
        """
        try:
            for chunk in self._response.iter_content(chunk_size=chunk_size):
                if chunk:
                    if not self.bytes_read:
                        self._learn(detect_audio(chunk[:64]))
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
                transient=True,
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
