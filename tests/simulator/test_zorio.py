"""The simulated Zorio PBX API, over real HTTP."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cdr_assets.simulator import Simulator, SimulatorConfig

from .conftest import ZorioClient, all_pages, read_wav

FIELDS = {
    "uuid",
    "direction",
    "source_type",
    "caller_number",
    "destination_number",
    "extension_number",
    "agent_extension",
    "start_time",
    "answer_time",
    "end_time",
    "duration",
    "billsec",
    "queue_name",
    "queue_wait_time",
    "trunk_name",
    "transfer_count",
    "result",
    "hangup_cause",
    "sip_response_code",
    "recording_available",
    "created_at",
}
DAY = date(2026, 6, 1)
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00")


def utc_day_calls(sim, day: date) -> list[dict]:
    """Records whose start_time (UTC) falls on `day`, from the PBX-local days around it."""
    out = []
    for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
        out += [c for c in sim.calls("zorio", d) if c["start_time"][:10] == day.isoformat()]
    return sorted(out, key=lambda c: c["start_time"])


def test_wrong_or_missing_bearer_is_401(simulator):
    uuid = simulator.calls("zorio", DAY)[0]["uuid"]
    for path in ("/api/pbx/cdr", f"/api/pbx/cdr/{uuid}", f"/api/pbx/cdr/{uuid}/recording"):
        for client in (ZorioClient(simulator, token="wrong"), requests):
            r = client.get(simulator.base_url + path) if client is requests else client.get(path)
            assert r.status_code == 401
            assert r.json() == {"message": "Unauthenticated."}


def test_a_date_window_is_read_in_the_date_timezone(zorio, simulator):
    body = zorio.cdr(**{"from": "2026-06-01", "to": "2026-06-01", "per_page": 200})
    expected = utc_day_calls(simulator, DAY)
    assert body["total"] == len(expected) and body["data"] == expected
    assert {body["current_page"], body["last_page"], body["per_page"]} == {1, 200}
    assert body["from"] == 1 and body["to"] == len(expected)


def test_local_date_timezone_window_is_exactly_one_pbx_day(make_simulator):
    sim = make_simulator(zorio={"date_timezone": "Asia/Ho_Chi_Minh"})
    body = ZorioClient(sim).cdr(**{"from": "2026-06-01", "to": "2026-06-03", "per_page": 1})
    assert body["total"] == 600 and body["last_page"] == 600


def test_records_have_the_page_fields(make_simulator):
    sim = make_simulator(calls_per_day=2000)
    calls = sim.calls("zorio", DAY)
    assert all(set(c) == FIELDS for c in calls)
    assert {c["direction"] for c in calls} == {"inbound", "outbound", "internal", "local"}
    assert {c["result"] for c in calls} == {
        "answered",
        "busy",
        "no_answer",
        "failed",
        "cancelled",
        "rejected",
        "voicemail",
    }
    assert {c["source_type"] for c in calls} == {
        "inbound",
        "outbound_manual",
        "outbound_telesales",
        "outbound_callback",
        "outbound_webphone",
        "internal",
    }
    for c in calls:
        assert len(c["uuid"]) == 36 and c["uuid"].startswith("20260601-")
        assert ISO.fullmatch(c["start_time"]) and ISO.fullmatch(c["end_time"])
        assert (c["answer_time"] is None) == (c["result"] not in ("answered", "voicemail"))
        assert 0 <= c["billsec"] <= c["duration"]
        assert c["sip_response_code"] is None or isinstance(c["sip_response_code"], str)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", c["created_at"])
        assert c["recording_available"] is False or (c["result"] == "answered" and c["billsec"] > 0)
        if c["direction"] != "outbound":
            assert c["trunk_name"] is None
        if c["queue_name"] is not None:
            assert c["direction"] == "inbound" and isinstance(c["queue_wait_time"], int)
    assert any(c["queue_name"] for c in calls)
    assert any(c["trunk_name"] for c in calls)


def test_paging_envelope_is_consistent(zorio, simulator):
    window = {"from": "2026-06-01", "to": "2026-06-02"}

    def fetch(page):
        body = zorio.cdr(page=page, per_page=13, **window)
        assert body["per_page"] == 13 and body["current_page"] == page
        return body["data"], body["total"]

    records, totals = all_pages(fetch)
    total = totals[0]
    assert set(totals) == {total} and len(records) == total
    assert len({r["uuid"] for r in records}) == total
    starts = [r["start_time"] for r in records]
    assert starts == sorted(starts)
    last = zorio.cdr(page=1, per_page=13, **window)["last_page"]
    assert last == -(-total // 13)
    beyond = zorio.cdr(page=last + 1, per_page=13, **window)
    assert beyond["data"] == [] and beyond["from"] is None


def test_validation_errors_are_laravel_422(zorio):
    cases = [
        ({"from": "2026-13-01"}, "from"),
        ({"from": "01/06/2026"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-06-10", "to": "2026-06-09"}, "to"),
        ({"from": "2026-06-01", "to": "2026-07-01"}, "to"),
        ({"direction": "sideways"}, "direction"),
        ({"extension": "12"}, "extension"),
        ({"extension": "1" * 21}, "extension"),
        ({"phone": "9" * 51}, "phone"),
        ({"page": "0"}, "page"),
        ({"page": "abc"}, "page"),
        ({"per_page": "0"}, "per_page"),
        ({"per_page": "201"}, "per_page"),
    ]
    base = {"from": "2026-06-01", "to": "2026-06-01"}
    for params, field in cases:
        r = zorio.get("/api/pbx/cdr", **{**base, **params})
        assert r.status_code == 422, params
        body = r.json()
        assert list(body["errors"]) == [field], params
        assert body["message"] == body["errors"][field][0]
    r = zorio.get("/api/pbx/cdr", direction="x", extension="1")
    assert r.status_code == 422 and r.json()["message"].endswith("(and 1 more error)")


def test_a_30_day_window_is_allowed(zorio):
    assert (
        zorio.get("/api/pbx/cdr", **{"from": "2026-06-01", "to": "2026-06-30"}).status_code == 200
    )
    assert zorio.get("/api/pbx/cdr").status_code == 200  # defaults: now-30d .. now


def test_filters(zorio, simulator):
    expected = utc_day_calls(simulator, DAY)
    window = {"from": "2026-06-01", "to": "2026-06-01", "per_page": 200}
    body = zorio.cdr(direction="internal", **window)
    assert body["data"] == [c for c in expected if c["direction"] == "internal"]
    ext = expected[0]["extension_number"]
    body = zorio.cdr(extension=ext, **window)
    assert body["data"] == [
        c for c in expected if ext in (c["extension_number"], c["agent_extension"])
    ]
    phone = expected[0]["caller_number"]
    body = zorio.cdr(phone=phone, **window)
    assert body["total"] >= 1 and all(
        phone in (c["caller_number"], c["destination_number"]) for c in body["data"]
    )


def test_detail_has_a_signed_recording_that_downloads(zorio, simulator):
    rec = next(c for c in simulator.calls("zorio", DAY) if c["recording_available"])
    r = zorio.get(f"/api/pbx/cdr/{rec['uuid']}")
    assert r.status_code == 200
    data = r.json()["data"]
    recording = data.pop("recording")
    assert data == rec
    assert recording["duration"] == rec["billsec"]
    assert recording["expires_in_seconds"] == 1800
    assert ISO.fullmatch(recording["recorded_at"])
    url = urlsplit(recording["url"])
    assert f"{url.scheme}://{url.netloc}" == simulator.base_url
    assert re.fullmatch(r"/api/public/recordings/\d+/audio", url.path)
    query = parse_qs(url.query)
    assert abs(int(query["expires"][0]) - time.time() - 1800) < 5
    assert re.fullmatch(r"[0-9a-f]{64}", query["signature"][0])
    audio = requests.get(recording["url"])  # no bearer needed
    assert audio.status_code == 200 and audio.headers["Content-Type"] == "audio/wav"
    assert len(audio.content) == recording["file_size"] == int(audio.headers["Content-Length"])
    params, _ = read_wav(audio.content)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 8000)
    assert params.nframes == rec["billsec"] * 8000
    assert audio.content == simulator.recording_bytes("zorio", rec["uuid"])


def test_url_is_built_from_the_host_header(zorio, simulator):
    rec = next(c for c in simulator.calls("zorio", DAY) if c["recording_available"])
    r = zorio.http.get(
        f"{simulator.base_url}/api/pbx/cdr/{rec['uuid']}", headers={"Host": "pbx.example.test:8080"}
    )
    assert r.json()["data"]["recording"]["url"].startswith(
        "http://pbx.example.test:8080/api/public/recordings/"
    )


def test_detail_without_recording_and_unknown_uuid(zorio, simulator):
    calls = simulator.calls("zorio", DAY)
    plain = next(c for c in calls if not c["recording_available"])
    r = zorio.get(f"/api/pbx/cdr/{plain['uuid']}")
    assert r.status_code == 200 and "recording" not in r.json()["data"]
    assert zorio.get(f"/api/pbx/cdr/{plain['uuid']}/recording").status_code == 404
    forged = (
        plain["uuid"][:9]
        + ("0000" if plain["uuid"][9:13] != "0000" else "1111")
        + plain["uuid"][13:]
    )
    for uuid in (forged, "65569ce0-0183-4f61-a3b2-0e433cfa4031", "nope"):
        r = zorio.get(f"/api/pbx/cdr/{uuid}")
        assert r.status_code == 404 and r.json() == {"message": "Not found."}


def test_recording_redirect_is_a_fresh_signed_url(zorio, simulator):
    rec = next(c for c in simulator.calls("zorio", DAY) if c["recording_available"])
    r = zorio.get(f"/api/pbx/cdr/{rec['uuid']}/recording")
    assert r.status_code == 302
    audio = requests.get(r.headers["Location"])
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"


def test_tampered_or_expired_signatures_are_403(make_simulator):
    sim = make_simulator(zorio={"link_ttl": 1})
    client = ZorioClient(sim)
    rec = next(c for c in sim.calls("zorio", DAY) if c["recording_available"])
    url = client.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    bad_sig = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    for params in (
        {**query, "signature": bad_sig},
        {**query, "expires": str(int(query["expires"]) + 3600)},
        {"expires": query["expires"]},
        {},
    ):
        r = requests.get(base, params=params)
        assert r.status_code == 403 and r.json() == {"message": "Invalid signature."}
    assert requests.get(url).status_code == 200
    time.sleep(max(0.0, int(query["expires"]) + 1.05 - time.time()))
    r = requests.get(url)
    assert r.status_code == 403 and r.json() == {"message": "Invalid signature."}


def test_now_is_used_for_default_dates(zorio):
    body = zorio.cdr(per_page=1)
    today = datetime.now(UTC).date()
    assert body["total"] > 0
    assert body["data"][0]["start_time"][:10] >= (today - timedelta(days=30)).isoformat()


def _recorded(sim) -> dict:
    return next(c for c in sim.calls("zorio", DAY) if c["recording_available"])


def test_detail_without_a_recording_object_still_redirects(make_simulator):
    sim = make_simulator(zorio={"detail_recording": "absent"})
    client = ZorioClient(sim)
    rec = _recorded(sim)
    data = client.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]
    assert data["recording_available"] is True and "recording" not in data and data == rec
    r = client.get(f"/api/pbx/cdr/{rec['uuid']}/recording")
    assert r.status_code == 302
    audio = requests.get(r.headers["Location"], timeout=10)
    assert audio.status_code == 200 and audio.content == sim.recording_bytes("zorio", rec["uuid"])


def test_file_size_delta_makes_the_detail_wrong_not_the_audio(make_simulator):
    sim = make_simulator(zorio={"file_size_delta": -321})
    rec = _recorded(sim)
    recording = ZorioClient(sim).get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]
    audio = requests.get(recording["url"], timeout=10)
    assert len(audio.content) == int(audio.headers["Content-Length"])
    assert recording["file_size"] == len(audio.content) - 321
    params, _ = read_wav(audio.content)
    assert params.nframes == recording["duration"] * 8000  # complete and valid


def test_signed_urls_can_point_at_a_second_host(make_simulator):
    with Simulator(SimulatorConfig(), host="127.0.0.2") as files:
        sim = make_simulator(zorio={"recording_base_url": files.base_url})
        client = ZorioClient(sim)
        rec = _recorded(sim)
        url = client.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"]
        location = client.get(f"/api/pbx/cdr/{rec['uuid']}/recording").headers["Location"]
        for link in (url, location):
            assert link.startswith(files.base_url + "/api/public/recordings/")
            audio = requests.get(link, timeout=10)
            assert audio.status_code == 200
            assert audio.content == sim.recording_bytes("zorio", rec["uuid"])
        assert files.stats.count("/api/public/recordings/{id}/audio") == 2
        assert sim.stats.count("/api/public/recordings/{id}/audio") == 0


def test_the_audio_endpoint_can_redirect_to_a_cdn(make_simulator):
    with Simulator(SimulatorConfig(), host="127.0.0.2") as cdn:
        sim = make_simulator(zorio={"audio_redirect_base_url": cdn.base_url})
        rec = _recorded(sim)
        url = ZorioClient(sim).get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"]
        first = requests.get(url, allow_redirects=False, timeout=10)
        assert first.status_code == 302 and first.content == b""
        parts, moved = urlsplit(url), urlsplit(first.headers["Location"])
        assert f"{moved.scheme}://{moved.netloc}" == cdn.base_url
        assert (moved.path, parse_qs(moved.query)) == (parts.path, parse_qs(parts.query))
        audio = requests.get(url, timeout=10)
        assert [h.status_code for h in audio.history] == [302]
        assert audio.content == sim.recording_bytes("zorio", rec["uuid"])
        bad = url.replace("signature=", "signature=0")
        assert requests.get(bad, allow_redirects=False, timeout=10).status_code == 403


@pytest.mark.parametrize(
    ("switch", "header"), [("octet-stream", "application/octet-stream"), ("none", None)]
)
def test_audio_content_type_switch(make_simulator, switch, header):
    sim = make_simulator(audio_content_type=switch)
    rec = _recorded(sim)
    url = ZorioClient(sim).get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"]
    audio = requests.get(url, timeout=10)
    assert audio.headers.get("Content-Type") == header and audio.content[:4] == b"RIFF"
