"""Transport faults and binding of the HTTP server, over real sockets."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from cdr_assets.simulator import Simulator, SimulatorConfig

from .conftest import BEARER, YeastarClient, ZorioClient

LIST = "/api/pbx/cdr?from=2026-06-01&to=2026-06-01&per_page=50"


def _raw_get(sim, target: str) -> tuple[bytes, bytes, BaseException | None]:
    """(head, body bytes read, the error that ended the read) of one raw HTTP/1.1 request."""
    sock = socket.create_connection((sim.host, sim.port), timeout=10)
    sock.sendall(
        f"GET {target} HTTP/1.1\r\nHost: {sim.host}\r\n"
        f"Authorization: {BEARER['Authorization']}\r\n\r\n".encode()
    )
    data, error = b"", None
    try:
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        error = exc
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, error


def _length(data: bytes) -> int:
    head = data.partition(b"\r\n\r\n")[0].decode()
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            return int(value)
    return 1 << 30


def test_reset_next_sends_the_full_length_some_bytes_then_a_reset(simulator):
    full = ZorioClient(simulator).get(LIST).content
    simulator.faults.reset_next("/api/pbx/cdr", after_bytes=100)
    head, body, error = _raw_get(simulator, LIST)
    assert b"200 OK" in head and f"Content-Length: {len(full)}".encode() in head
    assert body == full[:100]
    assert isinstance(error, ConnectionResetError)
    assert ZorioClient(simulator).get(LIST).content == full  # times=1: the next one is fine


def test_reset_next_breaks_a_requests_read_and_only_under_its_prefix(yeastar, simulator):
    simulator.faults.reset_next("/openapi/v1.0/cdr/search", times=2, after_bytes=0)
    assert yeastar.get("cdr/list", page_size=1)["errcode"] == 0
    for _ in range(2):
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            yeastar.get("cdr/search", start_time="06/01/2026 00:00:00")
    assert yeastar.get("cdr/search", start_time="06/01/2026 00:00:00")["errcode"] == 0


def test_reset_next_cuts_a_streamed_recording_too(zorio, simulator):
    rec = next(c for c in simulator.calls("zorio", "2026-06-01") if c["recording_available"])
    url = urlsplit(zorio.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"])
    size = simulator.recording_size("zorio", rec["uuid"])
    simulator.faults.reset_next("/api/public/recordings/", after_bytes=5000)
    head, body, error = _raw_get(simulator, f"{url.path}?{url.query}")
    assert f"Content-Length: {size}".encode() in head
    assert body == simulator.recording_bytes("zorio", rec["uuid"])[:5000]
    assert isinstance(error, ConnectionResetError)
    simulator.faults.reset_next("/api/public/recordings/", after_bytes=5000)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url.geturl(), timeout=10)
    assert len(requests.get(url.geturl(), timeout=10).content) == size


def test_delay_next_answers_after_the_delay(zorio, simulator):
    simulator.faults.delay_next("/api/pbx/cdr", 0.6)
    with pytest.raises(requests.exceptions.ReadTimeout):
        zorio.http.get(simulator.base_url + LIST, timeout=0.2)
    started = time.monotonic()
    assert zorio.http.get(simulator.base_url + LIST, timeout=5).status_code == 200
    assert time.monotonic() - started < 0.5  # spent: served at once
    simulator.faults.delay_next("/api/pbx/cdr", 0.4)
    started = time.monotonic()
    assert zorio.http.get(simulator.base_url + LIST, timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.4


def test_stop_does_not_wait_for_a_delayed_request(make_simulator):
    sim = make_simulator()
    sim.faults.delay_next("/api/pbx/cdr", 60)
    with pytest.raises(requests.exceptions.ReadTimeout):
        ZorioClient(sim).http.get(sim.base_url + LIST, timeout=0.2)
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 5


def test_truncate_body_next_is_a_complete_response_with_half_the_json(zorio, yeastar, simulator):
    full = zorio.get(LIST).content
    simulator.faults.truncate_body_next("/api/pbx/cdr")
    r = zorio.get(LIST)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(r.content)
    assert r.content == full[: len(full) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    assert zorio.get(LIST).content == full
    simulator.faults.truncate_body_next("/openapi/v1.0/cdr/list", times=2)
    for _ in range(2):
        r = yeastar.http.get(
            simulator.base_url + "/openapi/v1.0/cdr/list",
            params={"access_token": yeastar.token},
            timeout=10,
        )
        assert r.status_code == 200 and not r.content.endswith(b"}")
    assert yeastar.get("cdr/list", page_size=1)["errcode"] == 0


def test_truncate_body_next_halves_a_streamed_recording_completely(zorio, simulator):
    rec = next(c for c in simulator.calls("zorio", "2026-06-01") if c["recording_available"])
    url = zorio.get(f"/api/pbx/cdr/{rec['uuid']}").json()["data"]["recording"]["url"]
    whole = simulator.recording_bytes("zorio", rec["uuid"])
    simulator.faults.truncate_body_next("/api/public/recordings/")
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content == whole[: len(whole) // 2]
    assert int(r.headers["Content-Length"]) == len(r.content)


def test_truncate_body_next_keeps_the_connection_usable(simulator):
    simulator.faults.truncate_body_next("/api/pbx/cdr")
    client = ZorioClient(simulator)
    first = client.get(LIST)
    second = client.get(LIST)
    assert len(second.content) == 2 * len(first.content) + len(second.content) % 2
    assert second.json()["total"] > 0


def test_a_simulator_binds_a_second_loopback_address():
    with Simulator(SimulatorConfig(), host="127.0.0.2") as other:
        assert other.base_url.startswith("http://127.0.0.2:")
        r = requests.get(other.base_url + LIST, headers=BEARER, timeout=10)
        assert r.status_code == 200 and r.json()["total"] > 0
        assert YeastarClient(other).get("cdr/list", page_size=1)["errcode"] == 0


def _timed_get(sim: Simulator, target: str) -> tuple[float, int]:
    """(seconds, body bytes) of one GET on a connection of its own."""
    started = time.monotonic()
    response = requests.get(sim.base_url + target, headers=BEARER, timeout=30)
    assert response.status_code == 200
    return time.monotonic() - started, len(response.content)


def test_latency_delays_every_request_while_requests_in_flight_overlap(make_simulator):
    sim = make_simulator(calls_per_day=20, latency_ms=400)
    with ThreadPoolExecutor(4) as pool:
        began = time.monotonic()
        each = [seconds for seconds, _ in pool.map(lambda _: _timed_get(sim, LIST), range(4))]
        together = time.monotonic() - began
    assert min(each) >= 0.4
    assert together < 4 * 0.4, "requests in flight were answered one after another"


def test_latency_jitter_stays_within_its_bound_and_follows_the_seed(make_simulator):
    first = make_simulator(latency_ms=10, latency_jitter_ms=50, seed=3)
    second = make_simulator(latency_ms=10, latency_jitter_ms=50, seed=3)
    waits = [first.network_latency_s() for _ in range(200)]
    assert all(0.010 <= w <= 0.060 for w in waits)
    assert max(waits) - min(waits) > 0.03  # it does vary
    assert waits == [second.network_latency_s() for _ in range(200)]
    assert make_simulator().network_latency_s() == 0.0


def test_bandwidth_caps_each_response_body(make_simulator):
    sim = make_simulator(calls_per_day=400, bandwidth_bytes_per_s=200_000)
    target = "/api/pbx/cdr?from=2026-06-01&to=2026-06-01&per_page=200"
    seconds, size = _timed_get(sim, target)
    assert size > 50_000
    assert seconds >= 0.9 * size / 200_000
    unlimited = make_simulator(calls_per_day=400)
    assert _timed_get(unlimited, target)[1] == size


@pytest.mark.parametrize("field", ["latency_ms", "latency_jitter_ms", "bandwidth_bytes_per_s"])
def test_network_settings_cannot_be_negative(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SimulatorConfig(**{field: -1})
