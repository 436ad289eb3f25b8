"""`ingest_cdr_day(s)` over real HTTP: complete days under drift, quarantine, windows, DST, and
ranges of days fetched in few windows.

Each test runs a day through the real vendor client against the simulator and checks what was
committed to Parquet (not the run's own counters) against what the simulator serves.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cdr_assets.config import parse_config
from cdr_assets.ingest import (
    DayIngest,
    DaysNotIngested,
    RejectedRecordsFailure,
    ingest_cdr_day,
    ingest_cdr_days,
    read_day_ingest,
)
from cdr_assets.simulator import DELETE, SERVER_STYLES, Simulator
from cdr_assets.storage.parquet import read_partition
from cdr_assets.storage.rejects import read_rejects
from cdr_assets.vendors import VENDOR_RESOURCES

DAY = date(2026, 6, 27)
ID_FIELD = {"yeastar": "uid", "zorio": "uuid"}
NOW = datetime(2026, 6, 28, 3, 0, tzinfo=UTC)
ZORIO_ZONE = "Asia/Ho_Chi_Minh"


class Day:
    """One PBX of a vendor on a simulator, and how to ingest a day of it into `tmp_path`."""

    def __init__(self, sim: Simulator, vendor: str, root: Path, **pbx: Any) -> None:
        self.sim = sim
        self.vendor = vendor
        zone = sim.config.yeastar.timezone if vendor == "yeastar" else sim.config.zorio.timezone
        entry: dict[str, Any] = {
            "name": "p",
            "vendor": vendor,
            "base_url": sim.base_url,
            "timezone": zone,
            "start_date": "2026-01-01",
            "max_retries": 1,
        }
        if vendor == "yeastar":
            entry |= {"client_id": {"env": "T_ID"}, "client_secret": {"env": "T_SECRET"}}
            entry |= {"page_size": 5}
        else:
            entry |= {"api_token": {"env": "T_TOKEN"}, "per_page": 5}
        entry |= pbx
        storage = {"data_dir": str(root / "data"), "duckdb_path": str(root / "cdr.duckdb")}
        self.config = parse_config({"storage": storage, "pbxs": [entry]})
        self.pbx = self.config.pbxs[0]
        settings = self.pbx.resource_settings(self.config.storage)
        settings |= {
            "client_id": sim.config.yeastar.client_id,
            "client_secret": sim.config.yeastar.client_secret,
            "api_token": sim.config.zorio.api_token,
            "backoff_factor": 0.01,
        }
        resource = VENDOR_RESOURCES[vendor]
        self.client = resource(**{k: v for k, v in settings.items() if k in resource.model_fields})

    def ingest(self, day: date = DAY) -> DayIngest:
        return ingest_cdr_day(self.client, self.pbx, self.config.storage, day, ingested_at=NOW)

    def ingest_range(self, first: date, last: date) -> list[DayIngest]:
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        storage = self.config.storage
        return list(ingest_cdr_days(self.client, self.pbx, storage, days, ingested_at=NOW))

    def stored(self, day: date) -> list[dict[str, Any]]:
        table = read_partition(self.config.storage.data_dir, "cdr", "p", day)
        assert table is not None, f"{day} was not committed"
        return sorted(table.to_pylist(), key=lambda row: row["cdr_id"])

    def stored_ids(self, day: date = DAY) -> list[str]:
        table = read_partition(self.config.storage.data_dir, "cdr", "p", day, ["cdr_id"])
        return sorted(table["cdr_id"].to_pylist()) if table is not None else []

    def served_ids(self, day: date = DAY) -> list[str]:
        return sorted(record[ID_FIELD[self.vendor]] for record in self.sim.calls(self.vendor, day))


@pytest.fixture
def make_day(make_simulator: Callable[..., Simulator], tmp_path: Path) -> Callable[..., Day]:
    def make(
        vendor: str, *, sim: dict[str, Any] | Simulator | None = None, root: str = "", **pbx: Any
    ) -> Day:
        if not isinstance(sim, Simulator):
            sim = make_simulator(**{"calls_per_day": 23, **(sim or {})})
        return Day(sim, vendor, tmp_path / root, **pbx)

    return make


def reconciles(result: DayIngest) -> bool:
    parts = result.rows + result.rejected + result.outside_day + result.duplicates_dropped
    return result.fetched == parts and result.duplicates_dropped >= 0


# --------------------------------------------------------------------------- clean days


@pytest.mark.parametrize("style", ["default", "laravel", "pretty", "extra_keys", "newest_first"])
@pytest.mark.parametrize("vendor", ["yeastar", "zorio"])
def test_a_day_lands_whole_in_every_server_style(make_day, vendor: str, style: str) -> None:
    day = make_day(vendor, sim=SERVER_STYLES[style])
    result = day.ingest()
    assert day.stored_ids() == day.served_ids() and result.rows == 23
    assert result.complete and result.passes == 1 and result.distinct == result.api_total
    assert result.rejected == 0 and reconciles(result)


@pytest.mark.parametrize("vendor", ["yeastar", "zorio"])
def test_an_empty_day_is_complete_and_trusted_when_the_window_was_verified(make_day, vendor):
    day = make_day(vendor, sim={"calls_per_day": 0})
    result = day.ingest()
    assert result.complete and result.api_total == result.rows == 0 and result.query_verified
    assert day.stored_ids() == []


def test_an_unverified_yeastar_window_is_reported_as_such(make_day) -> None:
    day = make_day("yeastar", verify_clock=False, date_format="MM/DD/YYYY", clock=24)
    assert not day.ingest().query_verified


# --------------------------------------------------------------------------- drift


@pytest.mark.parametrize("vendor", ["yeastar", "zorio"])
@pytest.mark.parametrize("action", ["insert", "delete"])
@pytest.mark.parametrize("where", ["ahead", "behind"])
@pytest.mark.parametrize("inflight", [1, 4])
def test_drift_while_paging_loses_and_duplicates_nothing(
    make_day, vendor, action, where, inflight
) -> None:
    # Zorio in exact mode: the window is the day, so "ahead of page 2" is inside the day.
    exact = {"sim": {"zorio": {"date_timezone": ZORIO_ZONE}}, "query_timezone": ZORIO_ZONE}
    day = make_day(vendor, max_inflight_requests=inflight, **(exact if vendor == "zorio" else {}))
    before = set(day.served_ids())
    day.sim.faults.drift(vendor, DAY, at_page=2, action=action, where=where)
    result = day.ingest()
    (event,) = day.sim.faults.drift_log
    after = set(day.served_ids())
    assert len(event.ids) == 1 and set(event.ids) == after ^ before
    assert day.stored_ids() == sorted(after)  # no record lost, none duplicated, none stale
    assert result.complete and result.passes == 2 and reconciles(result)
    assert result.windows[0].distinct == result.windows[0].api_total
    if action == "delete" and where == "ahead":
        assert result.deleted_while_paging == 1  # seen in pass 1, gone in pass 2


@pytest.mark.parametrize("style", ["default", "newest_first"])
def test_one_record_on_two_pages_is_caught_by_distinct_ids(make_day, style: str) -> None:
    day = make_day("yeastar", sim=SERVER_STYLES[style])
    day.sim.faults.repeat_across_pages("yeastar", DAY, page=3)
    result = day.ingest()
    assert result.passes == 2 and result.complete
    assert day.stored_ids() == day.served_ids() and result.duplicates_dropped >= 1
    assert reconciles(result)


def test_a_total_that_never_matches_fails_completeness_after_the_configured_passes(make_day):
    day = make_day("zorio", completeness_passes=3)
    day.sim.faults.total_offset = 1
    result = day.ingest()
    (window,) = result.windows
    assert not result.complete and window.passes == 3
    assert window.api_total == window.distinct + 1 and window.fetched == 3 * window.distinct
    assert day.stored_ids() == day.served_ids()  # what was fetched is kept, once
    assert "incomplete after 3 pass(es)" in window.describe()


# --------------------------------------------------------------------------- quarantine


def first_id(day: Day) -> str:
    return day.served_ids()[3]


@pytest.mark.parametrize(
    ("vendor", "fields", "field"),
    [
        ("zorio", {"duration": "forty"}, "duration"),
        ("zorio", {"start_time": "not a time"}, "start_time"),
        ("zorio", {"uuid": DELETE}, "uuid"),
        ("yeastar", {"timestamp": "soon"}, "timestamp"),
        ("yeastar", {"uid": 12345.5}, "uid"),
    ],
)
def test_a_bad_record_is_quarantined_and_the_rest_of_the_day_lands(
    make_day, vendor: str, fields: dict[str, Any], field: str
) -> None:
    day = make_day(vendor)
    bad = first_id(day)
    day.sim.faults.override_record(vendor, bad, **fields)
    result = day.ingest()
    assert result.rejected == 1 and result.rows == 22 and reconciles(result)
    assert bad not in day.stored_ids() and len(day.stored_ids()) == 22
    (row,) = read_rejects(day.config.storage.data_dir, "p", DAY)
    assert row.field == field and row.page is not None and 1 <= row.position <= 5
    assert result.rejects[0].page == row.page and result.rejects[0].position == row.position
    assert row.raw and row.pbx == "p" and row.vendor == vendor
    assert result.complete  # the rejected record was fetched: the window is whole


def test_a_reject_names_its_page_and_position_in_the_page(make_day) -> None:
    day = make_day("yeastar", sim=SERVER_STYLES["default"])
    window_records = [r for page in day.client.fetch_cdrs(DAY, DAY).pages() for r in page]
    target = window_records[7]  # page 2 (5 per page), position 3
    day.sim.faults.override_record("yeastar", target["uid"], duration="forty")
    result = day.ingest()
    (reject,) = result.rejects
    assert (reject.page, reject.position, reject.cdr_id) == (2, 3, target["uid"])
    assert "page 2, position 3" in reject.describe()


def test_on_bad_record_fail_fails_the_day_naming_page_and_position(make_day) -> None:
    day = make_day("zorio", on_bad_record="fail")
    day.ingest()
    stored = day.stored_ids()
    day.sim.faults.override_record("zorio", first_id(day), duration="forty")
    with pytest.raises(RejectedRecordsFailure, match=r"page \d+, position \d+.*'duration'"):
        day.ingest()
    assert day.stored_ids() == stored  # the earlier day is intact


def test_a_fixed_record_clears_its_reject_on_the_next_run(make_day) -> None:
    day = make_day("zorio")
    day.sim.faults.override_record("zorio", first_id(day), duration="forty")
    assert day.ingest().rejected == 1
    day.sim.faults.clear()
    assert day.ingest().rejected == 0
    assert read_rejects(day.config.storage.data_dir, "p", DAY) == []
    assert day.stored_ids() == day.served_ids()


# --------------------------------------------------------------------------- windows and time


def test_a_pbx_reading_windows_in_another_zone_shows_rows_outside_the_window(make_day) -> None:
    # The clock check would stop this; without it, the shifted window is still visible.
    day = make_day(
        "yeastar",
        sim={"yeastar": {"timezone": "Asia/Tokyo"}},
        timezone="Asia/Singapore",
        verify_clock=False,
        date_format="MM/DD/YYYY",
        clock=24,
    )
    result = day.ingest()
    assert result.outside_window > 0 and result.window_bounds_known


def test_an_exclusive_end_time_drops_no_call(make_day) -> None:
    day = make_day("yeastar", sim={"yeastar": {"end_time_exclusive": True}, "calls_per_day": 300})
    result = day.ingest()
    assert day.stored_ids() == day.served_ids() and result.outside_window == 0


@pytest.mark.parametrize(
    ("zone", "day_of_change"),
    [
        ("America/Santiago", date(2026, 4, 4)),  # falls back at midnight: 23:00-24:00 twice
        ("America/Santiago", date(2026, 9, 6)),  # springs forward at midnight: no 00:00
        ("America/Havana", date(2026, 3, 8)),  # springs forward at midnight
        ("America/New_York", date(2026, 11, 1)),  # 01:00-02:00 twice
    ],
)
@pytest.mark.parametrize("vendor", ["yeastar", "zorio"])
def test_dst_days_are_whole_local_days(make_day, vendor: str, zone: str, day_of_change: date):
    day = make_day(
        vendor,
        sim={vendor: {"timezone": zone}, "calls_per_day": 200},
        timezone=zone,
        **({"query_timezone": None} if vendor == "zorio" else {}),
    )
    result = day.ingest(day_of_change)
    assert day.stored_ids(day_of_change) == day.served_ids(day_of_change)
    assert result.complete and result.outside_window == 0


def test_the_committed_day_describes_its_fetch_in_its_footer(make_day) -> None:
    from cdr_assets.ingest import read_day_ingest

    day = make_day("zorio")
    day.sim.faults.override_record("zorio", first_id(day), duration="forty")
    result = day.ingest()
    stored = read_day_ingest(day.config.storage.data_dir, "p", DAY)
    assert stored is not None and stored.windows == result.windows
    assert (stored.rows, stored.rejected, stored.outside_day) == (
        result.rows,
        result.rejected,
        result.outside_day,
    )
    assert stored.duplicates_dropped == result.duplicates_dropped and stored.complete
    assert read_day_ingest(day.config.storage.data_dir, "p", date(2026, 6, 1)) is None


# --------------------------------------------------------------------------- ranges


def two_hours(record: dict[str, Any]) -> dict[str, Any]:
    """Fields that make a call last two hours (answered after 10 s)."""
    if "timestamp" in record:  # Yeastar
        return {"duration": 7200, "ring_duration": 10, "talk_duration": 7190}
    end = datetime.fromisoformat(record["start_time"]) + timedelta(seconds=7200)
    return {"duration": 7200, "billsec": 7190, "end_time": end.isoformat()}


def staged_files(day: Day) -> list[Path]:
    return [p for p in (Path(day.config.storage.data_dir) / ".staging").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("zone", "first", "last"),
    [
        ("America/New_York", date(2026, 10, 30), date(2026, 11, 2)),  # 01:00-02:00 twice
        ("Australia/Lord_Howe", date(2026, 4, 3), date(2026, 4, 6)),  # 30-minute fall back
        ("Australia/Lord_Howe", date(2026, 10, 2), date(2026, 10, 5)),  # 30-minute spring
    ],
)
@pytest.mark.parametrize("vendor", ["yeastar", "zorio"])
def test_a_range_writes_exactly_the_rows_day_by_day_writes(
    make_simulator, make_day, vendor: str, zone: str, first: date, last: date
) -> None:
    sim = make_simulator(calls_per_day=150, **{vendor: {"timezone": zone}})
    by_day = make_day(vendor, sim=sim, root="by_day", timezone=zone)
    ranged = make_day(vendor, sim=sim, root="range", timezone=zone)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    for day in days:  # the day's last call goes on for two hours, past midnight
        last_call = sim.calls(vendor, day)[-1]
        sim.faults.override_record(vendor, last_call[ID_FIELD[vendor]], **two_hours(last_call))
    singles = [by_day.ingest(day) for day in days]
    sim.stats.reset()
    results = ranged.ingest_range(first, last)
    assert [r.day for r in results] == days
    windows = {w.label for r in results for w in r.windows}
    assert len(windows) == 1  # one query window for the four days
    across_midnight = 0
    for day, single, result in zip(days, singles, results, strict=True):
        rows = ranged.stored(day)
        assert rows == by_day.stored(day)
        assert [r["cdr_id"] for r in rows] == by_day.served_ids(day)
        assert (result.rows, result.rejected) == (single.rows, single.rejected) == (len(rows), 0)
        assert result.complete and reconciles(result) and result.outside_window == 0
        assert read_day_ingest(ranged.config.storage.data_dir, "p", day).windows == result.windows
        local_end = [r["end_time"].astimezone(ZoneInfo(zone)).date() for r in rows]
        across_midnight += sum(end > day for end in local_end)
    assert across_midnight >= len(days)  # calls that ended the next day stay where they started
    assert staged_files(ranged) == []


def test_a_zorio_range_pays_one_margin_per_window(make_day) -> None:
    day = make_day("zorio", sim={"calls_per_day": 40}, per_page=20)
    first, last = DAY, DAY + timedelta(days=6)
    results = day.ingest_range(first, last)
    (window,) = {w.label for r in results for w in r.windows}
    assert window == f"from={first - timedelta(days=1)} to={last + timedelta(days=1)}"
    assert day.sim.stats.count("/api/pbx/cdr") == 9 * 40 // 20  # 9 dates, not 7 x 3
    for result in results:
        assert day.stored_ids(result.day) == day.served_ids(result.day)


@pytest.mark.parametrize("vendor", ["yeastar", "zorio"])
@pytest.mark.parametrize(("action", "where"), [("insert", "ahead"), ("delete", "behind")])
def test_drift_in_a_range_window_is_paged_again_and_lands_in_its_day(
    make_day, vendor: str, action: str, where: str
) -> None:
    day = make_day(vendor)
    first, last = DAY - timedelta(days=1), DAY + timedelta(days=1)
    before = set(day.served_ids())
    day.sim.faults.drift(vendor, DAY, at_page=4, action=action, where=where)
    results = day.ingest_range(first, last)
    (event,) = day.sim.faults.drift_log
    assert len(event.ids) == 1 and set(event.ids) == set(day.served_ids()) ^ before
    for result in results:
        assert day.stored_ids(result.day) == day.served_ids(result.day)
        assert result.complete and result.passes == 2 and reconciles(result)


def test_a_failed_window_commits_none_of_its_days_and_names_them(make_day) -> None:
    day = make_day("zorio", max_window_days=3)  # one day a window
    first, last = DAY - timedelta(days=1), DAY + timedelta(days=1)
    old = day.ingest(last)
    window_of_day = {"from": (DAY - timedelta(days=1)).isoformat()}
    day.sim.faults.fail_next("/api/pbx/cdr", 404, times=5, query=window_of_day)
    results = ingest_cdr_days(
        day.client, day.pbx, day.config.storage, [first, DAY, last], ingested_at=NOW
    )
    assert next(results).day == first
    with pytest.raises(DaysNotIngested) as caught:
        next(results)
    assert caught.value.days == [DAY] and caught.value.error.http_status == 404
    assert day.stored_ids(first) == day.served_ids(first)
    assert day.stored_ids(DAY) == []
    assert day.stored_ids(last) == day.served_ids(last) and old.rows == 23  # earlier data stays
    assert staged_files(day) == []


def test_a_failed_range_window_names_every_day_it_holds(make_day) -> None:
    day = make_day("zorio")
    day.sim.faults.fail_next("/api/pbx/cdr", 404, times=5)
    first, last = DAY, DAY + timedelta(days=2)
    with pytest.raises(DaysNotIngested) as caught:
        day.ingest_range(first, last)
    assert caught.value.days == [first, DAY + timedelta(days=1), last]
    assert "/api/pbx/cdr" in str(caught.value)
    assert all(day.stored_ids(d) == [] for d in caught.value.days) and staged_files(day) == []


def test_many_open_days_hold_at_most_a_row_group_in_memory(make_day, monkeypatch) -> None:
    import pyarrow.parquet as pq

    import cdr_assets.ingest as ingest
    from cdr_assets.storage.parquet import partition_path

    monkeypatch.setattr(ingest, "ROW_GROUP_ROWS", 30)
    day = make_day("yeastar", sim={"calls_per_day": 40, "yeastar": {"order": "desc"}})
    results = day.ingest_range(DAY, DAY + timedelta(days=3))
    for result in results:
        path = partition_path(day.config.storage.data_dir, "cdr", "p", result.day)
        groups = pq.ParquetFile(path).metadata.num_row_groups
        assert groups >= 2 and result.rows == 40  # flushed before the day was complete
        assert day.stored_ids(result.day) == day.served_ids(result.day)
