"""YeastarResource against the simulated P-Series PBX over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from datetime import datetime, timedelta

import dagster as dg
import pytest

from cdr_assets.errors import (
    CdrCountMismatch,
    PbxApiError,
    PbxAuthError,
    RecordingLinkExpired,
    RecordingMissing,
)
from cdr_assets.simulator.config import YEASTAR_DATE_FORMATS
from cdr_assets.vendors import PbxClient, YeastarResource
from cdr_assets.vendors.yeastar import (
    YeastarDisplayFormat,
    clock_from_system_information,
    date_pattern_for,
)
from tests.vendors.simclients import DAY, collect, settled_count, yeastar_client

ERRCODE_BODY_10004 = b'{"errcode":10004,"errmsg":"TOKEN EXPIRED"}'


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
    assert uids(records) == uids(sim.calls("yeastar", DAY))
    assert fetch.api_total == fetch.fetched == 40
    assert settled_count(sim, "system/information") == 1


def test_config_override_skips_system_information(make_simulator) -> None:
    sim = make_simulator(calls_per_day=30, yeastar={"date_format": "DD-MM-YYYY", "clock": 12})
    client = yeastar_client(sim, date_format="DD-MM-YYYY", clock=12)
    assert len(collect(client.fetch_cdrs(DAY, DAY))) == 30
    assert settled_count(sim, "system/information") == 0


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
    assert uids(records) == uids(simulator.calls("yeastar", DAY))
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
    assert caught.value.errcode == 10004
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


def test_get_token_5xx_is_retried_not_treated_as_auth_failure(simulator, yeastar) -> None:
    simulator.faults.fail_next("/openapi/v1.0/get_token", 503, times=2)
    yeastar.system_information()
    assert settled_count(simulator, "get_token") == 3


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
    assert [len(p) for p in pages] == [10, 10, 10, 10, 10, 3]
    assert fetch.api_total == fetch.fetched == 53
    assert settled_count(sim, "cdr/search") == 6
    assert uids([r for p in pages for r in p]) == uids(sim.calls("yeastar", DAY))


def test_several_days_are_one_window(make_simulator) -> None:
    sim = make_simulator(calls_per_day=20)
    client = yeastar_client(sim)
    records = collect(client.fetch_cdrs(DAY, DAY + timedelta(days=2)))
    expected = [r for d in range(3) for r in sim.calls("yeastar", DAY + timedelta(days=d))]
    assert uids(records) == uids(expected)
    assert settled_count(sim, "cdr/search") == 1


def test_empty_day(make_simulator) -> None:
    sim = make_simulator(calls_per_day=0)
    fetch = yeastar_client(sim).fetch_cdrs(DAY, DAY)
    assert collect(fetch) == []
    assert fetch.api_total == fetch.fetched == 0


def test_filters_are_passed_through(simulator, yeastar) -> None:
    records = collect(yeastar.fetch_cdrs(DAY, DAY, status="BUSY"))
    expected = [r for r in simulator.calls("yeastar", DAY) if r["disposition"] == "BUSY"]
    assert records and uids(records) == uids(expected)


def test_count_mismatch_restarts_once_then_raises(make_simulator) -> None:
    sim = make_simulator(calls_per_day=25)
    sim.faults.total_offset = 1
    client = yeastar_client(sim, page_size=10)
    fetch = client.fetch_cdrs(DAY, DAY)
    with pytest.raises(CdrCountMismatch, match="fetched 25 of total_number 26"):
        collect(fetch)
    assert settled_count(sim, "cdr/search") == 2 * 4  # 3 full pages + an empty one, twice


def test_mismatch_that_heals_on_restart_is_accepted(make_simulator) -> None:
    sim = make_simulator(calls_per_day=25)
    client = yeastar_client(sim, page_size=10)
    sim.faults.fail_next(
        "/openapi/v1.0/cdr/search",
        200,
        body=b'{"errcode":0,"errmsg":"SUCCESS","total_number":12,"data":[]}',
    )
    fetch = client.fetch_cdrs(DAY, DAY)
    assert len(collect(fetch)) == 25
    assert fetch.restarts == 1 and fetch.fetched == fetch.api_total == 25


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_server_errors_are_retried(simulator, yeastar, status: int) -> None:
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", status, times=2, retry_after="0")
    assert len(collect(yeastar.fetch_cdrs(DAY, DAY))) == len(simulator.calls("yeastar", DAY))


def test_persistent_5xx_becomes_pbx_api_error(simulator, yeastar) -> None:
    simulator.faults.fail_next("/openapi/v1.0/cdr/search", 502, times=10)
    with pytest.raises(PbxApiError) as caught:
        collect(yeastar.fetch_cdrs(DAY, DAY))
    assert caught.value.http_status == 502


def test_html_error_page_is_a_clear_error(simulator, yeastar) -> None:
    simulator.faults.fail_next(
        "/openapi/v1.0/cdr/search",
        200,
        body=b"<!DOCTYPE html><html><body>Login required</body></html>",
        content_type="text/html",
    )
    with pytest.raises(PbxApiError, match="HTML page") as caught:
        collect(yeastar.fetch_cdrs(DAY, DAY))
    message = str(caught.value)
    assert "'hq'" in message and "/openapi/v1.0/cdr/search" in message
    assert "text/html" in message and "Login required" not in message


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
        assert stream.extension == "wav"
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
    sim = make_simulator(yeastar={"link_ttl": 1})
    client = yeastar_client(sim)
    ref = recording_refs(sim)[0]
    link = client.recording_link(ref)
    time.sleep(2.1)
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
        assert stream.extension == "mp3"


def test_wav_downloads_take_no_slot(simulator, yeastar) -> None:
    first = yeastar.download_slot("a.wav")
    second = yeastar.download_slot("b.wav")
    with first, second:
        pass  # two at once: no semaphore involved


# --------------------------------------------------------------------------- Dagster, protocol


def test_resource_is_a_pbx_client(yeastar) -> None:
    assert isinstance(yeastar, PbxClient)
    assert yeastar.vendor == "yeastar"


def test_resource_works_inside_dagster(simulator, monkeypatch) -> None:
    monkeypatch.setenv("TEST_YEASTAR_SECRET", simulator.config.yeastar.client_secret)

    @dg.asset
    def cdr_count(yeastar: YeastarResource) -> int:
        return sum(len(page) for page in yeastar.fetch_cdrs(DAY, DAY).pages())

    resource = yeastar_client(simulator, client_secret=dg.EnvVar("TEST_YEASTAR_SECRET"))
    result = dg.materialize([cdr_count], resources={"yeastar": resource})
    assert result.success
    assert result.output_for_node("cdr_count") == len(simulator.calls("yeastar", DAY))
    assert settled_count(simulator, "del_token") == 1  # teardown revoked the run's token


# --------------------------------------------------------------------------- secret hygiene


def test_secrets_never_reach_logs_or_errors(make_simulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sim = make_simulator(calls_per_day=30, yeastar={"link_ttl": 1})
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
    capability = link.path.rsplit("-", 1)[-1].split(".")[0]
    download(client, ref)
    time.sleep(1.1)
    with pytest.raises(RecordingLinkExpired) as caught:
        client.open_recording_link(link)
    raised.append(caught.value)
    sim.faults.fail_next("/openapi/v1.0/cdr/search", 200, body=b"<html>x</html>")
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
