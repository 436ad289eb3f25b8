"""Ingest PBX-local days of CDRs: page their query windows until complete, normalize, quarantine
what cannot be normalized, and write each day's `cdr` and `cdr_rejects` partitions.

Owns what a complete day means (DESIGN.md, "Guarantees"): per query window, passes from page 1
are made until one is a consistent snapshot, i.e. every page announced the same total and the
distinct CDR ids the pass returned (the day's rows, rows of other days, rejected records) equal
that total, up to `completeness_passes`. Rows of earlier passes that the accepted pass no longer
lists were deleted while the day was paged and are dropped at commit; repeated copies keep one
row. Rows belong to the day of their start instant. Consecutive days are fetched together (one
query window holds many days; each day still gets its own writer, counts, footer and commit).
It knows neither HTTP (the vendor clients),
nor file formats (storage), nor Dagster (the assets wire it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

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
from cdr_assets.vendors.base import CdrFetch, CdrWindow, FetchedPage, PbxClient

#: Rows per Parquet row group: big enough for DuckDB to scan in parallel, small enough that the
#: buffered group (raw JSON included) stays well under 100 MB.
ROW_GROUP_ROWS = 50_000
#: Records normalized per call: Arrow's fixed per-call cost is paid per ~10,000 records.
BATCH_RECORDS = 10_000
#: How many rejected records and drifted windows a day's result lists in full.
LIST_LIMIT = 20
#: Consecutive days fetched together at most: a fetch's days are committed when its windows are
#: complete, and until then its ids are kept as 8-byte hashes (per pass and per day writer).
#: Zorio's 30-date cap holds 28 days with a margin date on each side.
FETCH_DAYS = 28
ONE_DAY = timedelta(days=1)
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


class DaysNotIngested(CdrAssetsError):
    """A query window of a fetch failed: none of its days was committed (the days of earlier
    windows were, and were yielded). `days` are the window's days, `error` the cause."""

    def __init__(self, days: list[date], error: CdrAssetsError) -> None:
        super().__init__(str(error))
        self.days = days
        self.error = error


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
    try:
        (result,) = ingest_cdr_days(
            client, pbx, storage, [day], ingested_at=ingested_at, run_id=run_id, on_window=on_window
        )
    except DaysNotIngested as exc:
        raise exc.error from None
    return result


def ingest_cdr_days(
    client: PbxClient,
    pbx: PbxConfigBase,
    storage: StorageConfig,
    days: Iterable[date],
    *,
    ingested_at: datetime,
    run_id: str | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
) -> Iterator[DayIngest]:
    """Fetch, normalize and atomically write each of `days`, yielding each one, in order, as
    soon as it is committed.

    Consecutive days are fetched together, `FETCH_DAYS` at most (`client.fetch_cdrs(first,
    last)`), so a range pays the vendor's margins once per query window, not once per day. A
    row goes to the day of its start instant through that day's own `PartitionWriter` (all of
    them together hold at most `ROW_GROUP_ROWS` rows in memory); a day is committed once every
    window holding its rows is complete, so a killed run leaves the days committed before and
    never half a day. Each day keeps its own counts, rejects and footer, exactly as if it had
    been fetched alone; only the windows (and their totals) are shared. Raises
    `DaysNotIngested` naming the days of the window that failed; earlier days stay committed.
    """
    for first, last in _fetch_spans(sorted(set(days))):
        fetch = _FetchIngest(client, pbx, storage, first, last, ingested_at, run_id, on_window)
        yield from fetch.run()


def _fetch_spans(days: list[date]) -> list[tuple[date, date]]:
    """Runs of consecutive days, cut every `FETCH_DAYS` days."""
    spans: list[tuple[date, date]] = []
    for day in days:
        if spans and day == spans[-1][1] + ONE_DAY and (day - spans[-1][0]).days < FETCH_DAYS:
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def _day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass
class _Day:
    """One day of a fetch while its windows are paged: its writer and its own counts."""

    result: DayIngest
    writer: PartitionWriter
    windows: list[_WindowIngest] = field(default_factory=list)
    #: Records of this day over every pass of its windows: rows written and its rejects.
    in_day: int = 0
    rejects: list[RejectRow] = field(default_factory=list)
    superseded: list[np.ndarray] = field(default_factory=list)


class _FetchIngest:
    """One `fetch_cdrs` over consecutive days: windows in order, each day committed after the
    last window holding its rows."""

    def __init__(
        self,
        client: PbxClient,
        pbx: PbxConfigBase,
        storage: StorageConfig,
        first: date,
        last: date,
        ingested_at: datetime,
        run_id: str | None,
        on_window: Callable[[WindowResult], None] | None,
    ) -> None:
        self.client = client
        self.pbx = pbx
        self.storage = storage
        self.first = first
        self.last = last
        self.ingested_at = ingested_at
        self.metadata = {"cdr_assets.run_id": run_id} if run_id else None
        self.on_window = on_window

    def run(self) -> Iterator[DayIngest]:
        try:
            fetch = self.client.fetch_cdrs(self.first, self.last)
        except CdrAssetsError as exc:  # e.g. Yeastar's clock check
            raise DaysNotIngested(_day_range(self.first, self.last), exc) from exc
        spans = [self._days_of(window) for window in fetch.windows]
        last_window = {day: index for index, span in enumerate(spans) for day in span}
        open_days: dict[date, _Day] = {}
        with contextlib.ExitStack() as writers:
            for index, (window, span) in enumerate(zip(fetch.windows, spans, strict=True)):
                for day in span:
                    if day not in open_days:
                        open_days[day] = self._open_day(day, fetch, writers)
                days = {day: open_days[day] for day in span}
                try:
                    outcome = _WindowIngest(self.pbx, self.ingested_at, window, days)
                    outcome.run()
                except CdrAssetsError as exc:
                    raise DaysNotIngested(span, exc) from exc
                if self.on_window is not None:
                    self.on_window(outcome.result)
                for day in [d for d in span if last_window[d] == index]:
                    yield self._commit(open_days.pop(day))  # recorded before the next commits

    def _days_of(self, window: CdrWindow) -> list[date]:
        first, last = window.days or (self.first, self.last)
        return _day_range(max(first, self.first), min(last, self.last))

    def _open_day(self, day: date, fetch: CdrFetch, writers: contextlib.ExitStack) -> _Day:
        writer = PartitionWriter(
            self.storage.data_dir,
            "cdr",
            self.pbx.name,
            day,
            CDR_SCHEMA,
            row_group_size=ROW_GROUP_ROWS,
            file_metadata=self.metadata,
        )
        writers.enter_context(writer)
        return _Day(DayIngest(day=day, query_verified=fetch.query_verified), writer)

    def _commit(self, state: _Day) -> DayIngest:
        """Write the day's footer, swap its `cdr` and `cdr_rejects` partitions in."""
        result = state.result
        result.windows = [w.result for w in state.windows]
        result.window_bounds_known = all(w.bounds_known for w in state.windows)
        result.outside_window = sum(w.outside_window for w in state.windows)
        # Every record of the day's windows that is neither a row nor a reject of this day.
        result.outside_day = result.fetched - state.in_day
        result.rejected = len(state.rejects)
        result.rejects = [_summary(r) for r in state.rejects[:LIST_LIMIT]]
        drop = np.concatenate(state.superseded) if state.superseded else np.empty(0, np.int64)
        try:
            written = state.writer.commit(
                drop_key_hashes=drop, file_metadata={FOOTER_KEY: result.footer()}
            )
            write_rejects(
                self.storage.data_dir,
                self.pbx.name,
                result.day,
                state.rejects,
                file_metadata=self.metadata,
            )
        except CdrAssetsError as exc:
            raise DaysNotIngested([result.day], exc) from exc
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
    """The passes over one query window, writing each row into its day's writer."""

    def __init__(
        self,
        pbx: PbxConfigBase,
        ingested_at: datetime,
        window: CdrWindow,
        days: dict[date, _Day],
    ) -> None:
        self.pbx = pbx
        self.ingested_at = ingested_at
        self.window = window
        self.days = days
        #: Where a reject without a known day is filed.
        self.home_day = min(days)
        self.result = WindowResult(label=window.label)
        self.bounds_known = window.start is not None
        self.outside_window = 0
        self.first_start: datetime | None = None
        self.last_start: datetime | None = None
        for state in days.values():
            state.windows.append(self)

    def run(self) -> None:
        """Page until a pass is a consistent snapshot (or `completeness_passes` are spent);
        the days get the accepted (last) pass's rejects and the ids to drop as superseded."""
        result = self.result
        earlier: list[np.ndarray] = []
        ids = _PassIds()
        rejects: dict[date, list[RejectRow]] = {}
        counted = 0
        # One more pass than configured when the window changes its query after a pass.
        for _ in range(self.pbx.completeness_passes + 1):
            # Rejects and outside_window are the last pass's; the other counts add up passes.
            ids, rejects = _PassIds(), {}
            self.outside_window = 0
            self.first_start = self.last_start = None
            self.bounds_known = self.window.start is not None and self.window.end is not None
            for batch, pages in self._batches():
                self._ingest_batch(batch, pages, ids, rejects)
            totals = self.window.last_pass
            result.passes += 1
            result.fetched += totals.records
            result.api_total = totals.last_total or 0
            result.totals_stable = totals.stable
            result.distinct = ids.distinct()
            complete = totals.stable and result.distinct == result.api_total
            if not self.window.review_pass(self.first_start, self.last_start, complete=complete):
                earlier.append(ids.hashes())  # its rows stand, as an earlier pass's do
                result.label = self.window.label
                continue
            counted += 1
            if complete:
                result.complete = True
                break
            if counted == self.pbx.completeness_passes:
                break
            earlier.append(ids.hashes())
        dropped = np.empty(0, dtype=np.int64)
        if result.complete and earlier:
            listed = unique_hashes(np.concatenate(earlier))
            dropped = listed[~in_sorted(listed, ids.hashes())]
        for day, state in self.days.items():
            state.rejects.extend(rejects.get(day, []))
            state.superseded.append(dropped)

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
        rejects: dict[date, list[RejectRow]],
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
        starts = table["start_time"]
        if table.num_rows:
            span = pc.min_max(starts).as_py()
            self._see_starts(span["min"], span["max"])
        if self.bounds_known:
            assert self.window.start is not None and self.window.end is not None
            outside = pc.or_(
                pc.less(starts, pa.scalar(self.window.start, starts.type)),
                pc.greater_equal(starts, pa.scalar(self.window.end, starts.type)),
            )
            self.outside_window += pc.sum(outside.cast(pa.int64())).as_py() or 0
        for day, rows in _rows_by_day(table, self.days):
            state = self.days[day]
            state.writer.write(rows)
            state.in_day += rows.num_rows
            if state.result.preview is None and rows.num_rows:
                state.result.preview = rows.select(PREVIEW_COLUMNS).slice(0, 5)
        _bound_buffers([state.writer for state in self.days.values()])
        for reject in normalized.rejects:
            page, position = _locate(pages, reject.index)
            if reject.cdr_id is None:
                ids.without_id += 1
            else:
                ids.add([reject.cdr_id])
            day = self.home_day if reject.call_date is None else reject.call_date
            if day not in self.days:
                continue  # its own day's fetch quarantines it
            self.days[day].in_day += 1
            if self.pbx.on_bad_record == "fail":
                who = f"record {reject.cdr_id!r}" if reject.cdr_id else "a record without id"
                raise RejectedRecordsFailure(
                    f"PBX {self.pbx.name!r}, window {self.window.label}, page {page}, position "
                    f"{position}: {self.pbx.vendor} {who}: field {reject.field!r} "
                    f"{reject.reason} (on_bad_record: fail; with quarantine the day's other "
                    "CDRs land and this one goes to cdr_rejects)"
                )
            rejects.setdefault(day, []).append(
                RejectRow(
                    pbx=self.pbx.name,
                    vendor=self.pbx.vendor,
                    call_date=reject.call_date,
                    cdr_id=reject.cdr_id,
                    field=reject.field,
                    reason=reject.reason,
                    raw=reject.raw,
                    page=page,
                    position=position,
                    ingested_at=self.ingested_at,
                )
            )

    def _see_starts(self, first: datetime, last: datetime) -> None:
        if self.first_start is None or first < self.first_start:
            self.first_start = first
        if self.last_start is None or last > self.last_start:
            self.last_start = last


def _rows_by_day(table: pa.Table, days: dict[date, _Day]) -> Iterator[tuple[date, pa.Table]]:
    """The batch's rows of each of `days` (a batch mostly holds one or two days)."""
    dates = table["call_date"]
    present = [d for d in pc.unique(dates).to_pylist() if d in days]
    if len(present) == 1 and pc.all(pc.equal(dates, pa.scalar(present[0], dates.type))).as_py():
        yield present[0], table
        return
    for day in present:
        yield day, table.filter(pc.equal(dates, pa.scalar(day, dates.type)))


def _bound_buffers(writers: list[PartitionWriter]) -> None:
    """Flush the fullest writers while the open days buffer over `ROW_GROUP_ROWS` rows in all
    (one day's writer alone never does: it writes a row group at that size itself)."""
    buffered = sum(w.buffered_rows for w in writers)
    if buffered <= ROW_GROUP_ROWS:
        return
    for writer in sorted(writers, key=lambda w: w.buffered_rows, reverse=True):
        buffered -= writer.buffered_rows
        writer.flush()
        if buffered <= ROW_GROUP_ROWS // 2:
            return


def _locate(pages: list[tuple[int, int]], index: int) -> tuple[int, int]:
    """(page number, 1-based position in that page) of record `index` (0-based) of a batch."""
    for number, length in pages:
        if index < length:
            return number, index + 1
        index -= length
    return (pages[-1][0] if pages else 0), index + 1
