"""YeastarResource against the simulated P-Series PBX over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import orjson
import pyarrow as pa
import pytest

from cdr_assets.errors import (
    PbxApiError,
    PbxAuthError,
    PbxBodyError,
    RecordingLinkExpired,
    RecordingLinkRefused,
    RecordingMissing,
)
from cdr_assets.normalize import normalize_yeastar_records
from cdr_assets.records import JsonRecords
from cdr_assets.simulator.config import YEASTAR_DATE_FORMATS
from cdr_assets.vendors import PbxClient, YeastarResource
from cdr_assets.vendors.resource import BAD_BODY_REPEATS
from cdr_assets.vendors.yeastar import (
    YeastarDisplayFormat,
    YeastarRecordingLink,
    check_system_clock,
    clock_from_system_information,
    date_pattern_for,
)
from tests.vendors.loopback import WAV_BODY, free_port, http_host, raw_server
from tests.vendors.simclients import (
    DAY,
    LINK_TTL_S,
    collect,
    of_days,
    record_start,
    settled_count,
    wait_out_links_minted_before,
    yeastar_client,
)

#: The simulator's default Yeastar zone, which the test clients are configured with.
ZONE = "Asia/Singapore"
ERRCODE_BODY_10004 = b'{"errcode":10004,"errmsg":"TOKEN EXPIRED"}'


def normalize(records: list[dict] | JsonRecords) -> pa.Table:
    return normalize_yeastar_records(
        records, pbx="hq", timezone=ZONE, ingested_at=datetime(2026, 6, 16, tzinfo=UTC)
    )


def uids(records: list[dict]) -> list[str]:
    return sorted(r["uid"] for r in records)


def recording_refs(sim, day=DAY) -> list[str]:
    return [r["record_file"] for r in sim.calls("yeastar", day) if r.get("record_file")]


def download(client: YeastarResource, ref: str) -> bytes:
    with client.download_slot(ref), client.open_recording(ref) as stream:
        return b"".join(stream.iter_chunks(64 * 1024))


# --------------------------------------------------------------------------- display format


@pytest.mark.parametrize(
    ("display", "pattern"),
    [
        ("MM/DD/YYYY", "%m/%d/%Y"),
        ("DD/MM/YYYY", "%d/%m/%Y"),
        ("YYYY/MM/DD", "%Y/%m/%d"),
        ("YYYY-MM-DD", "%Y-%m-%d"),
        ("dd-mm-yyyy", "%d-%m-%Y"),
    ],
)
def test_date_display_formats_map_to_strftime(display: str, pattern: str) -> None:
    assert date_pattern_for(display) == pattern


@pytest.mark.parametrize("display", ["MM/DD/YY", "YYYY/MM-DD", "MM/MM/YYYY", "YYYY.MM.DD", ""])
def test_unknown_date_display_format_is_refused(display: str) -> None:
    with pytest.raises(ValueError, match="display format"):
        date_pattern_for(display)


def test_hh_with_a_24_hour_system_time_means_24_hours() -> None:
    # The vendor's own example: "hh:mm:ss" next to system_time "2025/08/22 16:44:40".
    assert clock_from_system_information("hh:mm:ss", "2025/08/22 16:44:40") == 24
    assert clock_from_system_information("hh:mm:ss AM", "22/08/2025 04:44:40 PM") == 12
    assert clock_from_system_information("hh:mm:ss", "2025/08/22 04:44:40 PM") == 12


def test_twelve_hour_window_strings_do_not_depend_on_locale() -> None:
    fmt = YeastarDisplayFormat("YYYY/MM/DD", 12)
    assert fmt.strftime_pattern == "%Y/%m/%d %I:%M:%S %p"
    assert fmt.format_wall_time(datetime(2026, 6, 15, 0, 0, 0)) == "2026/06/15 12:00:00 AM"
    assert fmt.format_wall_time(datetime(2026, 6, 15, 12, 5, 0)) == "2026/06/15 12:05:00 PM"
    assert fmt.format_wall_time(datetime(2026, 6, 15, 23, 59, 59)) == "2026/06/15 11:59:59 PM"


@pytest.mark.parametrize("clock", [24, 12])
@pytest.mark.parametrize("date_format", YEASTAR_DATE_FORMATS)
def test_every_display_format_round_trips(make_simulator, date_format: str, clock: int) -> None:
    sim = make_simulator(calls_per_day=40, yeastar={"date_format": date_format, "clock": clock})
    client = yeastar_client(sim)
    assert client.display_format() == YeastarDisplayFormat(date_format, clock)
    fetch = client.fetch_cdrs(DAY, DAY)
    records = collect(fetch)
    assert uids(of_days(records, ZONE, DAY)) == uids(sim.calls("yeastar", DAY))
    assert fetch.api_total == fetch.fetched == len(records) >= 40
    assert settled_count(sim, "system/information") == 1


def test_config_override_is_still_checked_against_the_pbx_clock(make_simulator) -> None:
    sim = make_simulator(calls_per_day=30, yeastar={"date_format": "DD-MM-YYYY", "clock": 12})
    client = yeastar_client(sim, date_format="DD-MM-YYYY", clock=12)
    assert len(of_days(collect(client.fetch_cdrs(DAY, DAY)), ZONE, DAY)) == 30
    assert settled_count(sim, "system/information") == 1


def test_config_override_without_clock_check_skips_system_information(make_simulator) -> None:
    sim = make_simulator(calls_per_day=30, yeastar={"date_format": "DD-MM-YYYY", "clock": 12})
    client = yeastar_client(sim, date_format="DD-MM-YYYY", clock=12, verify_clock=False)
    fetch = client.fetch_cdrs(DAY, DAY)
    assert len(of_days(collect(fetch), ZONE, DAY)) == 30
    assert settled_count(sim, "system/information") == 0
    assert not fetch.query_verified


def test_bad_override_is_refused_at_config_time(simulator) -> None:
    with pytest.raises(ValueError, match="clock"):
        yeastar_client(simulator, clock=13)
    with pytest.raises(ValueError, match="display format"):
        yeastar_client(simulator, date_format="MM/DD/YY")


# --------------------------------------------------------------------------- tokens


def test_one_token_serves_many_calls(simulator) -> None:
    client = yeastar_client(simulator, page_size=25)
    for _ in range(3):
        collect(client.fetch_cdrs(DAY, DAY + timedelta(days=1)))
    assert settled_count(simulator, "cdr/search") >= 3 * 16
    assert settled_count(simulator, "get_token") == 1
    assert settled_count(simulator, "refresh_token") == 0


def test_token_is_refreshed_before_it_expires(make_simulator) -> None:
    sim = make_simulator(yeastar={"access_token_ttl": 4})
    client = yeastar_client(sim, token_refresh_margin_s=1)
    client.system_information()
    time.sleep(3.3)  # inside the margin: 1 s before the 4 s expiry
    client.system_information()
    assert settled_count(sim, "get_token") == 1
    assert settled_count(sim, "refresh_token") == 1
    assert all(status == 200 for _, _, status in sim.stats.requests)


def test_margin_never_exceeds_half_the_token_lifetime(make_simulator) -> None:
    sim = make_simulator(yeastar={"access_token_ttl": 30})
    client = yeastar_client(sim)  # default margin 120 s > 30 s lifetime
    for _ in range(5):
        client.system_information()
    assert settled_count(sim, "get_token") == 1
    assert settled_count(sim, "refresh_token") == 0


def test_expired_refresh_token_falls_back_to_one_get_token(make_simulator) -> None:
    sim = make_simulator(yeastar={"access_token_ttl": 2, "refresh_token_ttl": 2})
    client = yeastar_client(sim)
    client.system_information()
    time.sleep(2.2)
    client.system_information()
    assert settled_count(sim, "get_token") == 2
    assert settled_count(sim, "refresh_token") == 0


def test_token_expired_mid_run_reauthenticates_once_and_continues(simulator) -> None:
    client = yeastar_client(simulator, page_size=20)
    pages = client.fetch_cdrs(DAY, DAY).pages()
    records = list(next(pages))
    simulator.faults.expire_tokens()
    for page in pages:
        records.extend(page)
    assert uids(of_days(records, ZONE, DAY)) == uids(simulator.calls("yeastar", DAY))
    assert settled_count(simulator, "get_token") == 1
    assert settled_count(simulator, "refresh_token") == 1


def test_refused_refresh_falls_back_to_get_token(simulator, yeastar) -> None:
    yeastar.system_information()
    simulator.faults.expire_tokens()
    simulator.faults.fail_next("/openapi/v1.0/refresh_token", 200, body=ERRCODE_BODY_10004)
    yeastar.system_information()
    assert settled_count(simulator, "refresh_token") == 1
    assert settled_count(simulator, "get_token") == 2


def test_second_token_expired_answer_raises(simulator, yeastar) -> None:
    yeastar.system_information()
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", 200, times=2, body=ERRCODE_BODY_10004)
    with pytest.raises(PbxApiError) as caught:
        collect(yeastar.fetch_cdrs(DAY, DAY))
    assert caught.value.errcode == 10004 and not caught.value.transient
    assert "/openapi/v1.0/cdr/search" in str(caught.value)
    assert settled_count(simulator, "cdr/search") == 2


def test_wrong_secret_fails_after_exactly_one_get_token(simulator) -> None:
    client = yeastar_client(simulator, client_secret="not-the-secret")
    with pytest.raises(PbxAuthError) as caught:
        collect(client.fetch_cdrs(DAY, DAY))
    assert "get_token" in str(caught.value) and "not retried" in str(caught.value)
    with pytest.raises(PbxAuthError):
        client.system_information()
    with pytest.raises(PbxAuthError):
        client.open_recording("x.wav")
    assert settled_count(simulator, "get_token") == 1


@pytest.mark.parametrize(
    ("errcode", "words"),
    [(70004, "IP BLOCKED"), (70087, "IP FORBIDDEN"), (60002, "maximum number of valid access")],
)
def test_ip_block_and_token_cap_are_explained(simulator, errcode: int, words: str) -> None:
    body = f'{{"errcode":{errcode},"errmsg":"X"}}'.encode()
    simulator.faults.fail_next("/openapi/v1.0/get_token", 200, body=body)
    client = yeastar_client(simulator)
    with pytest.raises(PbxAuthError, match=words) as caught:
        client.system_information()
    assert caught.value.errcode == errcode
    assert settled_count(simulator, "get_token") == 1


def test_get_token_5xx_is_sent_once_and_is_no_auth_failure(simulator, yeastar) -> None:
    simulator.faults.fail_next("/openapi/v1.0/get_token", 503, retry_after="0")
    with pytest.raises(PbxApiError) as caught:
        yeastar.system_information()
    assert not isinstance(caught.value, PbxAuthError) and caught.value.transient
    assert settled_count(simulator, "get_token") == 1  # a POST: never re-sent on a status
    yeastar.system_information()  # no breaker opened: the next attempt goes through
    assert settled_count(simulator, "get_token") == 2


def test_read_timeout_on_get_token_makes_exactly_one_request() -> None:
    with raw_server("silent") as pbx:
        client = YeastarResource(
            pbx_name="hq",
            base_url=pbx.base_url,
            client_id="id",
            client_secret="secret",
            timezone="UTC",
            timeout_s=0.3,
            max_retries=3,
            backoff_factor=0.01,
        )
        with pytest.raises(PbxApiError, match="no response within the timeout") as caught:
            client.system_information()
        time.sleep(0.2)
        assert pbx.count() == 1
    assert caught.value.transient and caught.value.endpoint == "/openapi/v1.0/get_token"


def test_reset_after_sending_get_token_makes_exactly_one_request() -> None:
    with raw_server("reset") as pbx:
        client = YeastarResource(
            pbx_name="hq",
            base_url=pbx.base_url,
            client_id="id",
            client_secret="secret",
            timezone="UTC",
            max_retries=3,
            backoff_factor=0.01,
        )
        with pytest.raises(PbxApiError, match="connection failed") as caught:
            client.system_information()
        time.sleep(0.2)
        assert pbx.count() == 1
    assert caught.value.transient


def test_refused_connection_on_get_token_is_retried(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    client = YeastarResource(
        pbx_name="hq",
        base_url=f"http://127.0.0.1:{free_port()}",
        client_id="id",
        client_secret="secret",
        timezone="UTC",
        max_retries=2,
        backoff_factor=0.01,
    )
    with pytest.raises(PbxApiError, match="connection failed") as caught:
        client.system_information()
    retries = [r for r in caplog_records(caplog) if "NewConnectionError" in r]
    assert len(retries) == 2 and caught.value.transient
    assert all("/openapi/v1.0/get_token" in line for line in retries)


def caplog_records(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


@pytest.mark.parametrize("errcode", [40001, 40002, 10001, 10002, 10003, -1])
def test_errcodes_meaning_the_request_is_wrong_are_not_transient(
    simulator, yeastar, errcode: int
) -> None:
    body = f'{{"errcode":{errcode},"errmsg":"NO"}}'.encode()
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", 200, body=body)
    with pytest.raises(PbxApiError) as caught:
        collect(yeastar.fetch_cdrs(DAY, DAY))
    assert caught.value.errcode == errcode and not caught.value.transient
    assert not isinstance(caught.value, PbxAuthError)


def test_an_internal_server_errcode_is_transient(simulator, yeastar) -> None:
    body = b'{"errcode":-2,"errmsg":"INTERNAL SERVER ERROR"}'
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", 200, body=body)
    with pytest.raises(PbxApiError) as caught:
        collect(yeastar.fetch_cdrs(DAY, DAY))
    assert caught.value.errcode == -2 and caught.value.transient


@pytest.mark.parametrize("errcode", [70004, 70087, 60002, 10005])
def test_an_auth_errcode_on_any_call_opens_the_breaker(simulator, tmp_path, errcode) -> None:
    client = yeastar_client(simulator, auth_state_dir=str(tmp_path))
    client.system_information()
    body = f'{{"errcode":{errcode},"errmsg":"NO"}}'.encode()
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", 200, body=body)
    with pytest.raises(PbxAuthError) as caught:
        collect(client.fetch_cdrs(DAY, DAY))
    assert caught.value.errcode == errcode and "suspended until" in str(caught.value)
    for later in (client, yeastar_client(simulator, auth_state_dir=str(tmp_path))):
        with pytest.raises(PbxAuthError, match="nothing was sent"):
            collect(later.fetch_cdrs(DAY, DAY))
    assert settled_count(simulator, "cdr/search") == 1
    assert settled_count(simulator, "get_token") == 1


def test_token_is_thread_safe(simulator) -> None:
    client = yeastar_client(simulator)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            client.system_information()
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert settled_count(simulator, "get_token") == 1


def test_close_revokes_the_token(simulator) -> None:
    client = yeastar_client(simulator)
    client.system_information()
    client.close()
    assert settled_count(simulator, "del_token") == 1
    client.system_information()  # usable again: a new token
    assert settled_count(simulator, "get_token") == 2
    client.close()


# --------------------------------------------------------------------------- CDR paging


def test_pages_until_total_with_a_small_page_size(make_simulator) -> None:
    sim = make_simulator(calls_per_day=53)
    client = yeastar_client(sim, page_size=10)
    fetch = client.fetch_cdrs(DAY, DAY)
    pages = list(fetch.pages())
    assert all(len(p) == 10 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 10
    assert fetch.api_total == fetch.fetched == sum(len(p) for p in pages) >= 53
    assert settled_count(sim, "cdr/search") == len(pages) >= 6
    records = [r for p in pages for r in p]
    assert uids(of_days(records, ZONE, DAY)) == uids(sim.calls("yeastar", DAY))


def test_several_days_are_one_window(make_simulator) -> None:
    sim = make_simulator(calls_per_day=20)
    client = yeastar_client(sim)
    days = [DAY + timedelta(days=d) for d in range(3)]
    records = of_days(collect(client.fetch_cdrs(days[0], days[-1])), ZONE, *days)
    expected = [r for d in days for r in sim.calls("yeastar", d)]
    assert uids(records) == uids(expected)
    assert settled_count(sim, "cdr/search") == 1


def test_empty_day(make_simulator) -> None:
    sim = make_simulator(calls_per_day=0)
    fetch = yeastar_client(sim).fetch_cdrs(DAY, DAY)
    assert collect(fetch) == []
    assert fetch.api_total == fetch.fetched == 0


def test_filters_are_passed_through(simulator, yeastar) -> None:
    records = of_days(collect(yeastar.fetch_cdrs(DAY, DAY, status="BUSY")), ZONE, DAY)
    expected = [r for r in simulator.calls("yeastar", DAY) if r["disposition"] == "BUSY"]
    assert records and uids(records) == uids(expected)


def test_a_total_that_moves_between_pages_marks_the_pass_unstable(make_simulator) -> None:
    sim = make_simulator(calls_per_day=25)
    client = yeastar_client(sim, page_size=10)
    sim.faults.fail_next(
        "/openapi/v1.0/cdr/search",
        200,
        body=b'{"errcode":0,"errmsg":"SUCCESS","total_number":12,"data":[]}',
    )
    (window,) = client.fetch_cdrs(DAY, DAY).windows
    assert list(window.fetch_pass()) == [] and window.last_pass.last_total == 12
    pages = [page.records for page in window.fetch_pass()]
    records = [r for page in pages for r in (page if isinstance(page, list) else page.dicts())]
    assert len(records) == window.last_pass.last_total and len(of_days(records, ZONE, DAY)) == 25
    assert window.last_pass.stable and window.passes == 2


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_server_errors_are_retried(simulator, yeastar, status: int) -> None:
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", status, times=2, retry_after="0")
    records = of_days(collect(yeastar.fetch_cdrs(DAY, DAY)), ZONE, DAY)
    assert len(records) == len(simulator.calls("yeastar", DAY))


def test_persistent_5xx_becomes_pbx_api_error(simulator, yeastar) -> None:
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", 502, times=10)
    with pytest.raises(PbxApiError) as caught:
        collect(yeastar.fetch_cdrs(DAY, DAY))
    assert caught.value.http_status == 502


def test_html_error_page_that_stays_is_a_clear_error(simulator, yeastar, quick_repeats) -> None:
    simulator.faults.fail_next(
        "/openapi/v1.0/cdr/search",
        200,
        times=BAD_BODY_REPEATS + 1,
        body=b"<!DOCTYPE html><html><body>Login required</body></html>",
        content_type="text/html",
    )
    with pytest.raises(PbxBodyError, match="HTML page") as caught:
        collect(yeastar.fetch_cdrs(DAY, DAY))
    message = str(caught.value)
    assert "'hq'" in message and "/openapi/v1.0/cdr/search" in message
    assert "text/html" in message and "Login required" not in message
    assert f"{BAD_BODY_REPEATS + 1} answers in a row" in message and not caught.value.transient
    assert simulator.stats.count("cdr/search") == BAD_BODY_REPEATS + 1


def test_a_body_broken_off_by_a_reset_is_asked_for_again(simulator, yeastar, quick_repeats) -> None:
    simulator.stats.reset()
    expected = collect(yeastar.fetch_cdrs(DAY, DAY))
    clean_requests = simulator.stats.count("cdr/search")
    simulator.stats.reset()
    simulator.faults.reset_next("/openapi/v1.0/cdr/search", after_bytes=200)
    assert collect(yeastar.fetch_cdrs(DAY, DAY)) == expected
    assert simulator.stats.count("cdr/search") == clean_requests + 1


def test_one_body_cut_short_is_asked_for_again(simulator, yeastar, quick_repeats) -> None:
    simulator.stats.reset()
    expected = collect(yeastar.fetch_cdrs(DAY, DAY))
    clean_requests = simulator.stats.count("cdr/search")
    simulator.stats.reset()
    simulator.faults.truncate_body_next("/openapi/v1.0/cdr/search")
    assert collect(yeastar.fetch_cdrs(DAY, DAY)) == expected
    assert simulator.stats.count("cdr/search") == clean_requests + 1


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b'{"errcode":0,"total_number":"3","data":[]}', "total_number"),
        (b'{"errcode":0,"data":[]}', "total_number"),
        (b'{"errcode":0,"total_number":3,"data":{"a":1}}', "'data' is not a list"),
        (b'{"errmsg":"SUCCESS","total_number":3,"data":[]}', "errcode"),
        (b"[1, 2]", "not an object"),
    ],
)
def test_wrong_shape_is_a_clear_error(simulator, yeastar, body: bytes, complaint: str) -> None:
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", 200, body=body)
    with pytest.raises(PbxApiError, match=complaint):
        collect(yeastar.fetch_cdrs(DAY, DAY))


def test_vendor_errcode_names_endpoint(simulator, yeastar) -> None:
    simulator.faults.fail_next(
        "/openapi/v1.0/cdr/search", 200, body=b'{"errcode":40002,"errmsg":"PARAMETER ERROR"}'
    )
    with pytest.raises(PbxApiError, match="PARAMETER ERROR") as caught:
        collect(yeastar.fetch_cdrs(DAY, DAY))
    assert caught.value.errcode == 40002 and caught.value.endpoint == "/openapi/v1.0/cdr/search"


def test_first_day_after_last_day_is_refused(yeastar) -> None:
    with pytest.raises(ValueError, match="after"):
        yeastar.fetch_cdrs(DAY, DAY - timedelta(days=1))


# --------------------------------------------------------------------------- recordings


def test_recording_bytes_match_the_pbx(simulator, yeastar) -> None:
    ref = recording_refs(simulator)[0]
    with yeastar.open_recording(ref) as stream:
        assert stream.format == "wav"
        assert stream.expected_bytes is None
        assert stream.content_length == simulator.recording_size("yeastar", ref)
        assert stream.content_type and stream.content_type.startswith("audio/")
        digest = hashlib.sha256(b"".join(stream.iter_chunks(4096))).hexdigest()
    assert digest == simulator.recording_sha256("yeastar", ref)


def test_recording_by_id(simulator, yeastar) -> None:
    listed = yeastar.list_recordings(page=1, page_size=5)
    assert listed["total_number"] >= len(listed["data"]) > 0
    item = listed["data"][0]
    with yeastar.open_recording(recording_id=item["id"]) as stream:
        body = b"".join(stream.iter_chunks())
    assert hashlib.sha256(body).hexdigest() == simulator.recording_sha256("yeastar", item["file"])


def test_expired_link_raises_link_expired(make_simulator) -> None:
    sim = make_simulator(yeastar={"link_ttl": 2})
    client = yeastar_client(sim)
    ref = recording_refs(sim)[0]
    link = client.recording_link(ref)
    time.sleep(3.1)
    with pytest.raises(RecordingLinkExpired) as caught:
        client.open_recording_link(link)
    assert caught.value.http_status == 403
    assert download(client, ref) == sim.recording_bytes("yeastar", ref)  # minted again: fine


@pytest.mark.parametrize("status", [403, 410])
def test_refused_download_raises_link_expired(simulator, yeastar, status: int) -> None:
    ref = recording_refs(simulator)[0]
    simulator.faults.fail_next("/api/download/", status, body=b"")
    with pytest.raises(RecordingLinkExpired):
        yeastar.open_recording(ref)


def test_errcode_instead_of_audio_raises_link_expired(simulator, yeastar) -> None:
    ref = recording_refs(simulator)[0]
    simulator.faults.fail_next("/api/download/", 200, body=b'{"errcode":-1,"errmsg":"FAILURE"}')
    with pytest.raises(RecordingLinkExpired, match="FAILURE") as caught:
        yeastar.open_recording(ref)
    assert caught.value.errcode == -1
    simulator.faults.fail_next(
        "/api/download/", 200, body=b"<html>oops</html>", content_type="text/html"
    )
    with pytest.raises(PbxApiError, match="instead of audio") as caught:
        yeastar.open_recording(ref)
    assert not isinstance(caught.value, RecordingLinkExpired)


def test_token_expired_on_download_reauthenticates_and_asks_to_mint_again(simulator, yeastar):
    ref = recording_refs(simulator)[0]
    link = yeastar.recording_link(ref)
    simulator.faults.expire_tokens()
    with pytest.raises(RecordingLinkExpired) as caught:
        yeastar.open_recording_link(link)
    assert caught.value.errcode == 10004
    assert settled_count(simulator, "refresh_token") == 1  # re-authenticated already
    assert download(yeastar, ref) == simulator.recording_bytes("yeastar", ref)


def test_missing_recording_raises_recording_missing(simulator, yeastar) -> None:
    ref = recording_refs(simulator)[0]
    simulator.faults.missing_recordings.add(ref)
    with pytest.raises(RecordingMissing) as caught:
        yeastar.open_recording(ref)
    assert caught.value.errcode == 60001


def test_tampered_link_raises_recording_missing(simulator, yeastar) -> None:
    ref = recording_refs(simulator)[0]
    link = yeastar.recording_link(ref)
    stem, suffix = link.path.rsplit(".", 1)
    tampered = type(link)(path=f"{stem[:-4]}0000.{suffix}", file_name=link.file_name, label=ref)
    with pytest.raises(RecordingMissing):
        yeastar.open_recording_link(tampered)


def test_truncated_download_raises_corrupt(simulator, yeastar) -> None:
    from cdr_assets.errors import RecordingCorrupt

    ref = recording_refs(simulator)[0]
    simulator.faults.truncate_next_recordings = 1
    with pytest.raises(RecordingCorrupt, match="Content-Length"):
        download(yeastar, ref)


def concurrent_downloads(client: YeastarResource, refs: list[str]) -> dict[str, bytes]:
    """Download `refs` from as many threads at once, each inside its download slot."""
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def fetch(ref: str) -> None:
        try:
            results[ref] = download(client, ref)
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    return results


@pytest.mark.parametrize("content_type", ["audio", "octet-stream"])
def test_an_mp3_behind_a_wav_name_keeps_downloads_one_at_a_time(make_simulator, content_type):
    sim = make_simulator(
        yeastar={"recording_format": "mp3", "record_file_suffix": "wav"},
        audio_content_type=content_type,
    )
    client = yeastar_client(sim, max_retries=0)
    refs = recording_refs(sim)[:4]
    assert all(ref.endswith(".wav") for ref in refs)
    results = concurrent_downloads(client, refs)
    assert sim.stats.max_concurrent_mp3 == 1
    assert all(results[ref][:3] in (b"ID3",) or results[ref][0] == 0xFF for ref in refs)
    assert client.download_format() == "mp3"
    with client.open_recording(refs[0]) as stream:
        b"".join(stream.iter_chunks())
        assert stream.format == "mp3"


def test_auto_format_goes_concurrent_once_a_download_showed_wav(make_simulator) -> None:
    sim = make_simulator(calls_per_day=400)
    sim.faults.throttle_bytes_per_s = 2_000_000  # long enough downloads to overlap
    client = yeastar_client(sim)
    refs = recording_refs(sim)[:6]
    assert client.download_format() is None
    concurrent_downloads(client, refs[:1])
    assert client.download_format() == "wav"
    sim.stats.reset()
    concurrent_downloads(client, refs[1:])
    assert sim.stats.max_in_flight > 1


def test_downloads_are_serial_until_the_format_is_known(make_simulator) -> None:
    sim = make_simulator()
    client = yeastar_client(sim)
    held = client.download_slot("a.wav")
    with held:
        waiting = threading.Thread(target=lambda: client.download_slot("b.wav").__enter__())
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive()  # format unknown: the second download waits
    waiting.join(2)
    assert not waiting.is_alive()


def test_configured_wav_downloads_take_no_slot(simulator) -> None:
    client = yeastar_client(simulator, recording_format="wav")
    with client.download_slot("a.wav"), client.download_slot("b.wav"):
        pass  # two at once: no slot involved


def test_mp3_downloads_are_serialized(make_simulator) -> None:
    sim = make_simulator(yeastar={"recording_format": "mp3"})
    client = yeastar_client(sim, max_retries=0)
    refs = recording_refs(sim)[:4]
    assert all(ref.endswith(".mp3") for ref in refs)
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def fetch(ref: str) -> None:
        try:
            results[ref] = download(client, ref)
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sim.stats.max_concurrent_mp3 == 1
    for ref in refs:
        assert hashlib.sha256(results[ref]).hexdigest() == sim.recording_sha256("yeastar", ref)
    with client.open_recording(refs[0]) as stream:
        assert stream.format == "mp3"


# --------------------------------------------------------------------------- Dagster, protocol


def test_resource_is_a_pbx_client(yeastar) -> None:
    assert isinstance(yeastar, PbxClient)
    assert yeastar.vendor == "yeastar"


def test_resource_works_inside_dagster(simulator, monkeypatch) -> None:
    monkeypatch.setenv("TEST_YEASTAR_SECRET", simulator.config.yeastar.client_secret)

    @dg.asset
    def cdr_count(yeastar: YeastarResource) -> int:
        records = [r for page in yeastar.fetch_cdrs(DAY, DAY).pages() for r in page]
        return len(of_days(records, ZONE, DAY))

    resource = yeastar_client(simulator, client_secret=dg.EnvVar("TEST_YEASTAR_SECRET"))
    result = dg.materialize([cdr_count], resources={"yeastar": resource})
    assert result.success
    assert result.output_for_node("cdr_count") == len(simulator.calls("yeastar", DAY))
    assert settled_count(simulator, "del_token") == 1  # teardown revoked the run's token


# --------------------------------------------------------------------------- secret hygiene


def test_secrets_never_reach_logs_or_errors(make_simulator, caplog, quick_repeats) -> None:
    caplog.set_level(logging.DEBUG)
    sim = make_simulator(calls_per_day=30, yeastar={"link_ttl": LINK_TTL_S})
    secret = sim.config.yeastar.client_secret
    client = yeastar_client(sim, page_size=7)
    seen_tokens: set[str] = set()
    raised: list[BaseException] = []

    def remember_tokens() -> None:
        tokens = client._runtime().tokens
        if tokens is not None:
            seen_tokens.update({tokens.access_token, tokens.refresh_token})

    collect(client.fetch_cdrs(DAY, DAY))
    remember_tokens()
    sim.faults.expire_tokens()  # 10004 -> refresh (rotates both tokens)
    collect(client.fetch_cdrs(DAY, DAY))
    remember_tokens()
    ref = recording_refs(sim)[0]
    link = client.recording_link(ref)
    minted_by = time.monotonic()  # the server minted it before this
    capability = link.path.rsplit("-", 1)[-1].split(".")[0]
    download(client, ref)
    wait_out_links_minted_before(minted_by)
    with pytest.raises(RecordingLinkExpired) as caught:
        client.open_recording_link(link)
    raised.append(caught.value)
    sim.faults.fail_next(
        "/openapi/v1.0/cdr/search", 200, times=BAD_BODY_REPEATS + 1, body=b"<html>x</html>"
    )
    with pytest.raises(PbxApiError) as caught:
        collect(client.fetch_cdrs(DAY, DAY))
    raised.append(caught.value)
    with pytest.raises(PbxAuthError) as caught:
        yeastar_client(sim, client_secret="wrong-" + secret).system_information()
    raised.append(caught.value)
    remember_tokens()
    sim.stop()  # connection failure: requests' own message holds the full URL
    with pytest.raises(PbxApiError) as caught:
        client.system_information()
    raised.append(caught.value)

    assert len(seen_tokens) >= 4
    texts = [repr(client), str(client)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    for error in raised:
        texts.append(str(error))
        texts.append("".join(traceback.format_exception(error)))
    assert any("access_token=***" in text for text in texts)  # urllib3 lines were there
    for text in texts:
        for needle in (secret, capability, *seen_tokens):
            assert needle not in text


# --------------------------------------------------------------------------- clock self-check


def test_system_clock_read_in_the_right_format_and_zone_passes() -> None:
    display = YeastarDisplayFormat("MM/DD/YYYY", 24)
    # 2026-06-15 10:04:05 in Singapore (UTC+8) is 02:04:05Z.
    stamp = int(datetime(2026, 6, 15, 2, 4, 5, tzinfo=UTC).timestamp())
    assert check_system_clock("06/15/2026 10:04:05", stamp, display, ZONE) is None
    assert check_system_clock("06/15/2026 10:05:30", stamp, display, ZONE) is None  # 85 s off


def test_a_wrong_zone_is_named_with_the_offset_the_pbx_runs_at() -> None:
    display = YeastarDisplayFormat("MM/DD/YYYY", 24)
    stamp = int(datetime(2026, 6, 15, 3, 4, 5, tzinfo=UTC).timestamp())
    problem = check_system_clock("06/15/2026 10:04:05", stamp, display, ZONE)
    assert problem is not None and "time zone is wrong" in problem
    assert "UTC+07:00" in problem and "UTC+08:00" in problem and "06/15/2026 10:04:05" in problem


def test_a_swapped_day_and_month_is_named_as_a_format_problem() -> None:
    display = YeastarDisplayFormat("MM/DD/YYYY", 24)
    stamp = int(datetime(2026, 6, 5, 2, 4, 5, tzinfo=UTC).timestamp())
    problem = check_system_clock("05/06/2026 10:04:05", stamp, display, ZONE)  # DD/MM really
    assert problem is not None and "display format is wrong" in problem
    assert "DD/MM/YYYY HH:mm:ss" in problem


def test_a_time_not_in_the_format_at_all_is_a_format_problem() -> None:
    display = YeastarDisplayFormat("MM/DD/YYYY", 12)
    stamp = int(datetime(2026, 6, 15, 2, 4, 5, tzinfo=UTC).timestamp())
    problem = check_system_clock("2026-06-15 10:04:05", stamp, display, ZONE)
    assert problem is not None and "display format is wrong" in problem
    assert "YYYY-MM-DD HH:mm:ss" in problem  # it says which format does fit


def test_the_repeated_hour_of_a_fall_back_reads_either_way() -> None:
    display = YeastarDisplayFormat("YYYY-MM-DD", 24)
    second_one_thirty = int(datetime(2026, 11, 1, 6, 30, tzinfo=UTC).timestamp())  # EST
    assert (
        check_system_clock("2026-11-01 01:30:00", second_one_thirty, display, "America/New_York")
        is None
    )


def test_a_pbx_in_another_zone_than_configured_fails_before_any_cdr_query(make_simulator) -> None:
    sim = make_simulator(yeastar={"timezone": "Asia/Bangkok"})  # UTC+7, config says UTC+8
    client = yeastar_client(sim, timezone=ZONE)
    with pytest.raises(PbxApiError, match="time zone is wrong") as caught:
        client.fetch_cdrs(DAY, DAY)
    assert caught.value.endpoint == "/openapi/v1.0/system/information"
    assert settled_count(sim, "cdr/search") == 0


def test_a_wrong_display_format_override_fails_before_any_cdr_query(make_simulator) -> None:
    sim = make_simulator(yeastar={"date_format": "DD/MM/YYYY"})
    client = yeastar_client(sim, date_format="YYYY/MM/DD", clock=24)
    with pytest.raises(PbxApiError, match="display format is wrong"):
        client.fetch_cdrs(DAY, DAY)
    assert settled_count(sim, "cdr/search") == 0


# --------------------------------------------------------------------------- windows


def test_the_window_overlaps_the_day_on_both_sides(make_simulator) -> None:
    sim = make_simulator(calls_per_day=96)  # one call every 15 minutes
    client = yeastar_client(sim, window_overlap_minutes=60)
    fetch = client.fetch_cdrs(DAY, DAY)
    (window,) = fetch.windows
    assert window.label == "06/14/2026 23:00:00 .. 06/16/2026 00:59:59"
    records = collect(fetch)
    days = {record_start(r).astimezone(ZoneInfo(ZONE)).date() for r in records}
    assert days == {DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)}
    assert all(window.start <= record_start(r) < window.end for r in records)
    assert uids(of_days(records, ZONE, DAY)) == uids(sim.calls("yeastar", DAY))


# --------------------------------------------------------------------------- links


def test_a_download_url_on_the_api_host_gets_the_token(simulator, yeastar) -> None:
    ref = recording_refs(simulator)[0]
    minted = yeastar.recording_link(ref)
    absolute = YeastarRecordingLink(
        path=simulator.base_url + minted.path, file_name=minted.file_name, label=ref
    )
    with yeastar.open_recording_link(absolute) as stream:  # the PBX serves it only with a token
        assert b"".join(stream.iter_chunks()) == simulator.recording_bytes("yeastar", ref)


def test_a_download_url_on_another_host_gets_no_token(simulator) -> None:
    with http_host("127.0.0.2") as storage:
        client = yeastar_client(simulator, recording_hosts=[storage.netloc])
        link = YeastarRecordingLink(
            path=f"{storage.base_url}/api/download/x.wav", file_name="x.wav", label="x.wav"
        )
        with client.open_recording_link(link) as stream:
            assert b"".join(stream.iter_chunks()) == WAV_BODY
        (seen,) = storage.seen
    assert "access_token" not in seen.path and "Authorization" not in seen.headers
    assert settled_count(simulator, "get_token") == 0  # no token was even needed


def test_a_minted_link_to_a_foreign_host_is_refused(simulator, yeastar) -> None:
    with http_host("127.0.0.2") as foreign:
        body = (
            '{"errcode":0,"errmsg":"SUCCESS","file":"x.wav","download_resource_url":'
            f'"{foreign.base_url}/api/download/x.wav"}}'
        ).encode()
        simulator.faults.fail_next("/openapi/v1.0/recording/download", 200, body=body)
        with pytest.raises(RecordingLinkRefused) as caught:
            yeastar.open_recording("x.wav")
        assert foreign.seen == []
    assert foreign.netloc in str(caught.value)
    assert caught.value.endpoint == "/openapi/v1.0/recording/download"


def test_search_pages_hand_over_unparsed_lines_that_normalize_like_dicts(
    make_simulator, server_style: str, caplog
) -> None:
    caplog.set_level(logging.INFO)
    sim = make_simulator(calls_per_day=25)
    client = yeastar_client(sim, page_size=10)
    fetch = client.fetch_cdrs(DAY, DAY)
    pages = list(fetch.record_pages())
    # Compact bodies are cut without parsing (errcode and total_number read from the envelope);
    # bodies that cannot be cut exactly (pretty-printed, nested arrays in records) are parsed
    # whole, said once.
    fast = server_style not in ("pretty", "extra_keys")
    assert len(pages) >= 3 and all(isinstance(page, JsonRecords) == fast for page in pages)
    notes = [r for r in caplog.records if "could not be cut without parsing" in r.getMessage()]
    assert len(notes) == (0 if fast else 1)
    assert fetch.api_total == fetch.fetched == sum(len(p) for p in pages)
    dict_pages = list(client.fetch_cdrs(DAY, DAY).pages())
    assert [r for p in pages for r in (p.dicts() if fast else p)] == [
        r for p in dict_pages for r in p
    ]
    for unparsed, parsed in zip(pages, dict_pages, strict=True):
        assert normalize(unparsed).equals(normalize(parsed))


def test_a_page_whose_lines_miscount_is_parsed_and_counted_exactly(make_simulator) -> None:
    sim = make_simulator(calls_per_day=12)
    client = yeastar_client(sim, page_size=5)
    records = next(client.fetch_cdrs(DAY, DAY).pages())
    records[1]["reason"] = 'x},{"uid":"fake"'  # a record separator inside a value
    body = orjson.dumps({"errcode": 0, "errmsg": "SUCCESS", "total_number": 12, "data": records})
    sim.faults.fail_next("/openapi/v1.0/cdr/search", 200, body=body)
    (window,) = client.fetch_cdrs(DAY, DAY).windows
    page = next(window.fetch_pass())
    assert page.records == records and window.last_pass.records == 5


def test_an_errcode_on_a_search_page_is_still_an_error(
    simulator, yeastar, server_style: str, caplog
) -> None:
    caplog.set_level(logging.INFO)
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", 200, body=ERRCODE_BODY_10004)
    records = collect(yeastar.fetch_cdrs(DAY, DAY))  # re-authenticated once, then paged
    assert uids(of_days(records, ZONE, DAY)) == uids(simulator.calls("yeastar", DAY))
    assert settled_count(simulator, "refresh_token") == 1
    assert settled_count(simulator, "cdr/search") >= 2
    if server_style not in ("pretty", "extra_keys"):  # the errcode body is no slow page
        assert not [r for r in caplog.records if "could not be cut" in r.getMessage()]
