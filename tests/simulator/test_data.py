"""Deterministic data: seeds, DST days, decodable ids, over real HTTP where it matters."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from cdr_assets.simulator import Simulator, SimulatorConfig

from .conftest import YeastarClient, ZorioClient

NY = "America/New_York"
SPRING = date(2026, 3, 8)  # 23 h
FALL = date(2026, 11, 1)  # 25 h


def test_same_seed_same_records_different_seed_different(make_simulator):
    a, b, c = make_simulator(seed=7), make_simulator(seed=7), make_simulator(seed=8)
    for vendor in ("yeastar", "zorio"):
        day = date(2026, 6, 1)
        assert a.calls(vendor, day) == b.calls(vendor, day)
        assert a.calls(vendor, day) != c.calls(vendor, day)
        assert a.calls(vendor, day) != a.calls(vendor, day + timedelta(days=1))
    # and over HTTP
    window = {"start_time": "06/01/2026 00:00:00", "end_time": "06/01/2026 23:59:59"}
    assert (
        YeastarClient(a).get("cdr/search", **window)["data"]
        == YeastarClient(b).get("cdr/search", **window)["data"]
    )


def test_a_small_day_does_not_depend_on_other_config():
    cfg = SimulatorConfig(seed=3, calls_per_day=50)
    plain = Simulator(cfg)
    other = Simulator(cfg.with_overrides(yeastar={"clock": 12, "date_format": "DD/MM/YYYY"}))
    day = date(2026, 6, 1)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in plain.calls("yeastar", day)]
    assert strip == [
        {k: v for k, v in r.items() if k != "time"} for r in other.calls("yeastar", day)
    ]


def _ny(make_simulator):
    return make_simulator(yeastar={"timezone": NY}, zorio={"timezone": NY, "date_timezone": NY})


def test_dst_days_have_their_real_length_and_only_their_calls(make_simulator):
    sim = _ny(make_simulator)
    tz = ZoneInfo(NY)
    for day, hours in ((SPRING, 23), (FALL, 25), (date(2026, 6, 1), 24)):
        start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        nxt = day + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()
        assert end - start == hours * 3600
        calls = sim.calls("yeastar", day)
        assert len(calls) == 200
        stamps = [c["timestamp"] for c in calls]
        assert stamps == sorted(stamps) and start <= stamps[0] and stamps[-1] < end
        assert stamps[-1] - stamps[0] > (hours - 1) * 3600  # spread over the whole day
        assert all(datetime.fromtimestamp(s, tz).date() == day for s in stamps)
        zorio = [datetime.fromisoformat(c["start_time"]) for c in sim.calls("zorio", day)]
        assert len(zorio) == 200 and all(t.astimezone(tz).date() == day for t in zorio)


def test_fall_back_day_keeps_both_1_am_hours(make_simulator):
    sim = _ny(make_simulator)
    tz = ZoneInfo(NY)
    one_am = [datetime.fromtimestamp(c["timestamp"], tz) for c in sim.calls("yeastar", FALL)]
    offsets = {d.utcoffset() for d in one_am if d.hour == 1}
    assert offsets == {timedelta(hours=-4), timedelta(hours=-5)}
    client = YeastarClient(sim)
    body = client.get(
        "cdr/search", start_time="11/01/2026 01:00:00", end_time="11/01/2026 01:59:59"
    )
    assert body["total_number"] == sum(d.hour == 1 for d in one_am)
    full = client.get(
        "cdr/search", start_time="11/01/2026 00:00:00", end_time="11/01/2026 23:59:59"
    )
    assert full["total_number"] == 200
    zorio = ZorioClient(sim).cdr(**{"from": "2026-11-01", "to": "2026-11-01", "per_page": 200})
    assert zorio["total"] == 200
    assert zorio["data"] == sim.calls("zorio", FALL)


def test_spring_forward_day_and_a_skipped_wall_time(make_simulator):
    sim = _ny(make_simulator)
    tz = ZoneInfo(NY)
    client = YeastarClient(sim)
    full = client.get(
        "cdr/search", start_time="03/08/2026 00:00:00", end_time="03/08/2026 23:59:59"
    )
    assert full["total_number"] == 200 and full["data"] == sim.calls("yeastar", SPRING)
    after = client.get(
        "cdr/search",
        start_time="03/08/2026 02:30:00",  # does not exist
        end_time="03/08/2026 23:59:59",
    )
    assert after["errcode"] == 0
    assert after["total_number"] == sum(
        datetime.fromtimestamp(c["timestamp"], tz).hour >= 3 for c in full["data"]
    )


def test_ids_decode_without_state(simulator):
    """A fresh simulator (no state) resolves ids minted by another one with the same seed."""
    other = Simulator(simulator.config)
    day = date(2026, 6, 1)
    y = next(c for c in simulator.calls("yeastar", day) if "record_file" in c)
    z = next(c for c in simulator.calls("zorio", day) if c["recording_available"])
    assert other.recording_bytes("yeastar", y["record_file"]) == simulator.recording_bytes(
        "yeastar", str(y["id"])
    )
    assert other.recording_sha256("zorio", z["uuid"]) == simulator.recording_sha256(
        "zorio", z["uuid"]
    )


def test_big_days_page_without_building_the_day(make_simulator):
    sim = make_simulator(calls_per_day=1_000_000)
    client = ZorioClient(sim)
    body = client.cdr(**{"from": "2026-06-01", "to": "2026-06-01", "per_page": 200, "page": 2000})
    assert body["total"] > 900_000 and len(body["data"]) == 200
    y = YeastarClient(sim).get(
        "cdr/search", start_time="06/01/2026 12:00:00", end_time="06/01/2026 12:00:09", page_size=5
    )
    assert 90 <= y["total_number"] <= 140 and len(y["data"]) == 5


def test_long_recordings_hash_by_streaming(simulator):
    day = date(2026, 6, 1)
    ref = next(c["uuid"] for c in simulator.calls("zorio", day) if c["recording_available"])
    simulator.faults.recording_seconds[ref] = 200_000_000 // 16_000
    assert simulator.recording_size("zorio", ref) == 200_000_044
    assert len(simulator.recording_sha256("zorio", ref)) == 64


def _zone(make_simulator, tz: str):
    return make_simulator(yeastar={"timezone": tz})


def _search(client: YeastarClient, start: str, end: str) -> list[dict]:
    body = client.get("cdr/search", start_time=start, end_time=end)
    assert body["errcode"] == 0, body
    return body["data"]


def test_wall_hour_windows_partition_a_fall_back_day(make_simulator):
    """The PBX compares wall times: every call is in exactly one wall-clock hour window."""
    sim = _ny(make_simulator)
    client = YeastarClient(sim)
    seen = []
    for hour in range(24):
        data = _search(client, f"11/01/2026 {hour:02d}:00:00", f"11/01/2026 {hour:02d}:59:59")
        assert all(r["time"][11:13] == f"{hour:02d}" for r in data)
        seen += [r["uid"] for r in data]
    assert sorted(seen) == sorted(c["uid"] for c in sim.calls("yeastar", FALL))


def test_a_window_inside_the_repeated_hour_takes_both_passes(make_simulator):
    sim = _ny(make_simulator)
    tz = ZoneInfo(NY)
    data = _search(YeastarClient(sim), "11/01/2026 01:20:00", "11/01/2026 01:39:59")
    wanted = [c for c in sim.calls("yeastar", FALL) if "01:20:00" <= c["time"][11:] <= "01:39:59"]
    assert data == wanted
    offsets = {datetime.fromtimestamp(r["timestamp"], tz).utcoffset() for r in data}
    assert offsets == {timedelta(hours=-4), timedelta(hours=-5)}  # both passes, nothing between


def test_havana_skipped_midnight_day_is_whole_from_its_first_wall_time(make_simulator):
    sim = _zone(make_simulator, "America/Havana")
    client = YeastarClient(sim)
    day = date(2026, 3, 8)  # 00:00 -> 01:00
    calls = sim.calls("yeastar", day)
    assert calls[0]["time"] >= "03/08/2026 01:00:00"
    assert _search(client, "03/08/2026 00:00:00", "03/08/2026 23:59:59") == calls
    assert _search(client, "03/08/2026 00:30:00", "03/08/2026 23:59:59") == calls  # in the gap
    before = _search(client, "03/07/2026 00:00:00", "03/08/2026 00:30:00")
    assert before == sim.calls("yeastar", date(2026, 3, 7))  # ends at the jump
    fall = date(2026, 11, 1)  # 01:00 -> 00:00: the first wall hour happens twice
    assert _search(client, "11/01/2026 00:00:00", "11/01/2026 23:59:59") == sim.calls(
        "yeastar", fall
    )
    twice = _search(client, "11/01/2026 00:00:00", "11/01/2026 00:59:59")
    tz = ZoneInfo("America/Havana")
    assert {datetime.fromtimestamp(r["timestamp"], tz).utcoffset() for r in twice} == {
        timedelta(hours=-4),
        timedelta(hours=-5),
    }


def test_santiago_repeats_its_last_hour_before_midnight(make_simulator):
    sim = _zone(make_simulator, "America/Santiago")
    client = YeastarClient(sim)
    saturday, sunday = date(2026, 4, 4), date(2026, 4, 5)  # 24:00 -> 23:00 on Saturday
    sat = sim.calls("yeastar", saturday)
    assert _search(client, "04/04/2026 00:00:00", "04/04/2026 23:59:59") == sat
    assert _search(client, "04/05/2026 00:00:00", "04/05/2026 23:59:59") == sim.calls(
        "yeastar", sunday
    )
    late = _search(client, "04/04/2026 23:00:00", "04/04/2026 23:59:59")
    assert late == [c for c in sat if c["time"][11:13] == "23"]
    assert len({r["timestamp"] // 3600 for r in late}) == 2  # two different UTC hours
    spring = date(2026, 9, 6)  # 24:00 -> 01:00: midnight never shows
    assert _search(client, "09/06/2026 00:00:00", "09/06/2026 00:59:59") == []
    assert _search(client, "09/06/2026 00:00:00", "09/06/2026 23:59:59") == sim.calls(
        "yeastar", spring
    )
