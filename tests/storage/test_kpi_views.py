"""The analyst views against numbers worked out by hand from the rows each test writes.

Every expected value below is arithmetic on the calls listed in the test (not the views' SQL):
ASR = answered / calls, answer_rate = answered / offered (calls not busy or failed),
ACD = talk seconds of answered calls / answered calls.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from cdr_assets.schema import TABLE_SCHEMAS
from cdr_assets.storage.duckdb import ensure_views
from cdr_assets.storage.kpi_views import KPI_VIEWS
from cdr_assets.storage.pbxs import write_pbx_row
from tests.storage.helpers import (
    SMALL_SCHEMA,
    cdr_table,
    recordings_table,
    views_see_first_files,
    write_day,
)

DAY = date(2026, 3, 10)

# PBX "hq", one day. (direction, disposition, ring_s, talk_s, queue, wait, agent, extension,
# trunk, recording status)
HQ_CALLS = [
    dict(direction="inbound", disposition="answered", ring_s=5, talk_s=60, queue_name="sales",
         queue_wait_s=10, agent_extension="101", trunk="trk1", has_recording=True),
    dict(direction="inbound", disposition="answered", ring_s=3, talk_s=120, queue_name="sales",
         queue_wait_s=20, agent_extension="102", trunk="trk1", has_recording=True),
    dict(direction="inbound", disposition="no_answer", ring_s=30, queue_name="sales",
         queue_wait_s=45, trunk="trk1"),
    dict(direction="inbound", disposition="busy", ring_s=0, trunk="trk1"),
    dict(direction="outbound", disposition="answered", ring_s=8, talk_s=300, extension="101",
         trunk="trk2", has_recording=True),
    dict(direction="outbound", disposition="failed", ring_s=0, extension="101", trunk="trk2"),
    dict(direction="internal", disposition="answered", ring_s=2, talk_s=30, extension="102"),
    dict(direction="inbound", disposition="voicemail", ring_s=20, talk_s=15, extension="103",
         trunk="trk1"),
]  # fmt: skip
HQ_RECORDINGS = {"hq-2026-03-10-0": "archived", "hq-2026-03-10-1": "missing",
                 "hq-2026-03-10-4": "failed"}  # fmt: skip
# PBX "branch": nobody answered.
BRANCH_CALLS = [
    dict(direction="outbound", disposition="no_answer", ring_s=25, extension="201"),
    dict(direction="outbound", disposition="no_answer", ring_s=35, extension="201"),
]


def _db(tmp_path: Path) -> tuple[str, str]:
    return str(tmp_path / "cdr.duckdb"), str(tmp_path / "data")


def _rows(db: str, sql: str, params: list | None = None) -> list[dict]:
    con = duckdb.connect(db, read_only=True)
    try:
        cursor = con.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


@pytest.fixture
def fleet_day(tmp_path: Path) -> str:
    db, data = _db(tmp_path)
    write_day(data, "cdr", cdr_table("hq", DAY, HQ_CALLS))
    write_day(data, "recordings", recordings_table("hq", DAY, HQ_RECORDINGS))
    write_day(data, "cdr", cdr_table("branch", DAY, BRANCH_CALLS))
    ensure_views(db, data, TABLE_SCHEMAS)
    return db


def _by(rows: list[dict], *keys: str) -> dict[tuple, dict]:
    return {tuple(r[k] for k in keys): r for r in rows}


def test_daily_kpis_per_direction(fleet_day: str) -> None:
    got = _by(_rows(fleet_day, "SELECT * FROM cdr_daily_kpis"), "pbx", "direction")
    inbound = got[("hq", "inbound")]  # calls 0, 1, 2, 3 (busy), 7 (voicemail)
    assert inbound["call_date"] == DAY
    assert (inbound["calls"], inbound["answered"], inbound["offered"]) == (5, 2, 4)
    assert inbound["asr"] == pytest.approx(2 / 5)
    assert inbound["answer_rate"] == pytest.approx(2 / 4)  # the busy call was never offered
    assert inbound["acd_s"] == pytest.approx((60 + 120) / 2)  # voicemail talk is not ACD
    assert inbound["avg_ring_s"] == pytest.approx((5 + 3 + 30 + 0 + 20) / 5)
    assert inbound["talk_minutes"] == pytest.approx((60 + 120 + 15) / 60)
    assert (inbound["recordings_archived"], inbound["recordings_missing"]) == (1, 1)
    assert inbound["recordings_failed"] == 0

    outbound = got[("hq", "outbound")]  # calls 4 (answered, 300 s) and 5 (failed)
    assert (outbound["calls"], outbound["answered"], outbound["offered"]) == (2, 1, 1)
    assert outbound["asr"] == pytest.approx(1 / 2)
    assert outbound["answer_rate"] == pytest.approx(1.0)
    assert outbound["acd_s"] == pytest.approx(300.0)
    assert outbound["recordings_failed"] == 1

    internal = got[("hq", "internal")]
    assert (internal["calls"], internal["answered"], internal["acd_s"]) == (1, 1, 30.0)
    assert set(got) == {("hq", "inbound"), ("hq", "outbound"), ("hq", "internal"),
                        ("branch", "outbound")}  # fmt: skip


def test_day_with_no_answered_call_has_null_acd(fleet_day: str) -> None:
    branch = _rows(fleet_day, "SELECT * FROM cdr_daily_kpis WHERE pbx = 'branch'")[0]
    assert (branch["calls"], branch["answered"], branch["offered"]) == (2, 0, 2)
    assert branch["acd_s"] is None
    assert branch["asr"] == 0.0 and branch["answer_rate"] == 0.0
    assert branch["avg_ring_s"] == pytest.approx((25 + 35) / 2)
    assert branch["talk_minutes"] == 0.0
    assert branch["recordings_archived"] == branch["recordings_missing"] == 0


def test_by_extension_credits_the_agent_who_answered(fleet_day: str) -> None:
    got = _by(_rows(fleet_day, "SELECT * FROM cdr_by_extension WHERE pbx = 'hq'"), "extension")
    ext101 = got[("101",)]  # call 0 (agent 101), 4 and 5 (extension 101)
    assert (ext101["calls"], ext101["inbound"], ext101["outbound"], ext101["internal"]) == (
        3,
        1,
        2,
        0,
    )
    assert ext101["answered"] == 2
    assert ext101["asr"] == pytest.approx(2 / 3)
    assert ext101["acd_s"] == pytest.approx((60 + 300) / 2)
    assert ext101["talk_minutes"] == pytest.approx((60 + 300) / 60)
    ext102 = got[("102",)]  # call 1 (agent 102, inbound) and 6 (internal)
    assert (ext102["calls"], ext102["inbound"], ext102["internal"]) == (2, 1, 1)
    assert ext102["acd_s"] == pytest.approx((120 + 30) / 2)
    ext103 = got[("103",)]  # the voicemail: offered, not answered
    assert (ext103["calls"], ext103["answered"], ext103["acd_s"]) == (1, 0, None)
    assert ext103["answer_rate"] == 0.0
    nobody = got[(None,)]  # calls 2 and 3 reached no extension
    assert (nobody["calls"], nobody["offered"], nobody["answered"]) == (2, 1, 0)


def test_by_queue_only_queued_calls_with_wait(fleet_day: str) -> None:
    rows = _rows(fleet_day, "SELECT * FROM cdr_by_queue")
    assert [(r["pbx"], r["queue_name"]) for r in rows] == [("hq", "sales")]  # 5 calls had none
    sales = rows[0]  # calls 0, 1, 2
    assert (sales["calls"], sales["answered"], sales["unanswered"]) == (3, 2, 1)
    assert sales["avg_queue_wait_s"] == pytest.approx((10 + 20 + 45) / 3)
    assert sales["max_queue_wait_s"] == 45
    assert sales["asa_s"] == pytest.approx((10 + 20) / 2)
    assert sales["agents"] == 2
    assert sales["answer_rate"] == pytest.approx(2 / 3)
    assert sales["acd_s"] == pytest.approx((60 + 120) / 2)


def test_by_trunk_and_direction(fleet_day: str) -> None:
    got = _by(_rows(fleet_day, "SELECT * FROM cdr_by_trunk"), "pbx", "trunk", "direction")
    assert set(got) == {("hq", "trk1", "inbound"), ("hq", "trk2", "outbound")}  # no internal
    trk1 = got[("hq", "trk1", "inbound")]
    assert (trk1["calls"], trk1["answered"], trk1["offered"]) == (5, 2, 4)
    assert trk1["talk_minutes"] == pytest.approx((60 + 120 + 15) / 60)
    trk2 = got[("hq", "trk2", "outbound")]
    assert (trk2["calls"], trk2["answered"], trk2["asr"]) == (2, 1, 0.5)


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_hourly_in_each_pbx_own_zone(tmp_path: Path) -> None:
    db, data = _db(tmp_path)
    # Kathmandu is UTC+05:45 all year: 18:20Z on the 7th is 00:05 on the 8th.
    ktm_day = date(2026, 3, 8)
    write_day(data, "cdr", cdr_table("ktm", ktm_day, [
        dict(start_time=_at(2026, 3, 7, 18, 20), disposition="answered", talk_s=60),
        dict(start_time=_at(2026, 3, 8, 3, 20)),  # 09:05
        dict(start_time=_at(2026, 3, 8, 3, 50)),  # 09:35
    ]))  # fmt: skip
    # New York springs forward on 2026-03-08 (02:00 EST -> 03:00 EDT): a 23-hour day.
    write_day(data, "cdr", cdr_table("ny", ktm_day, [
        dict(start_time=_at(2026, 3, 8, 6, 50)),  # 01:50 EST (-05:00)
        dict(start_time=_at(2026, 3, 8, 7, 10)),  # 03:10 EDT (-04:00)
    ]))  # fmt: skip
    # ... and falls back on 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
    fall_day = date(2026, 11, 1)
    write_day(data, "cdr", cdr_table("ny", fall_day, [
        dict(start_time=_at(2026, 11, 1, 5, 30)),  # 01:30 EDT
        dict(start_time=_at(2026, 11, 1, 6, 30)),  # 01:30 EST
        dict(start_time=_at(2026, 11, 1, 6, 40)),  # 01:40 EST
    ]))  # fmt: skip
    for name, zone in (("ktm", "Asia/Kathmandu"), ("ny", "America/New_York")):
        write_pbx_row(data, pbx=name, vendor="zorio", timezone=zone, start_date=ktm_day)
    ensure_views(db, data, TABLE_SCHEMAS)
    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'Pacific/Honolulu'")  # the session's zone must not matter
    rows = con.execute(
        "SELECT pbx, call_date, local_hour, utc_offset_min, hour_start, calls, answered "
        "FROM cdr_hourly ORDER BY pbx, hour_start"
    ).fetchall()
    got = [(*row[:4], row[4].astimezone(UTC).replace(tzinfo=None), *row[5:]) for row in rows]
    con.close()
    assert got == [
        ("ktm", ktm_day, 0, 345, datetime(2026, 3, 7, 18, 15), 1, 1),
        ("ktm", ktm_day, 9, 345, datetime(2026, 3, 8, 3, 15), 2, 0),
        ("ny", ktm_day, 1, -300, datetime(2026, 3, 8, 6, 0), 1, 0),
        ("ny", ktm_day, 3, -240, datetime(2026, 3, 8, 7, 0), 1, 0),
        ("ny", fall_day, 1, -240, datetime(2026, 11, 1, 5, 0), 1, 0),
        ("ny", fall_day, 1, -300, datetime(2026, 11, 1, 6, 0), 2, 0),
    ]


def test_hourly_without_a_zone_shows_the_calls_with_null_hours(tmp_path: Path) -> None:
    db, data = _db(tmp_path)
    write_day(data, "cdr", cdr_table("old", DAY, [dict(), dict()]))  # no pbxs row written yet
    ensure_views(db, data, TABLE_SCHEMAS)
    rows = _rows(db, "SELECT * FROM cdr_hourly")
    assert [(r["calls"], r["local_hour"], r["timezone"]) for r in rows] == [(2, None, None)]


def test_views_stay_current_without_rewriting_the_file(tmp_path: Path) -> None:
    db, data = _db(tmp_path)
    assert ensure_views(db, data, TABLE_SCHEMAS)  # first run: creates every view
    assert _rows(db, "SELECT * FROM cdr_daily_kpis") == []  # typed and empty before any file
    write_day(data, "cdr", cdr_table("hq", DAY, HQ_CALLS))
    views_see_first_files(db, data, TABLE_SCHEMAS)
    write_day(data, "cdr", cdr_table("branch", DAY, HQ_CALLS))
    assert not ensure_views(db, data, TABLE_SCHEMAS)  # nothing to write: the views re-glob
    kpis = _rows(db, "SELECT * FROM cdr_daily_kpis")
    assert sum(r["calls"] for r in kpis) == 2 * len(HQ_CALLS)


def test_partial_schemas_get_only_the_views_they_can_answer(tmp_path: Path) -> None:
    db, data = _db(tmp_path)
    ensure_views(db, data, {"cdr": SMALL_SCHEMA})
    names = {r["view_name"] for r in _rows(db, "SELECT view_name FROM duckdb_views()")}
    assert "cdr" in names and not names & (set(KPI_VIEWS) | {"pbxs"})
