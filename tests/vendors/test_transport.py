"""Transport: redaction of secrets, Retry-After handling, retries over real HTTP (and requests
that are sent at most once), error wrapping."""

from __future__ import annotations

import email.utils
import logging
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
import urllib3.util.retry

from cdr_assets.errors import PbxApiError
from cdr_assets.vendors.transport import (
    CappedRetry,
    RetryAfterExceeded,
    build_session,
    decode_json_body,
    hearing_throttling,
    install_log_redaction,
    redact_text,
    redact_url,
    request_failure,
)
from tests.vendors.loopback import HttpHost, free_port, http_host, raw_server
from tests.vendors.simclients import settled_count


def make_session(**overrides: object) -> requests.Session:
    settings: dict = dict(
        user_agent="cdr_assets-test",
        max_retries=3,
        backoff_factor=0.01,
        verify_tls=True,
        pool_size=4,
    )
    settings.update(overrides)
    return build_session(**settings)


def zorio_list_url(sim) -> str:
    return f"{sim.base_url}/api/pbx/cdr?page=1&per_page=1"


def bearer(sim) -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.config.zorio.api_token}"}


# --------------------------------------------------------------------------- redaction


def test_redact_url_keeps_names_and_replaces_secret_values() -> None:
    url = (
        "https://pbx.example:8088/openapi/v1.0/cdr/search?start_time=05%2F30%2F2022%2000%3A00"
        "&access_token=s4f8lGJgh28PuXt8KNsoPJCDcfjt21Uj&page=2"
    )
    assert redact_url(url) == (
        "https://pbx.example:8088/openapi/v1.0/cdr/search?start_time=05%2F30%2F2022%2000%3A00"
        "&access_token=***&page=2"
    )


def test_redact_url_strips_signed_link_parameters() -> None:
    url = "https://app.zorio.vn/api/public/recordings/401/audio?expires=1782706011&signature=de93"
    assert redact_url(url) == (
        "https://app.zorio.vn/api/public/recordings/401/audio?expires=***&signature=***"
    )


@pytest.mark.parametrize(
    "name", ["refresh_token", "token", "Signature", "X-Amz-Signature", "expires_at", "api_token"]
)
def test_redact_url_covers_every_secret_name(name: str) -> None:
    assert redact_url(f"/p?{name}=SECRETVALUE&a=1") == f"/p?{name}=***&a=1"


def test_redact_url_hides_password_in_userinfo() -> None:
    assert "hunter2" not in redact_url("https://user:hunter2@host/path")


def test_redact_text_rewrites_urllib3_debug_line() -> None:
    line = 'http://127.0.0.1:80 "GET /openapi/v1.0/cdr/search?page=1&access_token=abc123 HTTP/1.1"'
    assert "abc123" not in redact_text(line)
    assert "access_token=***" in redact_text(line)


def test_log_filter_redacts_urllib3_records(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s',
        "https",
        "pbx",
        443,
        "GET",
        "/x?access_token=TOPSECRET&signature=SIG",
        "HTTP/1.1",
        200,
        5,
    )
    messages = [record.getMessage() for record in caplog.records]
    assert messages and all("TOPSECRET" not in m and "SIG " not in m for m in messages)
    assert "access_token=***" in messages[-1]


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize("header", ["0", "-1", "-30", "soon", "1e999", "   "])
def test_retry_after_that_is_not_a_positive_number_means_no_hint(header: str) -> None:
    assert CappedRetry(backoff_max=10).parse_retry_after(header) == 0.0


def test_retry_after_in_the_past_means_no_hint() -> None:
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert CappedRetry(backoff_max=10).parse_retry_after(past) == 0.0


def test_retry_after_is_read_in_seconds_or_as_a_date() -> None:
    retry = CappedRetry(backoff_max=7)
    assert retry.parse_retry_after("3600") == 3600  # the limit is applied when retrying
    assert retry.parse_retry_after("2") == 2
    assert retry.parse_retry_after("1.5") == 1.5
    soon = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 110 < retry.parse_retry_after(soon) <= 120


def test_capped_retry_survives_new() -> None:
    retry = CappedRetry(total=3, backoff_max=4, max_retry_after_s=9).new(total=2)
    assert isinstance(retry, CappedRetry)
    assert retry.max_retry_after_s == 9 and retry.total == 2


# --------------------------------------------------------------------------- retries over HTTP


def test_429_with_retry_after_is_retried_and_honoured(simulator, monkeypatch) -> None:
    slept: list[float] = []
    simulator.faults.fail_next("/api/pbx/cdr", 429, times=2, retry_after="1")
    session = make_session()
    with monkeypatch.context() as patch:
        # urllib3's `time` is the time module: settled_count below must really sleep.
        patch.setattr(urllib3.util.retry.time, "sleep", slept.append)
        response = session.get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert response.status_code == 200
    assert slept == [1.0, 1.0]
    assert settled_count(simulator, "/api/pbx/cdr") == 3


def test_a_throttle_listener_hears_each_429_and_503_of_its_thread(simulator) -> None:
    heard: list[tuple[int, float | None]] = []
    simulator.faults.fail_next("/api/pbx/cdr", 429, retry_after="0.2")
    simulator.faults.fail_next("/api/pbx/cdr", 503)
    simulator.faults.fail_next("/api/pbx/cdr", 500)  # a fault, not a request to slow down
    session = make_session()
    with hearing_throttling(lambda status, wait: heard.append((status, wait))):
        response = session.get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert response.status_code == 200 and heard == [(429, 0.2), (503, None)]
    simulator.faults.fail_next("/api/pbx/cdr", 429, retry_after="0.2")
    session.get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert len(heard) == 2  # outside the block nobody listens


def test_the_shared_session_keeps_no_cookies() -> None:
    def set_cookie(_seen: object) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("Set-Cookie", "laravel_session=abc; Path=/")], b"{}"

    with http_host(responder=set_cookie) as host:
        session = make_session()
        session.get(f"{host.base_url}/api/pbx/cdr", timeout=10)
        session.get(f"{host.base_url}/api/pbx/cdr", timeout=10)
        assert len(session.cookies) == 0 and "Cookie" not in host.seen[1].headers


def test_proxies_and_no_proxy_from_the_environment_still_apply(
    simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session reads the proxy environment once per host, as requests would on each request:
    a proxy that refuses connections fails the request, NO_PROXY for the host lets it through."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    for name in ("http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(requests.exceptions.ProxyError):
        make_session(max_retries=0).get(zorio_list_url(simulator), timeout=10)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    session = make_session(max_retries=0)
    for _ in range(2):
        response = session.get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
        assert response.status_code == 200


def test_a_ca_bundle_from_the_environment_is_used_for_verification(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = make_session()
    settings = session.merge_environment_settings("https://pbx.example", {}, None, None, None)
    assert settings["verify"] == str(bundle)


def test_503_is_retried_with_backoff(simulator) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", 503, times=2)
    response = make_session().get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert response.status_code == 200
    assert settled_count(simulator, "/api/pbx/cdr") == 3


@pytest.mark.parametrize("header", ["0", "-5"])
def test_non_positive_retry_after_falls_back_to_backoff(simulator, monkeypatch, header) -> None:
    slept: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)
    simulator.faults.fail_next("/api/pbx/cdr", 429, times=3, retry_after=header)
    session = make_session(backoff_factor=0.25)
    response = session.get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert response.status_code == 200
    # urllib3: no sleep before the first retry, then backoff_factor * 2**(n-1).
    assert slept == [0.5, 1.0]


def test_retry_after_beyond_the_limit_fails_at_once_without_sleeping(
    simulator, monkeypatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)
    simulator.faults.fail_next("/api/pbx/cdr", 503, times=1, retry_after="86400")
    session = make_session(backoff_max_s=2.0, retry_after_max_s=60)
    before = datetime.now(UTC)
    with pytest.raises(RetryAfterExceeded) as caught:
        session.get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert slept == []
    assert caught.value.status == 503 and caught.value.retry_after_s == 86400
    assert before + timedelta(days=1) <= caught.value.retry_at <= datetime.now(UTC) + timedelta(1)
    assert settled_count(simulator, "/api/pbx/cdr") == 1
    # The connection went back to the pool: the next request works on the same session.
    response = session.get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert response.status_code == 200


def test_http_date_retry_after_beyond_the_limit_is_refused_too(simulator, monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)
    later = email.utils.formatdate(time.time() + 600, usegmt=True)
    simulator.faults.fail_next("/api/pbx/cdr", 429, times=1, retry_after=later)
    with pytest.raises(RetryAfterExceeded) as caught:
        make_session(retry_after_max_s=60).get(
            zorio_list_url(simulator), headers=bearer(simulator), timeout=10
        )
    assert slept == [] and 590 < caught.value.retry_after_s <= 600


def test_retry_after_up_to_the_limit_is_honoured_in_full(simulator, monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)
    simulator.faults.fail_next("/api/pbx/cdr", 503, times=1, retry_after="45")
    session = make_session(backoff_max_s=2.0, retry_after_max_s=60)
    response = session.get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert response.status_code == 200
    assert slept == [45.0]  # not cut to backoff_max: that bounds the exponential backoff only


def test_408_is_retried(simulator) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", 408, times=1)
    response = make_session().get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    assert response.status_code == 200
    assert settled_count(simulator, "/api/pbx/cdr") == 2


def test_exhausted_retries_return_the_last_response(simulator) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", 503, times=10)
    response = make_session(max_retries=2).get(
        zorio_list_url(simulator), headers=bearer(simulator), timeout=10
    )
    assert response.status_code == 503
    assert settled_count(simulator, "/api/pbx/cdr") == 3


def test_user_agent_is_sent_on_every_request() -> None:
    session = make_session(user_agent="probe-agent/1")
    prepared = session.prepare_request(requests.Request("GET", "http://127.0.0.1/x"))
    assert prepared.headers["User-Agent"] == "probe-agent/1"
    with pytest.raises(ValueError, match="user_agent"):
        make_session(user_agent=" ")


# --------------------------------------------------------------------------- error wrapping


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_request_failure_message_has_no_url_or_token() -> None:
    url = f"http://127.0.0.1:{closed_port()}/openapi/v1.0/cdr/search?access_token=SEKRIT"
    session = make_session(max_retries=0)
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        session.get(url, timeout=2)
    assert "SEKRIT" in str(caught.value)  # what requests would have leaked
    error = request_failure("hq", "/openapi/v1.0/cdr/search", caught.value)
    assert isinstance(error, PbxApiError)
    assert "SEKRIT" not in str(error) and "127.0.0.1" not in str(error)
    assert "connection failed" in str(error) and "'hq'" in str(error)


def test_decode_json_body_names_an_html_page(simulator) -> None:
    simulator.faults.fail_next(
        "/api/pbx/cdr", 200, body=b"<html><body>Gateway</body></html>", content_type="text/html"
    )
    response = make_session().get(zorio_list_url(simulator), headers=bearer(simulator), timeout=10)
    with pytest.raises(PbxApiError, match="HTML page") as caught:
        decode_json_body("hq", "/api/pbx/cdr", response)
    assert "text/html" in str(caught.value) and "Gateway" not in str(caught.value)


# --------------------------------------------------------------------------- sent at most once


TOKEN_PATH = "/openapi/v1.0/get_token"


def test_read_timeout_on_a_send_once_url_makes_exactly_one_request() -> None:
    with raw_server("silent") as server:
        url = server.base_url + TOKEN_PATH
        session = make_session(max_retries=3, send_once_prefixes=(url,))
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.post(url, json={"username": "u", "password": "p"}, timeout=0.3)
        time.sleep(0.2)
        assert server.count() == 1


def test_read_timeout_on_a_get_is_retried() -> None:
    with raw_server("silent") as server:
        token_url = server.base_url + TOKEN_PATH
        session = make_session(max_retries=2, send_once_prefixes=(token_url,))
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(server.base_url + "/openapi/v1.0/cdr/search", timeout=0.3)
        time.sleep(0.2)
        assert server.count() == 3


def test_reset_after_sending_on_a_send_once_url_makes_exactly_one_request() -> None:
    with raw_server("reset") as server:
        url = server.base_url + TOKEN_PATH
        session = make_session(max_retries=3, send_once_prefixes=(url,))
        with pytest.raises(requests.exceptions.ConnectionError):
            session.post(url, json={"username": "u", "password": "p"}, timeout=2)
        time.sleep(0.2)
        assert server.count() == 1


def test_a_status_on_a_send_once_url_is_not_retried() -> None:
    def unavailable(_seen):
        return 503, [("Retry-After", "1"), ("Content-Type", "application/json")], b"{}"

    with http_host(responder=unavailable) as host:
        url = host.base_url + TOKEN_PATH
        session = make_session(max_retries=3, send_once_prefixes=(url,))
        response = session.post(url, json={"username": "u", "password": "p"}, timeout=2)
        assert response.status_code == 503
        assert len(host.seen) == 1


def test_refused_connection_on_a_send_once_url_is_retried(monkeypatch) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}{TOKEN_PATH}"
    started: list[HttpHost] = []

    def start_listening(_seconds: float) -> None:
        # urllib3 sleeps before its second retry: by then the server is up.
        if not started:
            started.append(HttpHost(port=port))

    monkeypatch.setattr(urllib3.util.retry.time, "sleep", start_listening)
    session = make_session(max_retries=3, backoff_factor=0.01, send_once_prefixes=(url,))
    try:
        response = session.post(url, json={"username": "u", "password": "p"}, timeout=2)
        assert response.status_code == 200
        (host,) = started
        assert [seen.method for seen in host.seen] == ["POST"]  # two refused, then sent once
    finally:
        for host in started:
            host.close()
