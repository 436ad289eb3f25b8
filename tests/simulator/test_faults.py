"""Fault switches and statistics."""

from __future__ import annotations

import hashlib
import http.client
import time
import wave
from datetime import date

import pytest
import requests

from cdr_assets.simulator import DELETE

from .conftest import YeastarClient, ZorioClient, read_wav

DAY = date(2026, 6, 1)
WINDOW = {"from": "2026-06-01", "to": "2026-06-01"}


def _zorio_rec(sim):
    return next(c for c in sim.calls("zorio", DAY) if c["recording_available"])


def _yeastar_rec(sim):
    return next(c for c in sim.calls("yeastar", DAY) if "record_file" in c)


def test_fail_next_can_be_limited_to_requests_with_given_parameters(zorio, simulator):
    simulator.faults.fail_next("/api/pbx/cdr", 503, times=5, query={"from": "2026-06-02"})
    assert zorio.get("/api/pbx/cdr", **WINDOW).status_code == 200  # another window
    other = {"from": "2026-06-02", "to": "2026-06-02"}
    assert zorio.get("/api/pbx/cdr", **other).status_code == 503


def test_fail_next_answers_the_next_requests_then_recovers(zorio, simulator):
    simulator.faults.fail_next("/api/pbx/cdr", 429, times=2, retry_after="1")
    for _ in range(2):
        r = zorio.get("/api/pbx/cdr", **WINDOW)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert zorio.get("/api/pbx/cdr", **WINDOW).status_code == 200
    simulator.faults.fail_next("/api/pbx/cdr", 503)
    assert zorio.get("/api/pbx/cdr", **WINDOW).status_code == 503
    assert zorio.get("/api/pbx/cdr", **WINDOW).status_code == 200


def test_fail_next_can_serve_an_html_page_with_200(yeastar, simulator):
    simulator.faults.fail_next(
        "/openapi/v1.0/cdr/search", 200, body=b"<html>login</html>", content_type="text/html"
    )
    r = yeastar.http.get(
        simulator.base_url + "/openapi/v1.0/cdr/search", params={"access_token": yeastar.token}
    )
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html"
    assert r.text == "<html>login</html>"
    assert yeastar.get("cdr/search")["errcode"] == 0


def test_fail_next_only_hits_its_prefix(zorio, yeastar, simulator):
    simulator.faults.fail_next("/openapi/", 500)
    assert zorio.get("/api/pbx/cdr", **WINDOW).status_code == 200
    r = yeastar.http.get(simulator.base_url + "/openapi/v1.0/cdr/list")
    assert r.status_code == 500


def test_truncated_recording_keeps_content_length_but_closes_early(zorio, simulator):
    rec = _zorio_rec(simulator)
    url = zorio.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"]
    simulator.faults.truncate_next_recordings = 1
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url)
    r = requests.get(url)
    assert r.status_code == 200 and len(r.content) == int(r.headers["Content-Length"])


def test_truncated_yeastar_download_reads_short(yeastar, simulator):
    rec = _yeastar_rec(simulator)
    simulator.faults.truncate_next_recordings = 1
    r = yeastar.download({"file": rec["record_file"]}, stream=True)
    expected = int(r.headers["Content-Length"])
    got = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in r.iter_content(65536):
            got += chunk
    assert 0 < len(got) < expected


def test_corrupt_recording_has_right_length_and_bad_header(zorio, simulator):
    rec = _zorio_rec(simulator)
    url = zorio.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"]
    simulator.faults.corrupt_next_recordings = 1
    r = requests.get(url)
    assert r.status_code == 200 and len(r.content) == int(r.headers["Content-Length"])
    assert r.content[:4] not in (b"RIFF", b"ID3\x03") and r.content[0] != 0xFF
    with pytest.raises((wave.Error, EOFError)):
        read_wav(r.content)
    assert requests.get(url).content[:4] == b"RIFF"


def test_missing_recordings_are_listed_but_not_downloadable(zorio, yeastar, simulator):
    z, y = _zorio_rec(simulator), _yeastar_rec(simulator)
    url = zorio.get(f"/api/pbx/cdr/{z['uuid']}").json()["data"]["recording"]["url"]
    simulator.faults.missing_recordings.update({z["uuid"], y["record_file"]})
    detail = zorio.get(f"/api/pbx/cdr/{z['uuid']}").json()["data"]
    assert detail["recording_available"] is True and "recording" not in detail
    assert zorio.get(f"/api/pbx/cdr/{z['uuid']}/recording").status_code == 404
    assert requests.get(url).status_code == 404
    assert y in simulator.calls("yeastar", DAY)
    assert yeastar.get("recording/download", file=y["record_file"])["errcode"] == 60001


def test_withheld_recordings_appear_late(zorio, yeastar, simulator):
    z, y = _zorio_rec(simulator), _yeastar_rec(simulator)
    simulator.faults.withheld_recordings.update({z["uuid"], y["record_file"]})
    listed = zorio.cdr(per_page=200, **{"from": "2026-05-31", "to": "2026-06-01"})["data"]
    assert next(c for c in listed if c["uuid"] == z["uuid"])["recording_available"] is False
    assert "recording" not in zorio.get(f"/api/pbx/cdr/{z['uuid']}").json()["data"]
    searched = yeastar.get(
        "cdr/search", start_time="06/01/2026 00:00:00", end_time="06/01/2026 23:59:59"
    )["data"]
    assert "record_file" not in next(c for c in searched if c["id"] == y["id"])
    assert yeastar.get("recording/download", file=y["record_file"])["errcode"] == 60001
    simulator.faults.withheld_recordings.clear()
    assert zorio.get(f"/api/pbx/cdr/{z['uuid']}").json()["data"]["recording_available"] is True
    assert yeastar.download({"file": y["record_file"]}).status_code == 200


def test_total_offset_skews_the_reported_count(zorio, yeastar, simulator):
    simulator.faults.total_offset = 3
    assert (
        zorio.cdr(**WINDOW)["total"]
        == len([c for c in zorio.cdr(per_page=200, **WINDOW)["data"]]) + 3
    )
    assert (
        yeastar.get("cdr/search", start_time="06/01/2026 00:00:00", end_time="06/01/2026 23:59:59")[
            "total_number"
        ]
        == 203
    )


def test_throttle_slows_audio(zorio, simulator):
    rec = _zorio_rec(simulator)
    simulator.faults.recording_seconds[rec["uuid"]] = 3  # 48,044 bytes
    simulator.faults.throttle_bytes_per_s = 100_000
    url = zorio.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"]
    started = time.monotonic()
    r = requests.get(url)
    assert len(r.content) == 48_044
    assert time.monotonic() - started >= 0.3


def test_recording_seconds_override_and_large_stream(zorio, simulator):
    rec = _zorio_rec(simulator)
    simulator.faults.recording_seconds[rec["uuid"]] = 2000  # 32 MB
    recording = zorio.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]
    assert recording["duration"] == 2000 and recording["file_size"] == 32_000_044
    h, n = hashlib.sha256(), 0
    with requests.get(recording["url"], stream=True) as r:
        for chunk in r.iter_content(1 << 20):
            h.update(chunk)
            n += len(chunk)
    assert n == 32_000_044
    assert h.hexdigest() == simulator.recording_sha256("zorio", rec["uuid"])


def test_stats_count_endpoints_and_keep_no_secrets(zorio, yeastar, simulator):
    zorio.cdr(**WINDOW)
    zorio.cdr(**WINDOW)
    yeastar.get("cdr/list", page_size=1)
    rec = _yeastar_rec(simulator)
    yeastar.download({"file": rec["record_file"]})
    stats = simulator.stats
    assert stats.count("/api/pbx/cdr") == 2
    assert stats.count("get_token") == 1 == stats.count("/openapi/v1.0/get_token")
    assert stats.count("cdr/list") == 1
    assert stats.count("recording/download") == 1 and stats.count("/api/download") == 1
    assert ("GET", "/api/pbx/cdr", 200) in stats.requests
    assert ("GET", "/api/download", 200) in stats.requests
    flat = repr(stats.requests)
    assert yeastar.token not in flat and "signature" not in flat and "Recording-" not in flat
    assert stats.audio_bytes_sent > 0
    assert stats.max_in_flight >= 1


def test_keep_alive_serves_many_requests_on_one_connection(simulator):
    conn = http.client.HTTPConnection(simulator.host, simulator.port, timeout=10)
    conn.connect()
    sock = conn.sock
    try:
        for _ in range(20):
            conn.request(
                "GET",
                "/api/pbx/cdr?from=2026-06-01&to=2026-06-01&per_page=1",
                headers={"Authorization": "Bearer demo-token"},
            )
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200 and len(body) == int(r.getheader("Content-Length"))
            assert not r.will_close
        assert conn.sock is sock  # never reconnected
    finally:
        conn.close()


def test_yeastar_client_unaffected_by_zorio_faults(make_simulator):
    sim = make_simulator()
    sim.faults.fail_next("/api/pbx/", 500, times=5)
    assert YeastarClient(sim).get("cdr/list", page_size=1)["errcode"] == 0
    assert ZorioClient(sim).get("/api/pbx/cdr").status_code == 500


def test_override_record_replaces_and_removes_fields_in_pages_and_calls(make_simulator):
    sim = make_simulator(calls_per_day=30, zorio={"timezone": "UTC", "date_timezone": "UTC"})
    zorio, yeastar = ZorioClient(sim), YeastarClient(sim)
    z_before, y_before = sim.calls("zorio", DAY), sim.calls("yeastar", DAY)
    z, y = z_before[4], y_before[7]
    sim.faults.override_record(
        "zorio", z["uuid"], duration="forty", start_time="not a time", uuid=DELETE
    )
    sim.faults.override_record("yeastar", y["uid"], timestamp="soon", uid=12345)
    sim.faults.override_record("yeastar", y["uid"], call_id=DELETE)  # merges with the above
    page = zorio.cdr(per_page=50, **WINDOW)["data"]
    served = page[4]
    assert "uuid" not in served and served["duration"] == "forty"
    assert served["start_time"] == "not a time"
    assert list(served) == [k for k in z if k != "uuid"]  # replaced keys keep their place
    assert page[:4] + page[5:] == z_before[:4] + z_before[5:]
    assert sim.calls("zorio", DAY) == page
    found = yeastar.get(
        "cdr/search", start_time="06/01/2026 00:00:00", end_time="06/01/2026 23:59:59"
    )["data"]
    assert found[7]["uid"] == 12345 and found[7]["timestamp"] == "soon"
    assert "call_id" not in found[7] and found[7]["id"] == y["id"]
    assert found == sim.calls("yeastar", DAY)
    sim.faults.clear()
    assert zorio.cdr(per_page=50, **WINDOW)["data"] == z_before


def test_override_record_can_serve_a_list_item_that_is_not_an_object(make_simulator):
    sim = make_simulator(calls_per_day=12, zorio={"timezone": "UTC", "date_timezone": "UTC"})
    calls = sim.calls("zorio", DAY)
    sim.faults.override_record("zorio", calls[0]["uuid"], replace_with=42)
    sim.faults.override_record("zorio", calls[1]["uuid"], replace_with=None)
    sim.faults.override_record("zorio", calls[2]["uuid"], replace_with="oops")
    data = ZorioClient(sim).cdr(per_page=5, **WINDOW)["data"]
    assert data[:3] == [42, None, "oops"] and data[3:] == calls[3:5]
    with pytest.raises(ValueError, match="fields or replace_with"):
        sim.faults.override_record("zorio", calls[3]["uuid"])
    with pytest.raises(ValueError, match="vendor"):
        sim.faults.override_record("pbx", calls[3]["uuid"], duration=1)
