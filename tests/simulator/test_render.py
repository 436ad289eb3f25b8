"""List pages are written as JSON text directly: byte-equal to dumping the records' dicts."""

from __future__ import annotations

import json
from datetime import date

import requests

from cdr_assets.simulator import Simulator, SimulatorConfig
from cdr_assets.simulator.data import json_table
from cdr_assets.simulator.pagecache import PageCache
from cdr_assets.simulator.protocol import dumps

from .conftest import UA, YeastarClient

NY = "America/New_York"
DAYS = (date(2026, 3, 8), date(2026, 11, 1), date(2026, 6, 1))  # 23 h, 25 h, 24 h
N = 1500


def _sims() -> list[Simulator]:
    base = SimulatorConfig(seed=11, calls_per_day=N)
    return [
        Simulator(base.with_overrides(yeastar={"timezone": NY}, zorio={"timezone": NY})),
        Simulator(
            base.with_overrides(
                seed=5,
                yeastar={"clock": 12, "date_format": "DD-MM-YYYY", "recording_format": "mp3"},
            )
        ),
    ]


def _yeastar_quirks(rec: dict) -> set[str]:
    seen = {f"disposition={rec['disposition']}", f"call_type={rec['call_type']}"}
    seen.add("old_firmware" if "call_from_number" not in rec else "split_names")
    seen.add("record_file" if "record_file" in rec else "no_record_file")
    seen.add("ring" if "ring_duration" in rec else "no_ring")
    if "duration" not in rec:
        seen.add("no_durations")
    if rec.get("call_to_name") == " " and len(rec.get("call_to_number", "")) == 5:
        seen.add("short_outbound_number")
    return seen


def _zorio_quirks(rec: dict) -> set[str]:
    seen = {f"result={rec['result']}", f"source_type={rec['source_type']}"}
    seen |= {f"null:{k}" for k, v in rec.items() if v is None}
    seen.add(f"recording_available={rec['recording_available']}")
    return seen


def test_record_text_equals_dumps_of_the_dict_for_both_vendors_and_their_quirks():
    seen: set[str] = set()
    for sim in _sims():
        for vendor, quirks in (("yeastar", _yeastar_quirks), ("zorio", _zorio_quirks)):
            calls = sim.yeastar.calls if vendor == "yeastar" else sim.zorio.calls
            for d in DAYS:
                for i in range(N):
                    rec = calls.generate(d, i).record
                    text = calls.record_json(d, i)
                    assert json.loads(text) == rec
                    assert text.encode() == dumps(rec)
                    seen |= {f"{vendor}:{q}" for q in quirks(rec)}
    wanted = {
        "yeastar:disposition=ANSWERD",
        "yeastar:disposition=NO ANSWERED",
        "yeastar:disposition=VOICEMAIL",
        "yeastar:old_firmware",
        "yeastar:split_names",
        "yeastar:record_file",
        "yeastar:no_ring",
        "yeastar:ring",
        "yeastar:no_durations",
        "yeastar:short_outbound_number",
        "yeastar:call_type=Internal",
        "zorio:result=voicemail",
        "zorio:null:sip_response_code",
        "zorio:null:answer_time",
        "zorio:null:agent_extension",
        "zorio:null:queue_wait_time",
        "zorio:recording_available=True",
        "zorio:source_type=outbound_webphone",
    }
    assert wanted <= seen, wanted - seen


def test_withheld_recordings_are_hidden_in_the_text_too():
    sim = Simulator(SimulatorConfig(seed=2, calls_per_day=400))
    d = date(2026, 6, 1)
    yrec = [r for r in sim.calls("yeastar", d) if "record_file" in r][:5]
    zrec = [r for r in sim.calls("zorio", d) if r["recording_available"]][:5]
    sim.faults.withheld_recordings = {r["record_file"] for r in yrec} | {r["uuid"] for r in zrec}
    withheld = frozenset(sim.faults.withheld_recordings)
    for i in range(400):
        assert sim.yeastar.calls.record_json(d, i, withheld).encode() == dumps(
            sim.yeastar.render(d, i)
        )
        assert sim.zorio.calls.record_json(d, i, withheld).encode() == dumps(sim.zorio.render(d, i))


def test_vocabulary_text_is_escaped_by_json():
    table = json_table(['say "hi"', "back\\slash", "tab\there", "Nguyễn"], [None])
    for value, text in table.items():
        assert json.loads(text) == value
    assert table["Nguyễn"] == '"Nguyễn"'  # like dumps(ensure_ascii=False)


def _zorio_page_dict(sim: Simulator, day: str, page: int, per_page: int) -> dict:
    d = date.fromisoformat(day)
    records = sim.calls("zorio", d)  # date_timezone == timezone: one server date == one day
    total = len(records) + sim.faults.total_offset
    data = records[(page - 1) * per_page : page * per_page]
    offset = (page - 1) * per_page
    return {
        "current_page": page,
        "data": data,
        "from": offset + 1 if data else None,
        "last_page": max(1, -(-total // per_page)),
        "per_page": per_page,
        "to": offset + len(data) if data else None,
        "total": total,
    }


def test_pages_on_the_wire_are_byte_equal_and_repeats_come_from_the_cache(make_simulator):
    sim = make_simulator(calls_per_day=450, zorio={"timezone": "UTC", "date_timezone": "UTC"})
    http = requests.Session()
    http.headers["Authorization"] = "Bearer demo-token"

    def page(n: int) -> bytes:
        r = http.get(
            sim.base_url + "/api/pbx/cdr",
            timeout=10,
            params={"from": "2026-06-01", "to": "2026-06-01", "page": n, "per_page": 200},
        )
        assert r.status_code == 200
        return r.content

    for n in (1, 2, 3, 4):  # 200 + 200 + 50 + an empty page
        assert page(n) == dumps(_zorio_page_dict(sim, "2026-06-01", n, 200))
    hits = sim.page_cache.hits
    assert page(2) == dumps(_zorio_page_dict(sim, "2026-06-01", 2, 200))
    assert sim.page_cache.hits == hits + 1
    sim.faults.total_offset = 3  # envelope only: still served from the cache, new totals
    assert page(3) == dumps(_zorio_page_dict(sim, "2026-06-01", 3, 200))
    sim.faults.total_offset = 0
    first = json.loads(page(1))["data"]
    uuid = next(r["uuid"] for r in first if r["recording_available"])
    sim.faults.withheld_recordings.add(uuid)  # changes records: not the cached text
    shown = {r["uuid"]: r for r in json.loads(page(1))["data"]}
    assert shown[uuid]["recording_available"] is False
    assert page(1) == dumps(_zorio_page_dict(sim, "2026-06-01", 1, 200))


def test_yeastar_pages_on_the_wire_are_byte_equal(make_simulator):
    sim = make_simulator(calls_per_day=300, yeastar={"timezone": NY, "clock": 12})
    client = YeastarClient(sim)
    d = date(2026, 11, 1)
    records = sim.calls("yeastar", d)
    window = {"start_time": "11/01/2026 12:00:00 AM", "end_time": "11/01/2026 11:59:59 PM"}
    for n in (1, 2, 3):
        r = client.http.get(
            sim.base_url + "/openapi/v1.0/cdr/search",
            headers=UA,
            timeout=10,
            params={**window, "page": n, "page_size": 128, "access_token": client.token},
        )
        assert r.content == dumps(
            {
                "errcode": 0,
                "errmsg": "SUCCESS",
                "total_number": 300,
                "data": records[(n - 1) * 128 : n * 128],
            }
        )


def test_page_cache_is_an_lru_bounded_by_bytes():
    cache = PageCache(max_bytes=10)
    cache.put("a", 1, b"aaaa")
    cache.put("b", 1, b"bbbb")
    assert cache.get("a") == (1, b"aaaa")  # a is now the most recent
    cache.put("c", 1, b"cccc")  # 12 bytes > 10: b (least recent) goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size == 8
    cache.put("huge", 1, b"x" * 11)  # larger than the bound: not stored
    assert cache.get("huge") is None and len(cache) == 2
    off = PageCache(max_bytes=0)
    off.put("a", 1, b"a")
    assert off.get("a") is None
