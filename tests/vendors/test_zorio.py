"""ZorioResource against the simulated Zorio API over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import http.server
import logging
import re
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import date, timedelta
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest

from cdr_assets.errors import (
    CdrCountMismatch,
    PbxApiError,
    PbxAuthError,
    RecordingLinkExpired,
    RecordingMissing,
)
from cdr_assets.records import JsonRecords
from cdr_assets.vendors import PbxClient, ZorioResource
from cdr_assets.vendors.zorio import split_date_span, zorio_date_span
from tests.vendors.simclients import DAY, collect, settled_count, zorio_client


def uuids(records: list[dict]) -> list[str]:
    return sorted(r["uuid"] for r in records)


def local_days(sim, first: date, last: date) -> list[dict]:
    days = (last - first).days + 1
    return [r for d in range(days) for r in sim.calls("zorio", first + timedelta(days=d))]


def recorded_uuids(sim, day: date = DAY) -> list[str]:
    return [r["uuid"] for r in sim.calls("zorio", day) if r["recording_available"]]


# --------------------------------------------------------------------------- windows


def test_unknown_query_zone_widens_each_side_by_a_day() -> None:
    span = zorio_date_span(DAY, DAY, timezone="Asia/Ho_Chi_Minh", query_timezone=None)
    assert span == (DAY - timedelta(days=1), DAY + timedelta(days=1))


@pytest.mark.parametrize(
    ("query_timezone", "expected"),
    [
        ("UTC", (date(2026, 6, 14), date(2026, 6, 15))),  # local day = 14th 17:00 .. 15th 17:00
        ("Asia/Ho_Chi_Minh", (date(2026, 6, 15), date(2026, 6, 15))),
        ("Pacific/Kiritimati", (date(2026, 6, 15), date(2026, 6, 16))),  # UTC+14
    ],
)
def test_known_query_zone_gives_exactly_the_overlapping_dates(query_timezone, expected) -> None:
    span = zorio_date_span(DAY, DAY, timezone="Asia/Ho_Chi_Minh", query_timezone=query_timezone)
    assert span == expected


def test_span_is_split_into_windows_below_the_cap() -> None:
    windows = split_date_span(date(2026, 1, 1), date(2026, 2, 16), 30)
    assert windows == [
        (date(2026, 1, 1), date(2026, 1, 30)),
        (date(2026, 1, 31), date(2026, 2, 16)),
    ]
    assert all((to - frm).days <= 29 for frm, to in windows)


def test_45_day_range_is_split_and_accepted(make_simulator) -> None:
    sim = make_simulator(calls_per_day=12)
    client = zorio_client(sim)
    last = DAY + timedelta(days=44)
    fetch = client.fetch_cdrs(DAY, last)
    records = collect(fetch)
    assert len(fetch.window_labels) == 2
    assert all(status == 200 for _, _, status in sim.stats.requests)
    assert len(records) == len(set(uuids(records)))  # windows do not overlap
    assert set(uuids(local_days(sim, DAY, last))) <= set(uuids(records))
    assert fetch.api_total == fetch.fetched == len(records)


def test_known_query_zone_fetches_the_local_day(make_simulator) -> None:
    sim = make_simulator(calls_per_day=30)
    client = zorio_client(sim, query_timezone=sim.config.zorio.date_timezone)
    records = collect(client.fetch_cdrs(DAY, DAY))
    assert set(uuids(sim.calls("zorio", DAY))) <= set(uuids(records))
    assert len(records) < 3 * 30  # narrower than the unknown-zone widening


def test_window_beyond_the_account_cap_is_a_422_with_the_servers_words(make_simulator):
    sim = make_simulator(calls_per_day=5)
    client = zorio_client(sim, max_window_days=60)
    with pytest.raises(PbxApiError, match="may not exceed 30 days") as caught:
        collect(client.fetch_cdrs(DAY, DAY + timedelta(days=44)))
    assert caught.value.http_status == 422
    assert caught.value.endpoint == "/api/pbx/cdr"


# --------------------------------------------------------------------------- paging


def test_pages_until_last_page_with_count_check(make_simulator) -> None:
    sim = make_simulator(calls_per_day=20)
    client = zorio_client(sim, per_page=7, query_timezone="UTC")
    fetch = client.fetch_cdrs(DAY, DAY)
    pages = list(fetch.pages())
    assert fetch.api_total == fetch.fetched == sum(len(p) for p in pages) > 30
    assert all(len(p) == 7 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 7
    assert settled_count(sim, "/api/pbx/cdr") == len(pages) == -(-fetch.api_total // 7)


def test_count_mismatch_restarts_once_then_raises(make_simulator) -> None:
    sim = make_simulator(calls_per_day=10)
    sim.faults.total_offset = 1
    client = zorio_client(sim, per_page=50)
    with pytest.raises(CdrCountMismatch, match=r"fetched (\d+) of total (\d+)") as caught:
        collect(client.fetch_cdrs(DAY, DAY))
    fetched, total = re.search(r"fetched (\d+) of total (\d+)", str(caught.value)).groups()
    assert int(total) == int(fetched) + 1
    assert settled_count(sim, "/api/pbx/cdr") == 2


def test_empty_day(make_simulator) -> None:
    sim = make_simulator(calls_per_day=0)
    fetch = zorio_client(sim).fetch_cdrs(DAY, DAY)
    assert collect(fetch) == [] and fetch.api_total == fetch.fetched == 0


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_server_errors_are_retried(simulator, zorio, status: int) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", status, times=2, retry_after="0")
    fetch = zorio.fetch_cdrs(DAY, DAY)
    assert len(collect(fetch)) == fetch.api_total


def test_wrong_token_is_an_auth_error(simulator) -> None:
    client = zorio_client(simulator, api_token="not-the-token")
    with pytest.raises(PbxAuthError) as caught:
        collect(client.fetch_cdrs(DAY, DAY))
    assert caught.value.http_status == 401
    assert settled_count(simulator, "/api/pbx/cdr") == 1


def test_html_error_page_is_a_clear_error(simulator, zorio) -> None:
    simulator.faults.fail_next(
        "/api/pbx/cdr", 200, body=b"<html><body>Maintenance</body></html>", content_type="text/html"
    )
    with pytest.raises(PbxApiError, match="HTML page") as caught:
        collect(zorio.fetch_cdrs(DAY, DAY))
    assert "'saigon'" in str(caught.value) and "Maintenance" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b'{"current_page":1,"data":{},"last_page":1,"per_page":200,"total":0}', "'data'"),
        (b'{"current_page":1,"data":[],"last_page":"1","per_page":200,"total":0}', "last_page"),
        (b'{"current_page":1,"data":[],"last_page":1,"per_page":200}', "total"),
        (b'{"current_page":2,"data":[],"last_page":2,"per_page":200,"total":0}', "current_page"),
        (b'{"data":[]}', "current_page"),
    ],
)
def test_wrong_envelope_is_a_clear_error(simulator, zorio, body: bytes, complaint: str) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", 200, body=body)
    with pytest.raises(PbxApiError, match=complaint):
        collect(zorio.fetch_cdrs(DAY, DAY))


# --------------------------------------------------------------------------- filters


def test_filters_match_the_unfiltered_result(simulator, zorio) -> None:
    everything = collect(zorio.fetch_cdrs(DAY, DAY))
    extension = next(r["extension_number"] for r in everything if r["extension_number"])
    phone = everything[0]["caller_number"]
    cases = [
        ({"direction": "inbound"}, lambda r: r["direction"] == "inbound"),
        (
            {"extension": extension},
            lambda r: extension in (r["extension_number"], r["agent_extension"]),
        ),
        ({"phone": phone}, lambda r: phone in (r["caller_number"], r["destination_number"])),
    ]
    for kwargs, wanted in cases:
        filtered = collect(zorio.fetch_cdrs(DAY, DAY, **kwargs))
        assert filtered and uuids(filtered) == uuids([r for r in everything if wanted(r)])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"extension": "12"}, "extension"),
        ({"extension": "1" * 21}, "extension"),
        ({"phone": "9" * 51}, "phone"),
    ],
)
def test_bad_filters_are_refused_before_any_request(simulator, zorio, kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        zorio.fetch_cdrs(DAY, DAY, **kwargs)
    assert simulator.stats.requests == []


# --------------------------------------------------------------------------- recordings


def test_recording_bytes_match_the_pbx(simulator, zorio) -> None:
    uuid = recorded_uuids(simulator)[0]
    with zorio.open_recording(uuid) as stream:
        assert stream.extension == "wav"
        assert stream.expected_bytes == stream.content_length
        assert stream.expected_bytes == simulator.recording_size("zorio", uuid)
        digest = hashlib.sha256(b"".join(stream.iter_chunks(8192))).hexdigest()
    assert digest == simulator.recording_sha256("zorio", uuid)


def test_expired_link_raises_link_expired(make_simulator) -> None:
    sim = make_simulator(zorio={"link_ttl": 1})
    client = zorio_client(sim)
    uuid = recorded_uuids(sim)[0]
    url = client.get_cdr(uuid)["recording"]["url"]
    time.sleep(2.1)
    with pytest.raises(RecordingLinkExpired) as caught:
        client.open_recording_url(url, recording_ref=uuid)
    assert caught.value.http_status == 403
    with client.open_recording(uuid) as stream:  # a freshly minted link works
        assert b"".join(stream.iter_chunks()) == sim.recording_bytes("zorio", uuid)


def test_tampered_signature_raises_link_expired(simulator, zorio) -> None:
    uuid = recorded_uuids(simulator)[0]
    url = zorio.get_cdr(uuid)["recording"]["url"]
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    tampered = url.replace(signature, "0" * len(signature))
    with pytest.raises(RecordingLinkExpired) as caught:
        zorio.open_recording_url(tampered)
    assert signature not in str(caught.value)


def test_missing_recording_raises_recording_missing(simulator, zorio) -> None:
    missing, withheld = recorded_uuids(simulator)[:2]
    simulator.faults.missing_recordings.add(missing)
    simulator.faults.withheld_recordings.add(withheld)
    unrecorded = next(
        r["uuid"] for r in simulator.calls("zorio", DAY) if not r["recording_available"]
    )
    for uuid in (missing, withheld, unrecorded, "00000000-0000-4000-8000-000000000000"):
        with pytest.raises(RecordingMissing):
            zorio.open_recording(uuid)


def test_redirect_endpoint_gives_a_working_link(simulator, zorio) -> None:
    uuid = recorded_uuids(simulator)[0]
    url = zorio.recording_redirect_url(uuid)
    assert settled_count(simulator, "/api/pbx/cdr/{uuid}/recording") == 1
    assert settled_count(simulator, "/api/public/recordings/{id}/audio") == 0  # not followed
    with zorio.open_recording_url(url) as stream:
        body = b"".join(stream.iter_chunks())
    assert hashlib.sha256(body).hexdigest() == simulator.recording_sha256("zorio", uuid)
    simulator.faults.missing_recordings.add(uuid)
    with pytest.raises(RecordingMissing):
        zorio.recording_redirect_url(uuid)


class _HeaderRecordingHandler(http.server.BaseHTTPRequestHandler):
    seen_headers: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen_headers.append(dict(self.headers))
        body = b"RIFF" + b"\0" * 40
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def foreign_recording_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeaderRecordingHandler)
    _HeaderRecordingHandler.seen_headers = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bearer_token_is_not_sent_to_the_recording_host(zorio, foreign_recording_host) -> None:
    url = f"{foreign_recording_host}/recordings/1/audio?expires=1&signature=abc"
    with zorio.open_recording_url(url) as stream:
        assert b"".join(stream.iter_chunks()).startswith(b"RIFF")
    (headers,) = _HeaderRecordingHandler.seen_headers
    assert "Authorization" not in headers
    assert headers["User-Agent"] == "cdr_assets"


def test_download_slot_is_a_no_op(zorio) -> None:
    with zorio.download_slot("a"), zorio.download_slot("b"):
        pass


# --------------------------------------------------------------------------- Dagster, protocol


def test_resource_is_a_pbx_client(zorio) -> None:
    assert isinstance(zorio, PbxClient) and zorio.vendor == "zorio"


def test_resource_works_inside_dagster(simulator, monkeypatch) -> None:
    monkeypatch.setenv("TEST_ZORIO_TOKEN", simulator.config.zorio.api_token)

    @dg.asset
    def cdr_count(zorio: ZorioResource) -> int:
        fetch = zorio.fetch_cdrs(DAY, DAY)
        return sum(len(page) for page in fetch.pages())

    resource = zorio_client(simulator, api_token=dg.EnvVar("TEST_ZORIO_TOKEN"))
    result = dg.materialize([cdr_count], resources={"zorio": resource})
    assert result.success
    assert result.output_for_node("cdr_count") >= len(simulator.calls("zorio", DAY))


# --------------------------------------------------------------------------- secret hygiene


def test_secrets_never_reach_logs_or_errors(make_simulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sim = make_simulator(calls_per_day=20, zorio={"link_ttl": 1})
    token = sim.config.zorio.api_token
    client = zorio_client(sim, per_page=9)
    raised: list[BaseException] = []
    signatures: set[str] = set()

    collect(client.fetch_cdrs(DAY, DAY))
    uuid = recorded_uuids(sim)[0]
    with client.open_recording(uuid) as stream:
        b"".join(stream.iter_chunks())
    url = client.get_cdr(uuid)["recording"]["url"]
    signatures.add(parse_qs(urlsplit(url).query)["signature"][0])
    redirect = client.recording_redirect_url(uuid)
    signatures.add(parse_qs(urlsplit(redirect).query)["signature"][0])
    time.sleep(1.1)
    for action in (
        lambda: client.open_recording_url(url),
        lambda: zorio_client(sim, api_token="wrong-" + token).get_cdr(uuid),
        lambda: collect(zorio_client(sim, max_window_days=90).fetch_cdrs(DAY, DAY + timedelta(60))),
    ):
        with pytest.raises(PbxApiError) as caught:
            action()
        raised.append(caught.value)
    sim.stop()
    with pytest.raises(PbxApiError) as caught:
        client.open_recording_url(redirect)
    raised.append(caught.value)

    texts = [repr(client), str(client)]
    texts += [record.getMessage() for record in caplog.records]
    for error in raised:
        texts.append(str(error))
        texts.append("".join(traceback.format_exception(error)))
    assert any("signature=***" in text for text in texts)  # urllib3 lines were there
    for text in texts:
        for needle in (token, *signatures):
            assert needle not in text


def test_record_pages_hand_over_unparsed_lines_counted_against_the_envelope(
    make_simulator,
) -> None:
    sim = make_simulator(calls_per_day=20)
    client = zorio_client(sim, per_page=7, query_timezone="UTC")
    fetch = client.fetch_cdrs(DAY, DAY)
    pages = list(fetch.record_pages())
    assert pages and all(isinstance(page, JsonRecords) for page in pages)
    records = [record for page in pages for record in page.dicts()]
    assert fetch.api_total == fetch.fetched == len(records) == sum(len(p) for p in pages)
    assert records == collect(client.fetch_cdrs(DAY, DAY))
