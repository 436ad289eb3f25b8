"""Ingest one PBX-local day of CDRs: page its query windows until complete, normalize, quarantine
what cannot be normalized, and write the day's `cdr` and `cdr_rejects` partitions.

Owns what a complete day means (DESIGN.md, "Guarantees"): per query window, passes from page 1
are made until one is a consistent snapshot, i.e. every page announced the same total and the
distinct CDR ids the pass returned (the day's rows, rows of other days, rejected records) equal
that total, up to `completeness_passes`. Rows of earlier passes that the accepted pass no longer
lists were deleted while the day was paged and are dropped at commit; repeated copies keep one
row. Rows belong to the day of their start instant. It knows neither HTTP (the vendor clients),
nor file formats (storage), nor Dagster (the assets wire it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.errors import CdrAssetsError
from cdr_assets.normalize import batch_pages, normalize_quarantined
from cdr_assets.records import CdrPage, JsonRecords
from cdr_assets.schema import CDR_SCHEMA
from cdr_assets.storage.parquet import (
    PartitionWriter,
    in_sorted,
    read_partition_footer,
    unique_hashes,
)
from cdr_assets.storage.rejects import RejectRow, write_rejects
from cdr_assets.vendors.base import CdrWindow, FetchedPage, PbxClient

#: Rows per Parquet row group: big enough for DuckDB to scan in parallel, small enough that the
#: buffered group (raw JSON included) stays well under 100 MB.
ROW_GROUP_ROWS = 50_000
#: Records normalized per call: Arrow's fixed per-call cost is paid per ~10,000 records.
BATCH_RECORDS = 10_000
#: How many rejected records and drifted windows a day's result lists in full.
LIST_LIMIT = 20
#: Parquet footer key of what the fetch found (`DayIngest.footer`).
FOOTER_KEY = "cdr_assets.ingest"
PREVIEW_COLUMNS = [
    "cdr_id",
    "start_time",
    "direction",
    "disposition",
    "caller_number",
    "callee_number",
    "talk_s",
    "has_recording",
]


class RejectedRecordsFailure(CdrAssetsError):
    """A record could not be normalized and the PBX is configured `on_bad_record: fail`."""


@dataclass(frozen=True)
class RejectSummary:
    """Where a quarantined record was and why (for check metadata and messages)."""

    page: int
    position: int
    cdr_id: str | None
    field: str
    reason: str

    def describe(self) -> str:
        who = f"CDR {self.cdr_id!r}" if self.cdr_id else "a record without id"
        return f"page {self.page}, position {self.position}: {who}: {self.field}: {self.reason}"


@dataclass
class WindowResult:
    """How one query window's passes went."""

    label: str
    passes: int = 0
    fetched: int = 0
    distinct: int = 0
    api_total: int = 0
    totals_stable: bool = True
    complete: bool = False

    def describe(self) -> str:
        verdict = "complete" if self.complete else "incomplete"
        stable = "" if self.totals_stable else ", total changed while paging"
        return (
            f"{self.label}: {verdict} after {self.passes} pass(es): {self.distinct} distinct of "
            f"total {self.api_total} ({self.fetched} fetched{stable})"
        )


@dataclass
class DayIngest:
    """What one local day's ingest saw and kept; every count is for this day alone."""

    day: date
    windows: list[WindowResult] = field(default_factory=list)
    rows: int = 0
    rejected: int = 0
    outside_day: int = 0
    outside_window: int = 0
    duplicates_dropped: int = 0
    deleted_while_paging: int = 0
    query_verified: bool = True
    window_bounds_known: bool = False
    rejects: list[RejectSummary] = field(default_factory=list)
    preview: pa.Table | None = None

    @property
    def api_total(self) -> int:
        return sum(w.api_total for w in self.windows)

    @property
    def fetched(self) -> int:
        """Records the API returned over every pass of every window (repeats included)."""
        return sum(w.fetched for w in self.windows)

    @property
    def distinct(self) -> int:
        return sum(w.distinct for w in self.windows)

    @property
    def passes(self) -> int:
        return max((w.passes for w in self.windows), default=0)

    @property
    def complete(self) -> bool:
        return all(w.complete for w in self.windows)

    def footer(self) -> str:
        """What the fetch found, as JSON for the partition's Parquet footer (`FOOTER_KEY`), so
        checks and later runs judge the committed day without re-fetching it."""
        return json.dumps(
            {
                "windows": [dataclasses.asdict(w) for w in self.windows],
                "rejected": self.rejected,
                "outside_day": self.outside_day,
                "outside_window": self.outside_window,
                "query_verified": self.query_verified,
                "window_bounds_known": self.window_bounds_known,
            }
        )

    @classmethod
    def from_footer(cls, day: date, text: str, rows: int) -> DayIngest:
        """The day as a committed partition's footer describes it (`rows` from the file)."""
        data = json.loads(text)
        result = cls(
            day=day,
            windows=[WindowResult(**w) for w in data["windows"]],
            rows=rows,
            rejected=data["rejected"],
            outside_day=data["outside_day"],
            outside_window=data["outside_window"],
            query_verified=data["query_verified"],
            window_bounds_known=data["window_bounds_known"],
        )
        result.duplicates_dropped = result.fetched - rows - result.rejected - result.outside_day
        return result


def read_day_ingest(data_dir: str, pbx: str, day: date) -> DayIngest | None:
    """What the committed `cdr` partition of `day` says about its fetch; None when the day was
    never written, or written without a footer (then it cannot be judged)."""
    footer = read_partition_footer(data_dir, "cdr", pbx, day)
    if footer is None or FOOTER_KEY not in footer[1]:
        return None
    rows, metadata = footer
    return DayIngest.from_footer(day, metadata[FOOTER_KEY], rows)


class _PassIds:
    """64-bit hashes of the CDR ids one pass returned (8 bytes a record: flat memory)."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.without_id = 0

    def add(self, ids: pa.Array | pa.ChunkedArray | list[str]) -> None:
        values = ids if isinstance(ids, list) else ids.to_pylist()
        self._chunks.append(np.fromiter(map(hash, values), dtype=np.int64, count=len(values)))

    def hashes(self) -> np.ndarray:
        """The distinct hashes, sorted (kept as the only chunk, so asking again is cheap)."""
        if not self._chunks:
            return np.empty(0, dtype=np.int64)
        distinct = unique_hashes(np.concatenate(self._chunks))
        self._chunks = [distinct]
        return distinct

    def distinct(self) -> int:
        return int(self.hashes().size) + self.without_id


def ingest_cdr_day(
    client: PbxClient,
    pbx: PbxConfigBase,
    storage: StorageConfig,
    day: date,
    *,
    ingested_at: datetime,
    run_id: str | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
) -> DayIngest:
    """Fetch, normalize and atomically write one local day; earlier data survives any error.

    Raises `PbxApiError` (the clients' errors name PBX and endpoint), `RejectedRecordsFailure`
    when `on_bad_record` is `fail`, or `TooManyRejectedRecords`; the day's old partitions stay.
    `on_window` hears about each window once its passes are done (for logging).
    """
    fetch = client.fetch_cdrs(day, day)
    result = DayIngest(day=day, query_verified=fetch.query_verified)
    result.window_bounds_known = all(w.start is not None for w in fetch.windows)
    rejects: list[RejectRow] = []
    metadata = {"cdr_assets.run_id": run_id} if run_id else None
    with PartitionWriter(
        storage.data_dir,
        "cdr",
        pbx.name,
        day,
        CDR_SCHEMA,
        row_group_size=ROW_GROUP_ROWS,
        file_metadata=metadata,
    ) as writer:
        superseded: list[np.ndarray] = []
        for window in fetch.windows:
            outcome = _WindowIngest(pbx, day, ingested_at, window, writer)
            window_result, window_rejects, dropped = outcome.run()
            result.windows.append(window_result)
            rejects.extend(window_rejects)
            superseded.append(dropped)
            result.outside_day += outcome.outside_day
            result.outside_window += outcome.outside_window
            if result.preview is None:
                result.preview = outcome.preview
            if on_window is not None:
                on_window(window_result)
        drop = np.concatenate(superseded) if superseded else np.empty(0, dtype=np.int64)
        result.rejected = len(rejects)
        result.rejects = [_summary(r) for r in rejects[:LIST_LIMIT]]
        written = writer.commit(
            drop_key_hashes=drop, file_metadata={FOOTER_KEY: result.footer()}
        )
    write_rejects(storage.data_dir, pbx.name, day, rejects, file_metadata=metadata)
    result.rows = written.rows
    result.deleted_while_paging = written.keys_dropped
    # Every fetched record is a row, a reject, a row of another day, or a copy not kept.
    result.duplicates_dropped = (
        result.fetched - result.rows - result.rejected - result.outside_day
    )
    return result


def _summary(row: RejectRow) -> RejectSummary:
    return RejectSummary(
        page=row.page or 0,
        position=row.position or 0,
        cdr_id=row.cdr_id,
        field=row.field,
        reason=row.reason,
    )


class _WindowIngest:
    """The passes over one query window, writing the day's rows into a shared writer."""

    def __init__(
        self,
        pbx: PbxConfigBase,
        day: date,
        ingested_at: datetime,
        window: CdrWindow,
        writer: PartitionWriter,
    ) -> None:
        self.pbx = pbx
        self.day = day
        self.ingested_at = ingested_at
        self.window = window
        self.writer = writer
        self.day_scalar = pa.scalar(day, pa.date32())
        self.outside_day = 0
        self.outside_window = 0
        self.preview: pa.Table | None = None

    def run(self) -> tuple[WindowResult, list[RejectRow], np.ndarray]:
        """(result, the accepted/last pass's rejects, hashes of ids to drop as superseded)."""
        result = WindowResult(label=self.window.label)
        earlier: list[np.ndarray] = []
        ids = _PassIds()
        rejects: list[RejectRow] = []
        for _ in range(self.pbx.completeness_passes):
            # Rejects are the last pass's; the other counts add up every pass.
            ids, rejects = _PassIds(), []
            for batch, pages in self._batches():
                self._ingest_batch(batch, pages, ids, rejects)
            totals = self.window.last_pass
            result.passes += 1
            result.fetched += totals.records
            result.api_total = totals.last_total or 0
            result.totals_stable = totals.stable
            result.distinct = ids.distinct()
            if totals.stable and result.distinct == result.api_total:
                result.complete = True
                break
            earlier.append(ids.hashes())
        dropped = np.empty(0, dtype=np.int64)
        if result.complete and earlier:
            listed = unique_hashes(np.concatenate(earlier))
            dropped = listed[~in_sorted(listed, ids.hashes())]
        return result, rejects, dropped

    def _batches(self) -> Iterator[tuple[CdrPage | JsonRecords, list[tuple[int, int]]]]:
        """Pages joined into batches of about `BATCH_RECORDS`, with (page number, length) of
        the pages in each, so a record's batch index maps back to its page and position."""
        pages: list[tuple[int, int]] = []

        def tap(fetched: Iterator[FetchedPage]) -> Iterator[CdrPage | JsonRecords]:
            for page in fetched:
                pages.append((page.number, len(page.records)))
                yield page.records

        for batch in batch_pages(tap(self.window.fetch_pass()), BATCH_RECORDS):
            yield batch, list(pages)
            pages.clear()

    def _ingest_batch(
        self,
        records: CdrPage | JsonRecords,
        pages: list[tuple[int, int]],
        ids: _PassIds,
        rejects: list[RejectRow],
    ) -> None:
        normalized = normalize_quarantined(
            self.pbx.vendor,
            records,
            pbx=self.pbx.name,
            timezone=self.pbx.timezone,
            ingested_at=self.ingested_at,
            max_rejects=self.pbx.max_rejected_records,
        )
        table = normalized.table
        ids.add(table["cdr_id"])
        in_day = table.filter(pc.equal(table["call_date"], self.day_scalar))
        self.outside_day += table.num_rows - in_day.num_rows
        if self.window.start is not None and self.window.end is not None:
            starts = table["start_time"]
            outside = pc.or_(
                pc.less(starts, pa.scalar(self.window.start, starts.type)),
                pc.greater_equal(starts, pa.scalar(self.window.end, starts.type)),
            )
            self.outside_window += pc.sum(outside.cast(pa.int64())).as_py() or 0
        self.writer.write(in_day)
        if self.preview is None and in_day.num_rows:
            self.preview = in_day.select(PREVIEW_COLUMNS).slice(0, 5)
        for reject in normalized.rejects:
            page, position = _locate(pages, reject.index)
            call_date = reject.call_date
            if reject.cdr_id is None:
                ids.without_id += 1
            else:
                ids.add([reject.cdr_id])
            if call_date is not None and call_date != self.day:
                self.outside_day += 1  # its own day's run quarantines it
                continue
            if self.pbx.on_bad_record == "fail":
                who = f"record {reject.cdr_id!r}" if reject.cdr_id else "a record without id"
                raise RejectedRecordsFailure(
                    f"PBX {self.pbx.name!r}, window {self.window.label}, page {page}, position "
                    f"{position}: {self.pbx.vendor} {who}: field {reject.field!r} "
                    f"{reject.reason} (on_bad_record: fail; with quarantine the day's other "
                    "CDRs land and this one goes to cdr_rejects)"
                )
            rejects.append(
                RejectRow(
                    pbx=self.pbx.name,
                    vendor=self.pbx.vendor,
                    call_date=call_date,
                    cdr_id=reject.cdr_id,
                    field=reject.field,
                    reason=reject.reason,
                    raw=reject.raw,
                    page=page,
                    position=position,
                    ingested_at=self.ingested_at,
                )
            )


def _locate(pages: list[tuple[int, int]], index: int) -> tuple[int, int]:
    """(page number, 1-based position in that page) of record `index` (0-based) of a batch."""
    for number, length in pages:
        if index < length:
            return number, index + 1
        index -= length
    return (pages[-1][0] if pages else 0), index + 1
