"""The simulated Yeastar P-Series OpenAPI, over real HTTP."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import requests
import urllib3

from .conftest import API, UA, YeastarClient, all_pages, read_wav

DAY = date(2026, 5, 30)
FULL_DAY = {"start_time": "05/30/2026 00:00:00", "end_time": "05/30/2026 23:59:59"}


def test_request_without_user_agent_is_parameter_error(simulator):
    # urllib3 adds its own User-Agent unless told to skip it
    r = requests.post(
        simulator.base_url + API + "get_token",
        headers={"User-Agent": urllib3.util.SKIP_HEADER},
        json={"username": "demo-client", "password": "demo-secret"},
    )
    assert r.status_code == 200
    assert r.json() == {"errcode": 40002, "errmsg": "PARAMETER ERROR"}


def test_get_token_returns_both_tokens_with_configured_ttls(make_simulator):
    sim = make_simulator(yeastar={"access_token_ttl": 600, "refresh_token_ttl": 7200})
    body = YeastarClient(sim).login()
    assert body["errcode"] == 0 and body["errmsg"] == "SUCCESS"
    assert body["access_token_expire_time"] == 600
    assert body["refresh_token_expire_time"] == 7200
    assert len(body["access_token"]) == 32 and body["access_token"] != body["refresh_token"]


def test_five_failed_logins_block_the_ip(yeastar, simulator):
    for _ in range(5):
        assert yeastar.login(client_secret="wrong") == {"errcode": -1, "errmsg": "FAILURE"}
    assert yeastar.login()["errcode"] == 70004
    assert yeastar.get("cdr/list")["errcode"] == 70004
    simulator.unblock_ips()
    assert yeastar.login()["errcode"] == 0


def test_a_success_resets_the_failure_count(yeastar):
    for _ in range(4):
        yeastar.login(client_secret="wrong")
    assert yeastar.login()["errcode"] == 0
    for _ in range(4):
        yeastar.login(client_secret="wrong")
    assert yeastar.login()["errcode"] == 0


def test_more_than_max_tokens_is_max_limitation_exceeded(make_simulator):
    sim = make_simulator(yeastar={"max_tokens": 2})
    client = YeastarClient(sim)  # token 1
    second = client.login()
    assert second["errcode"] == 0
    assert client.login() == {"errcode": 60002, "errmsg": "MAX LIMITATION EXCEEDED"}
    assert client.get("del_token", token=second["access_token"])["errcode"] == 0
    assert client.login()["errcode"] == 0
    sim.faults.expire_tokens()  # expired tokens no longer count
    assert client.login()["errcode"] == 0


def test_refresh_rotates_both_tokens(yeastar):
    first = yeastar.login()
    fresh = yeastar.post("refresh_token", {"refresh_token": first["refresh_token"]})
    assert fresh["errcode"] == 0
    assert {fresh["access_token"], fresh["refresh_token"]}.isdisjoint(
        {first["access_token"], first["refresh_token"]}
    )
    assert yeastar.get("cdr/list", token=first["access_token"], page_size=1)["errcode"] == 10004
    assert yeastar.get("cdr/list", token=fresh["access_token"], page_size=1)["errcode"] == 0
    old = yeastar.post("refresh_token", {"refresh_token": first["refresh_token"]})
    assert old == {"errcode": 10004, "errmsg": "TOKEN EXPIRED"}


def test_endpoints_need_a_live_access_token(yeastar, simulator):
    assert yeastar.get("cdr/list", token="")["errcode"] == 10004
    assert yeastar.get("cdr/list", token="nope")["errcode"] == 10004
    refresh = yeastar.login()["refresh_token"]
    simulator.faults.expire_tokens()
    assert yeastar.get("cdr/list", page_size=1)["errcode"] == 10004
    renewed = yeastar.post("refresh_token", {"refresh_token": refresh})  # refresh still works
    assert yeastar.get("cdr/list", token=renewed["access_token"], page_size=1)["errcode"] == 0


def test_access_token_expires_after_its_ttl(make_simulator):
    client = YeastarClient(make_simulator(yeastar={"access_token_ttl": 1}))
    assert client.get("cdr/list", page_size=1)["errcode"] == 0
    time.sleep(1.1)
    assert client.get("cdr/list", page_size=1)["errcode"] == 10004


def test_unknown_interface(yeastar):
    assert yeastar.get("cdr/nothing")["errcode"] == 10001


def test_system_information_reports_display_format(make_simulator):
    sim = make_simulator(yeastar={"date_format": "YYYY/MM/DD", "clock": 12})
    info = YeastarClient(sim).get("system/information")
    assert info["errcode"] == 0
    data = info["data"]
    assert data["system_date_format"] == "YYYY/MM/DD"
    assert data["system_time_format"] == "hh:mm:ss AM"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (AM|PM)", data["system_time"])
    assert abs(data["timestamp"] - time.time()) < 5
    assert {"device_name", "model_name", "sn", "firmware_version", "up_time"} <= data.keys()


def test_24_hour_clock_is_reported_as_hh_like_the_doc(yeastar):
    data = yeastar.get("system/information")["data"]
    assert data["system_date_format"] == "MM/DD/YYYY"
    assert data["system_time_format"] == "hh:mm:ss"
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", data["system_time"])


def test_search_of_a_full_day_returns_that_days_calls_in_order(yeastar, simulator):
    body = yeastar.get("cdr/search", **FULL_DAY)
    assert body["errcode"] == 0 and body["errmsg"] == "SUCCESS"
    assert body["total_number"] == 200
    assert body["data"] == simulator.calls("yeastar", DAY)
    stamps = [r["timestamp"] for r in body["data"]]
    assert stamps == sorted(stamps)
    tz = ZoneInfo("Asia/Singapore")
    for rec in body["data"]:
        local = datetime.fromtimestamp(rec["timestamp"], tz)
        assert local.date() == DAY
        assert rec["time"] == local.strftime("%m/%d/%Y %H:%M:%S")
        assert rec["uid"].startswith(local.strftime("%Y%m%d%H%M%S"))
        assert re.fullmatch(r"\d{14}[0-9A-F]{5}", rec["uid"])


def test_paging_covers_the_window_exactly_once(yeastar):
    def fetch(page):
        body = yeastar.get("cdr/search", page=page, page_size=7, **FULL_DAY)
        return body["data"], body["total_number"]

    records, totals = all_pages(fetch)
    assert set(totals) == {200}
    assert len(records) == 200 == len({r["uid"] for r in records})
    assert len({r["id"] for r in records}) == 200
    assert yeastar.get("cdr/search", page=29, page_size=7, **FULL_DAY)["data"] == records[196:]


def test_window_bounds_are_inclusive_wall_clock(yeastar, simulator):
    calls = simulator.calls("yeastar", DAY)
    first, third = calls[0], calls[2]
    start = first["time"]
    end = third["time"]
    body = yeastar.get("cdr/search", start_time=start, end_time=end)
    assert [r["id"] for r in body["data"]] == [c["id"] for c in calls if start <= c["time"] <= end]


def test_bad_parameters_are_40002(yeastar):
    for params in (
        {"start_time": "2026-05-30 00:00:00"},
        {"start_time": "05/30/2026 02:00:00 PM"},
        {"end_time": "05/30/2026"},
        {"start_time": "13/30/2026 00:00:00"},
        {"page_size": 0},
        {"page_size": 10001},
        {"page": 0},
        {"page": "x"},
        {"status": "ANSWERD"},
        {"enable_fuzzy_search": 2},
    ):
        assert yeastar.get("cdr/search", **params)["errcode"] == 40002, params


def test_12_hour_clock_and_year_first_format(make_simulator):
    sim = make_simulator(yeastar={"date_format": "YYYY/MM/DD", "clock": 12})
    client = YeastarClient(sim)
    body = client.get(
        "cdr/search", start_time="2026/05/30 02:00:00 PM", end_time="2026/05/30 02:59:59 PM"
    )
    tz = ZoneInfo("Asia/Singapore")
    expected = [
        c
        for c in sim.calls("yeastar", DAY)
        if datetime.fromtimestamp(c["timestamp"], tz).hour == 14
    ]
    assert body["total_number"] == len(expected) > 0
    assert body["data"] == expected
    assert all(re.fullmatch(r"2026/05/30 02:\d{2}:\d{2} PM", r["time"]) for r in body["data"])
    assert client.get("cdr/search", start_time="2026/05/30 14:00:00")["errcode"] == 40002


def test_records_have_the_vendor_page_quirks(make_simulator):
    sim = make_simulator(calls_per_day=3000)
    calls = sim.calls("yeastar", DAY)
    unanswered = [
        c for c in calls if c["disposition"] in ("NO ANSWER", "NO ANSWERED", "BUSY", "FAILED")
    ]
    assert unanswered and all(
        "duration" not in c
        and "talk_duration" not in c
        and "ring_duration" not in c
        and "record_file" not in c
        for c in unanswered
    )
    assert {c["disposition"] for c in calls} == {
        "ANSWERED",
        "NO ANSWER",
        "BUSY",
        "FAILED",
        "VOICEMAIL",
        "ANSWERD",
        "NO ANSWERED",
    }
    assert all(c["src_addr"] == "" and c["reason"].endswith("    ") for c in calls)
    for c in calls:
        kind = c["call_type"]
        assert ("src_trunk" in c) == ("did_number" in c) == (kind == "Inbound")
        assert ("dst_trunk" in c) == ("dod_number" in c) == (kind == "Outbound")
        if kind in ("Outbound", "Internal"):
            assert re.fullmatch(r"[A-Za-z ]+<20\d\d>", c["call_from"])
        else:
            assert c["call_from"].isdigit()
        if "record_file" in c:
            assert c["disposition"] in ("ANSWERED", "ANSWERD") and c["talk_duration"] > 0
            assert re.fullmatch(
                rf"\d{{14}}-{c['timestamp']}\.\d+-\d+-\d+-{kind}\.wav", c["record_file"]
            )
        if "talk_duration" in c:
            assert c["duration"] == c.get("ring_duration", 0) + c["talk_duration"] <= 700
    old_firmware = [c for c in calls if "call_from_number" not in c]
    assert 0.05 < len(old_firmware) / len(calls) < 0.15
    assert all("call_to_name" not in c for c in old_firmware)
    external_callee = [c for c in calls if c["call_type"] == "Outbound" and "call_to_name" in c]
    assert all(c["call_to_name"] == " " for c in external_callee)
    answered = [c for c in calls if "talk_duration" in c]
    assert any("ring_duration" not in c for c in answered)  # like the page's first example
    with_rec = [
        c
        for c in answered
        if c["disposition"] in ("ANSWERED", "ANSWERD") and c["talk_duration"] > 0
    ]
    assert 0.6 < sum("record_file" in c for c in with_rec) / len(with_rec) < 0.8


def test_filters(yeastar, simulator):
    calls = simulator.calls("yeastar", DAY)
    ext = next(
        c["call_from_number"]
        for c in calls
        if c["call_type"] == "Outbound" and "call_from_number" in c
    )

    def number(c):
        return c["call_from"].rsplit("<", 1)[-1].rstrip(">")

    body = yeastar.get("cdr/search", call_from=ext, **FULL_DAY)
    assert body["data"] == [c for c in calls if number(c) == ext]
    body = yeastar.get("cdr/search", status="BUSY", **FULL_DAY)
    assert body["total_number"] == sum(c["disposition"] == "BUSY" for c in calls) > 0
    body = yeastar.get("cdr/search", call_from=ext[:3], enable_fuzzy_search=1, **FULL_DAY)
    assert body["total_number"] >= len([c for c in calls if number(c) == ext])
    body = yeastar.get("cdr/search", extension_group=1, **FULL_DAY)
    assert 0 < body["total_number"] < 200


def test_cdr_list_pages_the_last_days(yeastar):
    body = yeastar.get("cdr/list", page_size=10)
    assert body["errcode"] == 0 and body["total_number"] == 3 * 200 and len(body["data"]) == 10


def test_recording_list_and_wav_download(yeastar, simulator):
    listing = yeastar.get("recording/list", page_size=5)
    assert listing["errcode"] == 0 and listing["total_number"] > 0
    item = listing["data"][0]
    assert set(item) == {
        "id",
        "time",
        "uid",
        "call_from",
        "call_to",
        "duration",
        "size",
        "call_type",
        "file",
    }
    for ref_param in ({"file": item["file"]}, {"id": item["id"]}):
        r = yeastar.download(ref_param)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "audio/wav"
        assert int(r.headers["Content-Length"]) == len(r.content) == item["size"]
        params, frames = read_wav(r.content)
        assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 8000)
        assert params.nframes == item["duration"] * 8000
        assert r.content == simulator.recording_bytes("yeastar", item["file"])
        assert hashlib.sha256(r.content).hexdigest() == simulator.recording_sha256(
            "yeastar", item["file"]
        )


def test_recording_of_a_searched_cdr_matches_talk_time(yeastar, simulator):
    rec = next(c for c in simulator.calls("yeastar", DAY) if "record_file" in c)
    r = yeastar.download({"file": rec["record_file"]})
    params, _ = read_wav(r.content)
    assert params.nframes == rec["talk_duration"] * 8000


def test_download_errors(make_simulator):
    sim = make_simulator(yeastar={"link_ttl": 1})
    client = YeastarClient(sim)
    rec = next(c for c in sim.calls("yeastar", DAY) if "record_file" in c)
    assert client.get("recording/download", file="nope.wav")["errcode"] == 60001
    assert client.get("recording/download", id=123)["errcode"] == 60001
    no_rec = next(c for c in sim.calls("yeastar", DAY) if "record_file" not in c)
    assert client.get("recording/download", id=no_rec["id"]) == {
        "errcode": 60001,
        "errmsg": "DATA NOT FOUND",
    }
    link = client.get("recording/download", file=rec["record_file"])
    assert link["file"] == rec["record_file"]
    url = sim.base_url + link["download_resource_url"]
    assert link["download_resource_url"].startswith("/api/download/")
    no_token = client.http.get(url)
    assert no_token.status_code == 200 and no_token.json()["errcode"] == 10004
    tampered = url[:-8] + ("0" if url[-8] != "0" else "1") + url[-7:]
    assert client.http.get(tampered, params={"access_token": client.token}).status_code == 404
    time.sleep(2.1)
    expired = client.http.get(url, params={"access_token": client.token})
    assert expired.status_code == 403
    assert expired.json() == {"errcode": -1, "errmsg": "DOWNLOAD LINK EXPIRED"}


def test_mp3_downloads_are_one_at_a_time(make_simulator):
    sim = make_simulator(yeastar={"recording_format": "mp3"})
    client = YeastarClient(sim)
    rec = next(c for c in sim.calls("yeastar", DAY) if "record_file" in c)
    assert rec["record_file"].endswith(".mp3")
    r = client.download({"file": rec["record_file"]})
    assert r.status_code == 200 and r.headers["Content-Type"] == "audio/mpeg"
    assert r.content[:4] == b"\xff\xfb\x90\x64" and len(r.content) % 417 == 0
    assert len(r.content) // 417 == -(-rec["talk_duration"] * 44100 // 1152)
    assert sim.stats.max_concurrent_mp3 == 1

    sim.faults.throttle_bytes_per_s = 50_000
    slow = client.download({"file": rec["record_file"]}, stream=True)
    second = client.download({"file": rec["record_file"]})
    assert second.status_code == 503 and second.json()["errcode"] == -1
    assert sim.stats.max_concurrent_mp3 == 2
    slow.close()
    sim.faults.throttle_bytes_per_s = None
    deadline = time.time() + 5
    while client.download({"file": rec["record_file"]}).status_code != 200:
        assert time.time() < deadline
        time.sleep(0.05)


def test_slow_download_started_in_time_completes(make_simulator):
    sim = make_simulator(yeastar={"link_ttl": 1})
    client = YeastarClient(sim)
    rec = next(c for c in sim.calls("yeastar", DAY) if "record_file" in c)
    sim.faults.recording_seconds[rec["record_file"]] = 2  # 32,044 bytes
    sim.faults.throttle_bytes_per_s = 20_000  # ~1.6 s, longer than the link lives
    r = client.download({"file": rec["record_file"]})
    assert r.status_code == 200 and len(r.content) == 32_044


def test_concurrent_wav_downloads_are_fine(yeastar, simulator):
    files = [c["record_file"] for c in simulator.calls("yeastar", DAY) if "record_file" in c][:4]
    results: list[int] = []

    def fetch(name):
        client = YeastarClient.__new__(YeastarClient)
        client.sim, client.http, client.token = simulator, requests.Session(), yeastar.token
        client.http.headers.update(UA)
        results.append(client.download({"file": name}).status_code)

    threads = [threading.Thread(target=fetch, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * len(files)


def test_newest_first_is_the_reverse_of_oldest_first_across_pages(make_simulator):
    asc = YeastarClient(make_simulator())
    desc = YeastarClient(make_simulator(yeastar={"order": "desc"}))
    for name, params in (("cdr/search", FULL_DAY), ("cdr/list", {})):

        def pages(client, name=name, params=params):
            def fetch(page):
                body = client.get(name, page=page, page_size=7, **params)
                return body["data"], body["total_number"]

            return all_pages(fetch)

        up, up_totals = pages(asc)
        down, down_totals = pages(desc)
        assert down == up[::-1] and len(up) == up_totals[0] and set(down_totals) == {len(up)}
        stamps = [r["timestamp"] for r in down]
        assert stamps == sorted(stamps, reverse=True)
    filtered = desc.get("cdr/search", status="ANSWERED", **FULL_DAY)["data"]
    assert filtered == asc.get("cdr/search", status="ANSWERED", **FULL_DAY)["data"][::-1]


def test_reported_date_format_differs_from_what_search_parses(make_simulator):
    sim = make_simulator(yeastar={"reported_date_format": "DD/MM/YYYY"})
    client = YeastarClient(sim)
    data = client.get("system/information")["data"]
    assert data["system_date_format"] == "DD/MM/YYYY"
    local = datetime.fromtimestamp(data["timestamp"], ZoneInfo("Asia/Singapore"))
    assert data["system_time"][:10] == local.strftime("%d/%m/%Y")
    as_reported = client.get(
        "cdr/search", start_time="30/05/2026 00:00:00", end_time="30/05/2026 23:59:59"
    )
    assert as_reported["errcode"] == 40002  # the parser still wants MM/DD/YYYY
    assert client.get("cdr/search", **FULL_DAY)["total_number"] == 200
    assert all(r["time"].startswith("05/30/2026") for r in sim.calls("yeastar", DAY))


def test_end_time_exclusive_leaves_out_the_end_second(make_simulator):
    inclusive = make_simulator()
    exclusive = make_simulator(yeastar={"end_time_exclusive": True})
    calls = inclusive.calls("yeastar", DAY)
    window = {"start_time": calls[0]["time"], "end_time": calls[2]["time"]}
    got_in = YeastarClient(inclusive).get("cdr/search", **window)["data"]
    got_ex = YeastarClient(exclusive).get("cdr/search", **window)["data"]
    assert [r["id"] for r in got_in] == [c["id"] for c in calls[:3]]
    assert [r["id"] for r in got_ex] == [c["id"] for c in calls[:2]]


def test_mp3_behind_a_wav_name(make_simulator):
    sim = make_simulator(yeastar={"recording_format": "mp3", "record_file_suffix": "wav"})
    client = YeastarClient(sim)
    rec = next(c for c in sim.calls("yeastar", DAY) if "record_file" in c)
    assert rec["record_file"].endswith("-" + rec["call_type"] + ".wav")
    link = client.get("recording/download", file=rec["record_file"])
    assert link["file"] == rec["record_file"]
    r = client.download({"file": rec["record_file"]})
    assert r.status_code == 200 and r.headers["Content-Type"] == "audio/mpeg"
    assert r.content[:4] == b"\xff\xfb\x90\x64" and r.content[:4] != b"RIFF"
    assert f'filename="{rec["record_file"]}"' in r.headers["Content-Disposition"]
    assert r.content == sim.recording_bytes("yeastar", rec["record_file"])
    item = client.get("recording/list", page_size=1)["data"][0]  # the last days, not DAY
    listed = client.download({"file": item["file"]})
    assert item["file"].endswith(".wav") and listed.content[:4] == b"\xff\xfb\x90\x64"
    assert item["size"] == len(listed.content)


@pytest.mark.parametrize(
    ("switch", "header"),
    [("octet-stream", "application/octet-stream"), ("none", None), ("audio", "audio/wav")],
)
def test_audio_content_type_switch(make_simulator, switch, header):
    sim = make_simulator(audio_content_type=switch)
    rec = next(c for c in sim.calls("yeastar", DAY) if "record_file" in c)
    r = YeastarClient(sim).download({"file": rec["record_file"]})
    assert r.status_code == 200 and r.headers.get("Content-Type") == header
    assert r.content[:4] == b"RIFF" and len(r.content) == int(r.headers["Content-Length"])
