"""PbxResource: the settings, session lifecycle and plumbing every vendor resource inherits.

A third vendor is written here the way a newcomer would: its credential, one endpoint and its
paging, on top of the Zorio API of the simulator.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from datetime import date
from typing import Any, ClassVar

import dagster as dg
import pydantic
import pytest
from pydantic import Field

from cdr_assets.errors import PbxApiError, RecordingMissing, RetryAfterTooLong
from cdr_assets.vendors import (
    VENDOR_RESOURCES,
    CdrFetch,
    PbxClient,
    PbxResource,
    RecordingStream,
    YeastarResource,
    ZorioResource,
)
from cdr_assets.vendors.base import CdrWindow, FetchedPage, PassTotals
from cdr_assets.vendors.resource import PbxRuntime
from tests.vendors.loopback import raw_server
from tests.vendors.simclients import DAY, FAST_RETRIES, settled_count

REQUIRED = object()
#: The settings every vendor resource inherits, with their defaults.
COMMON_DEFAULTS: dict[str, Any] = {
    "pbx_name": REQUIRED,
    "base_url": REQUIRED,
    "timezone": REQUIRED,
    "user_agent": "cdr_assets",
    "verify_tls": True,
    "ca_bundle_path": None,
    "timeout_s": 30,
    "max_retries": 5,
    "backoff_factor": 0.5,
    "download_concurrency": 4,
    "retry_after_max_s": 60,
    "recording_hosts": [],
    "auth_state_dir": None,
    "auth_cooldown_minutes": 60,
}


class ThirdVendorResource(PbxResource):
    """A vendor as a newcomer writes it: a credential, one listing endpoint and its paging."""

    vendor: ClassVar[str] = "third"

    api_key: str = Field(repr=False, description="Bearer token. Pass it as dg.EnvVar.")
    closed_runtimes: ClassVar[list[PbxRuntime]] = []

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._send(
            "GET",
            self._api_url(path, params),
            endpoint=path,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        if response.status_code == 404:
            response.close()
            raise RecordingMissing(self.pbx_name, path, "no such CDR", http_status=404)
        return self._json_object(path, response)

    def fetch_cdrs(self, first_day: date, last_day: date) -> CdrFetch:
        params = {"from": first_day.isoformat(), "to": last_day.isoformat()}
        pages = functools.partial(self._iter_pages, params)
        window = CdrWindow(f"{first_day}..{last_day}", pages)
        return CdrFetch(pbx=self.pbx_name, endpoint="/api/pbx/cdr", windows=[window])

    def _iter_pages(self, params: dict[str, Any], totals: PassTotals) -> Iterator[FetchedPage]:
        page = 1
        while True:
            payload = self._get_json("/api/pbx/cdr", {**params, "page": page, "per_page": 50})
            totals.see(payload["total"], len(payload["data"]))
            yield FetchedPage(page, payload["data"])
            if page >= payload["last_page"]:
                return
            page += 1

    def open_recording(self, recording_ref: str) -> RecordingStream:
        cdr = self._get_json(f"/api/pbx/cdr/{recording_ref}")["data"]
        url = cdr["recording"]["url"]
        return self._open_download(url, endpoint="/recording", what=recording_ref)

    def _before_close(self, runtime: PbxRuntime) -> None:
        self.closed_runtimes.append(runtime)


def third_vendor(sim: Any, **overrides: Any) -> ThirdVendorResource:
    settings: dict[str, Any] = dict(
        pbx_name="third",
        base_url=sim.base_url,
        api_key=sim.config.zorio.api_token,
        timezone=sim.config.zorio.timezone,
        **FAST_RETRIES,
    )
    settings.update(overrides)
    return ThirdVendorResource(**settings)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("resource_class", [YeastarResource, ZorioResource, ThirdVendorResource])
def test_every_vendor_inherits_the_common_settings_with_their_defaults(resource_class) -> None:
    fields = resource_class.model_fields
    for name, default in COMMON_DEFAULTS.items():
        assert fields[name].description, name
        if default is REQUIRED:
            assert fields[name].is_required(), name
        else:
            assert fields[name].default == default, name


def test_registered_vendors_are_pbx_resources() -> None:
    assert set(VENDOR_RESOURCES) == {"yeastar", "zorio"}
    for vendor, resource_class in VENDOR_RESOURCES.items():
        assert issubclass(resource_class, PbxResource) and resource_class.vendor == vendor


def test_base_url_is_trimmed_and_must_be_http(simulator) -> None:
    assert third_vendor(simulator, base_url=" http://pbx.example:8088/ ").base_url == (
        "http://pbx.example:8088"
    )
    with pytest.raises(pydantic.ValidationError, match="http:// or https://"):
        third_vendor(simulator, base_url="pbx.example:8088")


def test_timezone_must_be_an_iana_zone(simulator) -> None:
    with pytest.raises(pydantic.ValidationError, match="not an IANA time zone"):
        third_vendor(simulator, timezone="Mars/Olympus_Mons")
    with pytest.raises(pydantic.ValidationError, match="not an IANA time zone"):
        ZorioResource(
            pbx_name="x",
            base_url="https://app.zorio.vn",
            api_token="t",
            timezone="UTC",
            query_timezone="Nowhere/Else",
        )


def test_secret_fields_stay_out_of_the_repr(simulator) -> None:
    client = third_vendor(simulator)
    assert simulator.config.zorio.api_token not in repr(client)


# --------------------------------------------------------------------------- lifecycle


def test_session_is_built_on_first_use_and_closed_with_its_state(simulator) -> None:
    client = third_vendor(simulator, user_agent="third-agent/1")
    runtime = client._runtime()
    assert client._runtime() is runtime
    assert runtime.session.headers["User-Agent"] == "third-agent/1"
    client.close()
    assert ThirdVendorResource.closed_runtimes[-1] is runtime
    assert client._runtime() is not runtime  # usable again, on a new session
    client.close()
    client.close()  # idempotent


def test_ca_bundle_is_used_only_when_verifying(simulator) -> None:
    assert third_vendor(simulator, ca_bundle_path="/ca.pem")._runtime().session.verify == "/ca.pem"
    unverified = third_vendor(simulator, ca_bundle_path="/ca.pem", verify_tls=False)
    assert unverified._runtime().session.verify is False


def test_connection_failure_names_the_endpoint_not_the_url(simulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = third_vendor(simulator, base_url=f"http://127.0.0.1:{port}", max_retries=0)
    with pytest.raises(PbxApiError, match="connection failed") as caught:
        client._send("GET", client._api_url("/p", {"access_token": "S3CRET"}), endpoint="/p")
    assert "/p" in str(caught.value) and "S3CRET" not in str(caught.value)
    assert caught.value.transient


def test_a_timeout_is_transient(simulator) -> None:
    with raw_server("silent") as server:
        client = third_vendor(simulator, base_url=server.base_url, max_retries=0, timeout_s=0.3)
        with pytest.raises(PbxApiError, match="no response within the timeout") as caught:
            client._get_json("/api/pbx/cdr")
    assert caught.value.transient and caught.value.endpoint == "/api/pbx/cdr"


def test_a_body_cut_off_mid_read_is_transient(simulator) -> None:
    with raw_server("cut") as server:
        client = third_vendor(simulator, base_url=server.base_url, max_retries=0)
        with pytest.raises(PbxApiError, match="broke while reading the body") as caught:
            client._get_json("/api/pbx/cdr")
    assert caught.value.transient


@pytest.mark.parametrize(
    "body",
    [b"<html><body>Bad gateway</body></html>", b'{"current_page":1,"data":[{"uuid":"a'],
    ids=["html", "truncated-json"],
)
def test_a_body_that_is_not_the_apis_json_is_not_transient_nor_retried(simulator, body) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", 200, body=body, content_type="text/html")
    client = third_vendor(simulator)
    with pytest.raises(PbxApiError, match="response body is") as caught:
        client._get_json("/api/pbx/cdr")
    assert not caught.value.transient
    assert settled_count(simulator, "/api/pbx/cdr") == 1


def test_retry_after_beyond_the_limit_raises_retry_after_too_long(simulator) -> None:
    simulator.faults.fail_next("/api/pbx/cdr", 429, retry_after="7200")
    client = third_vendor(simulator, retry_after_max_s=30)
    url = client._api_url("/api/pbx/cdr", {"access_token": "S3CRET"})
    with pytest.raises(RetryAfterTooLong) as caught:
        client._send("GET", url, endpoint="/api/pbx/cdr")
    error = caught.value
    message = str(error)
    assert "'third'" in message and "/api/pbx/cdr" in message and "HTTP 429" in message
    assert "7200 s" in message and f"{error.retry_at:%Y-%m-%d %H:%M:%S} UTC" in message
    assert "retry_after_max_s=30" in message and "S3CRET" not in message
    assert not error.transient and error.retry_after_s == 7200
    assert settled_count(simulator, "/api/pbx/cdr") == 1


def test_bad_recording_hosts_and_state_dir_are_refused(simulator) -> None:
    for entry in ("https://files.example", "files.example/recordings", "user@files.example", ""):
        with pytest.raises(pydantic.ValidationError, match="recording_hosts entry"):
            third_vendor(simulator, recording_hosts=[entry])
    with pytest.raises(pydantic.ValidationError, match="local directory"):
        third_vendor(simulator, auth_state_dir="s3://bucket/state")


# --------------------------------------------------------------------------- a third vendor


def test_third_vendor_pages_a_window_against_the_api_total(simulator) -> None:
    client = third_vendor(simulator)
    assert isinstance(client, PbxClient)
    fetch = client.fetch_cdrs(DAY, DAY)
    records = [record for page in fetch.pages() for record in page]
    assert records and fetch.fetched == fetch.api_total == len(records)
    client.close()


def test_third_vendor_opens_a_recording_and_maps_a_refusal(simulator) -> None:
    client = third_vendor(simulator)
    fetch = client.fetch_cdrs(DAY, DAY)
    recorded = next(r for page in fetch.pages() for r in page if r.get("recording_available"))
    with client.open_recording(recorded["uuid"]) as stream:
        body = b"".join(stream.iter_chunks())
    assert body and stream.format in ("wav", "mp3")
    with pytest.raises(RecordingMissing):
        client.open_recording("no-such-uuid")
    client.close()


def test_third_vendor_runs_inside_dagster_with_an_env_var_secret(simulator, monkeypatch) -> None:
    monkeypatch.setenv("TEST_THIRD_KEY", simulator.config.zorio.api_token)

    @dg.asset
    def cdr_count(third: ThirdVendorResource) -> int:
        return sum(len(page) for page in third.fetch_cdrs(DAY, DAY).pages())

    closed_before = len(ThirdVendorResource.closed_runtimes)
    resource = third_vendor(simulator, api_key=dg.EnvVar("TEST_THIRD_KEY"))
    result = dg.materialize([cdr_count], resources={"third": resource})
    assert result.success and result.output_for_node("cdr_count") > 0
    assert len(ThirdVendorResource.closed_runtimes) == closed_before + 1  # teardown closed it


def test_base_url_from_an_env_var_is_checked_when_the_run_resolves_it(
    simulator, monkeypatch
) -> None:
    @dg.asset
    def cdr_count(third: ThirdVendorResource) -> int:
        return sum(len(page) for page in third.fetch_cdrs(DAY, DAY).pages())

    resource = third_vendor(simulator, base_url=dg.EnvVar("TEST_THIRD_URL"))
    assert resource.base_url == dg.EnvVar("TEST_THIRD_URL")  # the name only, until launch
    monkeypatch.setenv("TEST_THIRD_URL", simulator.base_url + "/")
    result = dg.materialize([cdr_count], resources={"third": resource})
    assert result.success and result.output_for_node("cdr_count") > 0

    monkeypatch.setenv("TEST_THIRD_URL", "pbx.example:8088")
    with pytest.raises(dg.DagsterResourceFunctionError, match="third") as raised:
        dg.materialize([cdr_count], resources={"third": resource})
    assert "base_url must start with http:// or https://" in str(raised.value.__cause__)
