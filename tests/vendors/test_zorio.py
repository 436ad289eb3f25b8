"""ZorioResource against the simulated Zorio API over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import orjson
import pytest

from cdr_assets.errors import (
    PbxApiError,
    PbxAuthError,
    PbxBodyError,
    RecordingLinkExpired,
    RecordingLinkRefused,
    RecordingMissing,
)
from cdr_assets.records import JsonRecords
from cdr_assets.vendors import PbxClient, ZorioResource
from cdr_assets.vendors.resource import BAD_BODY_REPEATS
from cdr_assets.vendors.zorio import split_date_span, zorio_date_span
from tests.vendors.loopback import WAV_BODY, HttpHost, Seen, http_host
from tests.vendors.simclients import (
    DAY,
    LINK_TTL_S,
    collect,
    settled_count,
    wait_out_links_minted_before,
    zorio_client,
)


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


def test_the_repeated_hour_at_the_end_of_a_fall_back_day_is_queried() -> None:
    # Santiago falls back at midnight ending 2026-04-04: 23:00-24:00 happens twice, and the
    # second 23:59:59 is already 2026-04-05 in a UTC-3 server zone.
    day = date(2026, 4, 4)
    span = zorio_date_span(day, day, timezone="America/Santiago", query_timezone="Etc/GMT+3")
    assert span == (day, date(2026, 4, 5))


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
    # 28 local days and a margin date on each side fill the 30-date cap; then the other 17.
    assert client.query_windows(DAY, last) == [
        (DAY - timedelta(days=1), DAY + timedelta(days=28)),
        (DAY + timedelta(days=27), last + timedelta(days=1)),
    ]
    assert [w.days for w in fetch.windows] == [
        (DAY, DAY + timedelta(days=27)),
        (DAY + timedelta(days=28), last),
    ]
    assert all(status == 200 for _, _, status in sim.stats.requests)
    assert set(uuids(local_days(sim, DAY, last))) <= set(uuids(records))
    assert fetch.api_total == fetch.fetched == len(records)


def test_a_known_zone_fills_the_cap_with_local_days() -> None:
    client = ZorioResource(
        pbx_name="p",
        base_url="http://x",
        api_token="t",
        timezone="Asia/Ho_Chi_Minh",
        query_timezone="Asia/Ho_Chi_Minh",
    )
    last = DAY + timedelta(days=44)
    assert client.query_windows(DAY, last) == [
        (DAY, DAY + timedelta(days=29)),
        (DAY + timedelta(days=30), last),
    ]


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


def test_a_pass_reports_the_totals_its_pages_announced(make_simulator) -> None:
    sim = make_simulator(calls_per_day=10, zorio={"date_timezone": "Asia/Ho_Chi_Minh"})
    # One page at a time: the total is moved between pages 1 and 2 (with more in flight, the
    # next pages are requested while page 1 is being consumed).
    client = zorio_client(
        sim, per_page=4, query_timezone="Asia/Ho_Chi_Minh", max_inflight_requests=1
    )
    (window,) = client.fetch_cdrs(DAY, DAY).windows
    first = list(window.fetch_pass())
    assert window.last_pass.stable and window.last_pass.last_total == 10
    assert [page.number for page in first] == [1, 2, 3]
    sim.faults.total_offset = 1  # the total moves while the next pass is paged
    pages = window.fetch_pass()
    next(pages)
    sim.faults.total_offset = 0
    list(pages)
    assert window.passes == 2 and not window.last_pass.stable
    assert window.last_pass.first_total == 11 and window.last_pass.last_total == 10


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
    assert caught.value.http_status == 401 and not caught.value.transient
    assert "twice" in str(caught.value) and "api_token" in str(caught.value)
    assert settled_count(simulator, "/api/pbx/cdr") == 2  # sent once more on a fresh connection


def breaker_files(state_dir: Path) -> list[Path]:
    return sorted((state_dir / "auth_breaker").glob("*.json"))


def test_one_401_is_sent_again_and_heals(simulator, tmp_path) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", 401)
    client = zorio_client(simulator, auth_state_dir=str(tmp_path), query_timezone="UTC")
    fetch = client.fetch_cdrs(DAY, DAY)
    records = collect(fetch)
    assert len(records) == fetch.api_total > 0
    pages = -(-fetch.api_total // client.per_page)
    assert settled_count(simulator, "/api/pbx/cdr") == pages + 1  # the first page asked twice
    assert breaker_files(tmp_path) == []


def test_two_401s_open_the_breaker_for_every_later_resource(simulator, tmp_path) -> None:
    token = "not-the-token"
    first = zorio_client(simulator, api_token=token, auth_state_dir=str(tmp_path))
    with pytest.raises(PbxAuthError, match="twice"):
        first.get_cdr(recorded_uuids(simulator)[0])
    later = zorio_client(simulator, api_token=token, auth_state_dir=str(tmp_path))
    for action in (
        lambda: collect(later.fetch_cdrs(DAY, DAY)),
        lambda: later.open_recording(recorded_uuids(simulator)[0]),
    ):
        with pytest.raises(PbxAuthError, match="suspended") as caught:
            action()
        message = str(caught.value)
        assert "'saigon'" in message and "HTTP 401" in message and "api_token" in message
        assert "python -m cdr_assets.auth_breaker reset --pbx saigon" in message
    assert settled_count(simulator, "/api/pbx/cdr/{uuid}") == 2
    assert settled_count(simulator, "/api/pbx/cdr") == 0
    (state_file,) = breaker_files(tmp_path)
    assert token.encode() not in state_file.read_bytes()
    # The right token is a changed credential: tried at once, and it closes the breaker.
    fixed = zorio_client(simulator, auth_state_dir=str(tmp_path), query_timezone="UTC")
    assert collect(fixed.fetch_cdrs(DAY, DAY))
    assert breaker_files(tmp_path) == []


def test_a_401_is_sent_again_on_a_fresh_connection() -> None:
    answers = iter([401, 200])

    def zorio(seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        body = {"data": {"uuid": "u1"}} if seen.path.startswith("/api/pbx/cdr/u1") else {}
        return next(answers), [("Content-Type", "application/json")], orjson.dumps(body)

    with http_host(responder=zorio) as pbx:
        client = ZorioResource(
            pbx_name="fake", base_url=pbx.base_url, api_token="tok", timezone="UTC"
        )
        assert client.get_cdr("u1") == {"uuid": "u1"}
        first, second = pbx.seen
    assert first.client_port != second.client_port
    assert second.headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize(("status", "transient"), [(503, True), (429, True), (404, False)])
def test_errors_say_whether_a_retry_can_help(simulator, zorio, status, transient) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", status, times=10, retry_after="0")
    with pytest.raises(PbxApiError) as caught:
        collect(zorio.fetch_cdrs(DAY, DAY))
    assert caught.value.http_status == status and caught.value.transient is transient


def test_a_422_is_not_transient(make_simulator) -> None:
    sim = make_simulator(calls_per_day=5)
    client = zorio_client(sim, max_window_days=60)
    with pytest.raises(PbxApiError) as caught:
        collect(client.fetch_cdrs(DAY, DAY + timedelta(days=44)))
    assert caught.value.http_status == 422 and not caught.value.transient


def test_html_error_page_that_stays_is_a_clear_error(simulator, zorio, quick_repeats) -> None:
    simulator.faults.fail_next(
        "/api/pbx/cdr",
        200,
        times=BAD_BODY_REPEATS + 1,
        body=b"<html><body>Maintenance</body></html>",
        content_type="text/html",
    )
    with pytest.raises(PbxBodyError, match="HTML page") as caught:
        collect(zorio.fetch_cdrs(DAY, DAY))
    assert "'saigon'" in str(caught.value) and "Maintenance" not in str(caught.value)
    assert not caught.value.transient
    assert simulator.stats.count("/api/pbx/cdr") == BAD_BODY_REPEATS + 1


def test_a_body_broken_off_by_a_reset_is_asked_for_again(simulator, zorio, quick_repeats) -> None:
    simulator.stats.reset()
    expected = collect(zorio.fetch_cdrs(DAY, DAY))
    clean_requests = simulator.stats.count("/api/pbx/cdr")
    simulator.stats.reset()
    simulator.faults.reset_next("/api/pbx/cdr", after_bytes=200)
    assert collect(zorio.fetch_cdrs(DAY, DAY)) == expected
    assert simulator.stats.count("/api/pbx/cdr") == clean_requests + 1


def test_one_body_cut_short_is_asked_for_again(simulator, zorio, quick_repeats) -> None:
    simulator.stats.reset()
    expected = collect(zorio.fetch_cdrs(DAY, DAY))
    clean_requests = simulator.stats.count("/api/pbx/cdr")
    simulator.stats.reset()
    simulator.faults.truncate_body_next("/api/pbx/cdr")
    assert collect(zorio.fetch_cdrs(DAY, DAY)) == expected
    assert simulator.stats.count("/api/pbx/cdr") == clean_requests + 1


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
        assert stream.format == "wav"
        assert stream.expected_bytes == stream.content_length
        assert stream.expected_bytes == simulator.recording_size("zorio", uuid)
        digest = hashlib.sha256(b"".join(stream.iter_chunks(8192))).hexdigest()
    assert digest == simulator.recording_sha256("zorio", uuid)


def test_recorded_at_is_the_detail_s_recording_start_in_utc(
    simulator, zorio, make_simulator
) -> None:
    uuid = recorded_uuids(simulator)[0]
    stated = zorio.get_cdr(uuid)["recording"]["recorded_at"]
    with zorio.open_recording(uuid) as stream:
        assert stream.recorded_at == datetime.fromisoformat(stated)
        assert stream.recorded_at.utcoffset() == timedelta(0)
    bare = make_simulator(zorio={"detail_recording": "absent"})  # the link comes from the 302
    with zorio_client(bare).open_recording(recorded_uuids(bare)[0]) as stream:
        assert stream.recorded_at is None  # nothing stated, nothing invented


def test_expired_link_raises_link_expired(make_simulator) -> None:
    sim = make_simulator(zorio={"link_ttl": LINK_TTL_S})
    client = zorio_client(sim)
    uuid = recorded_uuids(sim)[0]
    url = client.get_cdr(uuid)["recording"]["url"]
    wait_out_links_minted_before(time.monotonic())
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


@pytest.fixture
def foreign_host() -> Iterator[HttpHost]:
    """A recording host that is not the PBX: another address than the simulator's."""
    with http_host("127.0.0.2") as host:
        yield host


def signed(host: HttpHost, path: str = "/recordings/1/audio") -> str:
    return f"{host.base_url}{path}?expires=1&signature=SIGNATURE"


def test_a_link_to_a_foreign_host_is_refused_before_any_request(zorio, foreign_host) -> None:
    with pytest.raises(RecordingLinkRefused) as caught:
        zorio.open_recording_url(signed(foreign_host))
    message = str(caught.value)
    assert foreign_host.netloc in message and "recording_hosts" in message
    assert "SIGNATURE" not in message and not caught.value.transient
    assert foreign_host.seen == []


def test_a_listed_recording_host_is_followed_without_the_bearer_token(
    simulator, foreign_host
) -> None:
    client = zorio_client(simulator, recording_hosts=[foreign_host.netloc])
    with client.open_recording_url(signed(foreign_host)) as stream:
        assert b"".join(stream.iter_chunks()) == WAV_BODY
    (seen,) = foreign_host.seen
    assert "Authorization" not in seen.headers
    assert seen.headers["User-Agent"] == "cdr_assets"


def test_a_listed_host_without_port_allows_any_port(simulator, foreign_host) -> None:
    client = zorio_client(simulator, recording_hosts=["127.0.0.2"])
    with client.open_recording_url(signed(foreign_host)) as stream:
        assert b"".join(stream.iter_chunks()) == WAV_BODY


def test_recording_url_of_the_cdr_detail_is_checked(simulator, zorio, foreign_host) -> None:
    uuid = recorded_uuids(simulator)[0]
    detail = {
        "data": {
            "uuid": uuid,
            "recording_available": True,
            "recording": {"url": signed(foreign_host), "file_size": len(WAV_BODY)},
        }
    }
    simulator.faults.fail_next(f"/api/pbx/cdr/{uuid}", 200, body=orjson.dumps(detail))
    with pytest.raises(RecordingLinkRefused):
        zorio.open_recording(uuid)
    assert foreign_host.seen == []


def test_a_redirect_to_a_foreign_host_is_refused(simulator, foreign_host) -> None:
    def redirect(_seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        return 302, [("Location", signed(foreign_host, "/elsewhere.wav"))], b""

    with http_host("127.0.0.3", responder=redirect) as storage:
        client = zorio_client(simulator, recording_hosts=[storage.netloc])
        with pytest.raises(RecordingLinkRefused) as caught:
            client.open_recording_url(signed(storage))
        assert len(storage.seen) == 1
    assert foreign_host.seen == [] and foreign_host.netloc in str(caught.value)


def test_redirects_between_allowed_hosts_are_followed(simulator, foreign_host) -> None:
    def redirect(_seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        return 307, [("Location", signed(foreign_host))], b""

    with http_host("127.0.0.3", responder=redirect) as storage:
        hosts = [storage.netloc, foreign_host.netloc]
        with zorio_client(simulator, recording_hosts=hosts).open_recording_url(
            signed(storage)
        ) as stream:
            assert b"".join(stream.iter_chunks()) == WAV_BODY
    assert len(foreign_host.seen) == 1


def test_a_redirect_loop_ends(simulator) -> None:
    def loop(seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        return 302, [("Location", seen.path)], b""

    with http_host("127.0.0.3", responder=loop) as storage:
        client = zorio_client(simulator, recording_hosts=[storage.netloc])
        with pytest.raises(PbxApiError, match="more than 5 redirects"):
            client.open_recording_url(signed(storage))
        assert len(storage.seen) == 6


def test_https_down_to_http_is_refused_before_any_connection(foreign_host) -> None:
    # The API is https on the very host:port the link names; only the scheme differs.
    client = ZorioResource(
        pbx_name="saigon",
        base_url=f"https://{foreign_host.netloc}",
        api_token="tok",
        timezone="UTC",
    )
    with pytest.raises(RecordingLinkRefused, match="from https down to http"):
        client.open_recording_url(signed(foreign_host))
    assert foreign_host.seen == []


def test_the_recording_redirect_is_checked_before_it_is_returned(foreign_host) -> None:
    def zorio(_seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        return 302, [("Location", signed(foreign_host))], b""

    with http_host(responder=zorio) as pbx:
        client = ZorioResource(
            pbx_name="fake", base_url=pbx.base_url, api_token="tok", timezone="UTC"
        )
        with pytest.raises(RecordingLinkRefused) as caught:
            client.recording_redirect_url("u1")
    assert "SIGNATURE" not in str(caught.value) and foreign_host.seen == []


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
    sim = make_simulator(calls_per_day=20, zorio={"link_ttl": LINK_TTL_S})
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
    wait_out_links_minted_before(time.monotonic())
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
    make_simulator, server_style: str, caplog
) -> None:
    caplog.set_level(logging.INFO)
    sim = make_simulator(calls_per_day=20)
    client = zorio_client(sim, per_page=7, query_timezone="UTC")
    fetch = client.fetch_cdrs(DAY, DAY)
    pages = list(fetch.record_pages())
    # Compact bodies (the pages' shape, Laravel's) are cut without parsing; bodies that cannot be
    # cut exactly (pretty-printed, nested arrays in records) are parsed whole, said once.
    fast = server_style not in ("pretty", "extra_keys")
    assert pages and all(isinstance(page, JsonRecords) == fast for page in pages)
    notes = [r for r in caplog.records if "could not be cut without parsing" in r.getMessage()]
    assert len(notes) == (0 if fast else 1)
    records = [r for page in pages for r in (page.dicts() if fast else page)]
    assert fetch.api_total == fetch.fetched == len(records) == sum(len(p) for p in pages)
    assert records == collect(client.fetch_cdrs(DAY, DAY))


def test_a_detail_without_its_recording_object_falls_back_to_the_redirect(make_simulator):
    sim = make_simulator(zorio={"detail_recording": "absent"})
    client = zorio_client(sim)
    uuid = recorded_uuids(sim)[0]
    with client.open_recording(uuid) as stream:
        body = b"".join(stream.iter_chunks())
    assert hashlib.sha256(body).hexdigest() == sim.recording_sha256("zorio", uuid)
    assert settled_count(sim, "/api/pbx/cdr/{uuid}/recording") == 1
    sim.faults.missing_recordings.add(uuid)  # neither endpoint has it now
    with pytest.raises(RecordingMissing):
        client.open_recording(uuid)
