"""How bodies are written: pretty-printed, with extra keys, with a charset; over real HTTP."""

from __future__ import annotations

import json
from datetime import date

import pytest

from cdr_assets.simulator import SERVER_STYLES, Simulator, SimulatorConfig
from cdr_assets.simulator.api import extra_record_keys
from cdr_assets.simulator.jsontext import JsonStyle

from .conftest import YeastarClient, ZorioClient, yeastar_day_pages, zorio_day_pages

DAY = date(2026, 6, 1)
ZORIO_UTC = {"timezone": "UTC", "date_timezone": "UTC"}


def _bodies(sim: Simulator) -> dict[str, bytes]:
    """Raw bodies of every kind of JSON reply both vendors send."""
    y, z = YeastarClient(sim), ZorioClient(sim)
    api = sim.base_url + "/openapi/v1.0/"
    token = {"access_token": y.token}
    rec = next(c for c in sim.calls("zorio", DAY) if c["recording_available"])
    return {
        "yeastar search": y.http.get(
            api + "cdr/search",
            timeout=10,
            params={
                **token,
                "start_time": "06/01/2026 00:00:00",
                "end_time": "06/01/2026 23:59:59",
                "page_size": 20,
                "page": 2,
            },
        ).content,
        "yeastar filtered": y.http.get(
            api + "cdr/search",
            timeout=10,
            params={**token, "start_time": "06/01/2026 00:00:00", "status": "BUSY"},
        ).content,
        "yeastar info": y.http.get(api + "system/information", params=token, timeout=10).content,
        "yeastar recordings": y.http.get(
            api + "recording/list", timeout=10, params={**token, "page_size": 3}
        ).content,
        "yeastar error": y.http.get(
            api + "cdr/search", timeout=10, params={**token, "page": 0}
        ).content,
        "zorio list": z.get(
            "/api/pbx/cdr", **{"from": "2026-06-01", "to": "2026-06-01"}, per_page=20, page=2
        ).content,
        "zorio filtered": z.get(
            "/api/pbx/cdr", **{"from": "2026-06-01", "to": "2026-06-01"}, direction="inbound"
        ).content,
        "zorio detail": z.get(f"/api/pbx/cdr/{rec['uuid']}").content,
        "zorio 422": z.get("/api/pbx/cdr", per_page=500).content,
    }


def _comparable(raw: bytes) -> object:
    """Parsed body without what differs per request (expiry times, signatures)."""
    body = json.loads(raw)
    if isinstance(body.get("data"), dict) and "recording" in body["data"]:
        body["data"]["recording"].pop("url")
    if isinstance(body.get("data"), dict) and "system_time" in body["data"]:
        for key in ("system_time", "up_time", "timestamp"):
            body["data"].pop(key)
    return body


def test_pretty_bodies_parse_to_the_same_data_as_compact_ones(make_simulator):
    compact = _bodies(make_simulator(zorio=ZORIO_UTC))
    pretty = _bodies(make_simulator(pretty=True, zorio=ZORIO_UTC))
    for name, raw in pretty.items():
        assert _comparable(raw) == _comparable(compact[name]), name
        assert raw.startswith(b'{\n    "') and raw.endswith(b"\n}"), name
        assert raw == json.dumps(json.loads(raw), indent=4, ensure_ascii=False).encode(), name
        assert b"\n" not in compact[name], name


def test_pretty_laravel_keeps_escaped_slashes(make_simulator):
    sim = make_simulator(pretty=True, zorio={**ZORIO_UTC, "envelope": "laravel"})
    raw = ZorioClient(sim).get("/api/pbx/cdr", per_page=5).content
    assert b'\n    "first_page_url": "http:\\/\\/' in raw and b"://" not in raw
    assert b'\n    "links": [\n        {\n            "url": null,' in raw


def test_php_pretty_print_is_what_json_pretty_print_writes():
    style = JsonStyle(php=True, pretty=True)
    assert style.dumps({"a": [], "b": {}, "c": [1, {"d": None}], "u": "é/😀"}) == (
        b'{\n    "a": [],\n    "b": {},\n    "c": [\n        1,\n        {\n'
        b'            "d": null\n        }\n    ],\n    "u": "\\u00e9\\/\\ud83d\\ude00"\n}'
    )
    assert JsonStyle(php=True).escape('{"k":"a/b é"}'.encode()) == b'{"k":"a\\/b \\u00e9"}'


def test_extra_keys_records_keep_the_documented_fields_unchanged(make_simulator):
    plain = make_simulator(zorio=ZORIO_UTC)
    extra = make_simulator(extra_keys=True, zorio=ZORIO_UTC)
    added = extra_record_keys()
    for vendor, fetch_of in (
        ("yeastar", lambda s: yeastar_day_pages(YeastarClient(s), "06/01/2026", 50)),
        ("zorio", lambda s: zorio_day_pages(ZorioClient(s), "2026-06-01", 50)),
    ):
        base, _ = fetch_of(plain)(2)
        served, _ = fetch_of(extra)(2)
        assert len(served) == len(base) == 50
        for got, want in zip(served, base, strict=True):
            assert {k: v for k, v in got.items() if k not in added} == want
            assert {k: got[k] for k in added} == added
            assert list(got)[2:6] == list(added)  # in the middle of the record
        assert served == extra.calls(vendor, DAY)[50:100]
    raw = ZorioClient(extra).get("/api/pbx/cdr", per_page=3).content
    first_record = raw.split(b'"data":[', 1)[1].split(b',{"uuid"', 1)[0]
    assert b"},{" in first_record and b"}]" in first_record  # what naive record splitters cut


def test_extra_keys_in_the_envelopes(make_simulator):
    sim = make_simulator(extra_keys=True)
    y, z = YeastarClient(sim), ZorioClient(sim)
    for name in ("cdr/search", "cdr/list", "recording/list"):
        body = y.get(name, page_size=2)
        assert list(body)[-1] == "request_id" and len(body["request_id"]) == 36, name
    assert set(y.get("recording/list", page_size=1)["data"][0]) >= set(extra_record_keys())
    body = z.cdr(per_page=2)
    assert list(body)[-1] == "meta" and set(body["meta"]) == {"request_id"}
    uuid = body["data"][0]["uuid"]
    detail = z.get(f"/api/pbx/cdr/{uuid}").json()
    assert set(detail) == {"data", "meta"} and detail["data"]["score"] == 4


def test_json_content_type_is_on_every_vendor_json_reply(make_simulator):
    wanted = "application/json; charset=utf-8"
    sim = make_simulator(**SERVER_STYLES["charset"])
    y, z = YeastarClient(sim), ZorioClient(sim)
    api = sim.base_url + "/openapi/v1.0/"
    replies = [
        y.http.post(api + "get_token", json={"username": "x", "password": "y"}, timeout=10),
        y.http.get(api + "cdr/search", params={"access_token": y.token}, timeout=10),
        y.http.get(api + "cdr/search", params={"access_token": "nope"}, timeout=10),
        y.http.get(api + "system/information", params={"access_token": y.token}, timeout=10),
        z.get("/api/pbx/cdr"),
        z.get("/api/pbx/cdr", page="x"),
        ZorioClient(sim, "x").get("/api/pbx/cdr"),
        z.get("/api/pbx/cdr/nope"),
    ]
    assert [r.headers["Content-Type"] for r in replies] == [wanted] * len(replies)
    plain = make_simulator()
    assert ZorioClient(plain).get("/api/pbx/cdr").headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("name", sorted(SERVER_STYLES))
def test_every_server_style_serves_the_same_calls(make_simulator, name):
    """What a client reads is the same day whatever the style (ids, as a set)."""
    style = make_simulator(SimulatorConfig().with_overrides(**SERVER_STYLES[name]), zorio=ZORIO_UTC)
    base = Simulator(SimulatorConfig().with_overrides(zorio=ZORIO_UTC))
    for vendor, key in (("yeastar", "uid"), ("zorio", "uuid")):
        fetch = (
            yeastar_day_pages(YeastarClient(style), "06/01/2026", 30)
            if vendor == "yeastar"
            else zorio_day_pages(ZorioClient(style), "2026-06-01", 30)
        )
        seen = [r[key] for page in range(1, 8) for r in fetch(page)[0]]
        assert sorted(seen) == sorted(r[key] for r in base.calls(vendor, DAY))
