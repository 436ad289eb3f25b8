"""Several PBXs of each vendor on one simulator, each under `/pbx/<name>` (real HTTP)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from cdr_assets.simulator import (
    FleetPbxConfig,
    Simulator,
    SimulatorConfig,
    load_fleet,
    parse_fleet,
)
from cdr_assets.simulator.fleet import seed_for

from .conftest import API, UA, YeastarClient, ZorioClient, read_wav

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet" / "simulator.yaml"
DAY = "2026-10-01"


def _pbx(name: str, vendor: str, seed: int, **vendor_settings: object) -> FleetPbxConfig:
    config = SimulatorConfig(seed=seed, calls_per_day=20).with_overrides(
        **{vendor: vendor_settings}
    )
    return FleetPbxConfig(name, vendor, config)


FLEET = (
    _pbx("hq", "yeastar", 11, timezone="Asia/Singapore", client_id="hq", client_secret="hq-s"),
    _pbx(
        "ktm",
        "yeastar",
        12,
        timezone="Asia/Kathmandu",
        date_format="DD/MM/YYYY",
        clock=12,
        client_id="ktm",
        client_secret="ktm-s",
    ),
    _pbx("sgn", "zorio", 21, timezone="Asia/Ho_Chi_Minh", api_token="sgn-t"),
    _pbx("lon", "zorio", 22, timezone="Europe/London", api_token="lon-t", envelope="laravel"),
)


@pytest.fixture
def fleet_sim() -> Iterator[Simulator]:
    sim = Simulator(SimulatorConfig(calls_per_day=20), fleet=FLEET).start()
    try:
        yield sim
    finally:
        sim.stop()


def test_each_pbx_answers_under_its_prefix_with_its_own_credentials(fleet_sim):
    hq, ktm = fleet_sim.pbx("hq"), fleet_sim.pbx("ktm")
    assert ktm.base_url == f"{fleet_sim.base_url}/pbx/ktm"
    assert YeastarClient(ktm, "ktm", "ktm-s").login("ktm", "ktm-s")["errcode"] == 0
    assert YeastarClient(hq, "hq", "hq-s").login("ktm", "ktm-s")["errcode"] == -1
    sgn, lon = fleet_sim.pbx("sgn"), fleet_sim.pbx("lon")
    day = {"from": DAY, "to": DAY}
    assert ZorioClient(sgn, "sgn-t").get("/api/pbx/cdr", **day).status_code == 200
    assert ZorioClient(lon, "sgn-t").get("/api/pbx/cdr", **day).status_code == 401
    # a PBX answers only its own vendor's paths, an unknown name nothing
    assert ZorioClient(hq, "sgn-t").get("/api/pbx/cdr", **day).status_code == 404
    assert requests.get(fleet_sim.base_url + "/pbx/nope/api/pbx/cdr", timeout=10).status_code == 404


def test_pbxs_of_one_vendor_have_their_own_ids_zone_and_display_format(fleet_sim):
    hq, ktm = fleet_sim.pbx("hq"), fleet_sim.pbx("ktm")
    hq_calls, ktm_calls = hq.calls(DAY), ktm.calls(DAY)
    assert len(hq_calls) == len(ktm_calls) == 20
    assert not {c["uid"] for c in hq_calls} & {c["uid"] for c in ktm_calls}
    assert ktm_calls[0]["time"].startswith("01/10/2026") and ktm_calls[0]["time"][-2:] in (
        "AM",
        "PM",
    )
    assert hq_calls[0]["time"].startswith("10/01/2026")
    client = YeastarClient(ktm, "ktm", "ktm-s")
    info = client.get("system/information")["data"]
    assert info["system_date_format"] == "DD/MM/YYYY" and info["system_time_format"] != "24"
    served = client.get(
        "cdr/search", start_time="01/10/2026 12:00:00 AM", end_time="01/10/2026 11:59:59 PM"
    )
    assert sorted(c["uid"] for c in served["data"]) == sorted(c["uid"] for c in ktm_calls)
    # a call's local day is Kathmandu's (+05:45): its first call starts after 18:15 UTC
    assert min(c["timestamp"] for c in ktm_calls) % 86400 >= 18 * 3600 + 15 * 60
    sgn, lon = fleet_sim.pbx("sgn"), fleet_sim.pbx("lon")
    assert not {c["uuid"] for c in sgn.calls(DAY)} & {c["uuid"] for c in lon.calls(DAY)}


def test_the_root_pbxs_are_served_as_without_a_fleet(fleet_sim):
    with Simulator(SimulatorConfig(calls_per_day=20)) as alone:
        assert fleet_sim.calls("yeastar", DAY) == alone.calls("yeastar", DAY)
    root = YeastarClient(fleet_sim)  # the demo credentials, no prefix
    assert (
        root.get("cdr/search", start_time="10/01/2026 00:00:00", end_time="10/01/2026 23:59:59")[
            "total_number"
        ]
        == 20
    )
    link = root.get("recording/download", file=_a_recording(fleet_sim.calls("yeastar", DAY)))
    assert link["download_resource_url"].startswith("/api/download/")


def _a_recording(calls: list[dict]) -> str:
    return next(c["record_file"] for c in calls if c.get("record_file"))


def test_yeastar_download_links_carry_the_prefix(fleet_sim):
    ktm = fleet_sim.pbx("ktm")
    client = YeastarClient(ktm, "ktm", "ktm-s")
    ref = _a_recording(ktm.calls(DAY))
    link = client.get("recording/download", file=ref)["download_resource_url"]
    assert link.startswith("/pbx/ktm/api/download/Recording-")
    # resolved as the client does: a path on the PBX's host
    audio = requests.get(
        urljoin(ktm.base_url + "/", link),
        headers=UA,
        params={"access_token": client.token},
        timeout=10,
    )
    assert audio.status_code == 200 and audio.content == ktm.recording_bytes(ref)
    read_wav(audio.content)
    assert ktm.stats.count("/api/download") == 1 and fleet_sim.stats.count("/api/download") == 1


def test_zorio_signed_urls_and_paginator_links_carry_the_prefix(fleet_sim):
    lon = fleet_sim.pbx("lon")
    client = ZorioClient(lon, "lon-t")
    page = client.cdr(**{"from": DAY, "to": DAY}, per_page=5)
    assert page["path"] == f"{lon.base_url}/api/pbx/cdr"
    assert page["next_page_url"].startswith(f"{lon.base_url}/api/pbx/cdr?page=2")
    uuid = next(c["uuid"] for c in lon.calls(DAY) if c["recording_available"])
    url = client.get(f"/api/pbx/cdr/{uuid}").json()["data"]["recording"]["url"]
    assert url.startswith(f"{lon.base_url}/api/public/recordings/")
    assert requests.get(url, timeout=10).content == lon.recording_bytes(uuid)
    redirect = client.get(f"/api/pbx/cdr/{uuid}/recording")
    assert redirect.status_code == 302
    assert redirect.headers["Location"].startswith(f"{lon.base_url}/api/public/recordings/")


def test_faults_and_stats_are_per_pbx(fleet_sim):
    sgn, lon = fleet_sim.pbx("sgn"), fleet_sim.pbx("lon")
    sgn.faults.fail_next("/api/pbx/cdr", 429)
    day = {"from": DAY, "to": DAY}
    assert ZorioClient(lon, "lon-t").get("/api/pbx/cdr", **day).status_code == 200
    assert ZorioClient(sgn, "sgn-t").get("/api/pbx/cdr", **day).status_code == 429
    assert ZorioClient(sgn, "sgn-t").get("/api/pbx/cdr", **day).status_code == 200
    assert sgn.stats.count("/api/pbx/cdr") == 2 and lon.stats.count("/api/pbx/cdr") == 1
    assert fleet_sim.stats.count("/api/pbx/cdr") == 3
    assert ("GET", "/pbx/sgn/api/pbx/cdr", 429) in fleet_sim.stats.requests
    assert ("GET", "/api/pbx/cdr", 429) in sgn.stats.requests
    # the root's faults do not reach a fleet PBX
    fleet_sim.faults.fail_next("/api/pbx/cdr", 500)
    assert ZorioClient(sgn, "sgn-t").get("/api/pbx/cdr", **day).status_code == 200


def test_a_yeastar_ip_block_is_per_pbx(fleet_sim):
    hq, ktm = fleet_sim.pbx("hq"), fleet_sim.pbx("ktm")
    session = requests.Session()
    session.headers.update(UA)
    for _ in range(5):
        session.post(
            ktm.base_url + API + "get_token",
            json={"username": "ktm", "password": "wrong"},
            timeout=10,
        )
    blocked = session.post(
        ktm.base_url + API + "get_token", json={"username": "ktm", "password": "ktm-s"}, timeout=10
    ).json()
    assert blocked["errcode"] == 70004
    assert YeastarClient(hq, "hq", "hq-s").token
    ktm.unblock_ips()
    assert YeastarClient(ktm, "ktm", "ktm-s").token


def test_the_example_fleet_file_has_six_pbxs_of_both_vendors():
    fleet = load_fleet(EXAMPLE)
    assert len(fleet) == 6 and {p.vendor for p in fleet} == {"yeastar", "zorio"}
    zones = {p.timezone for p in fleet}
    assert {"Asia/Kathmandu", "Australia/Lord_Howe"} <= zones
    assert all(p.config.calls_per_day == 30 for p in fleet)  # from `defaults`
    secrets = [p.config.yeastar.client_secret for p in fleet if p.vendor == "yeastar"]
    assert len(set(secrets)) == 3


def test_a_fleet_block_is_flat_and_its_mistakes_are_named():
    (pbx,) = parse_fleet(
        {"pbxs": [{"name": "a", "vendor": "zorio", "timezone": "Asia/Tokyo", "calls_per_day": 7}]}
    )
    assert pbx.config.zorio.timezone == "Asia/Tokyo" and pbx.config.calls_per_day == 7
    assert pbx.config.seed == seed_for("a") != seed_for("b")
    with pytest.raises(ValueError, match=r"pbxs\[0\] \(a\): unknown key 'date_format' for a zorio"):
        parse_fleet({"pbxs": [{"name": "a", "vendor": "zorio", "date_format": "DD/MM/YYYY"}]})
    with pytest.raises(ValueError, match=r"pbxs\[0\] \(a\): .*yeastar.clock must be 12 or 24"):
        parse_fleet({"pbxs": [{"name": "a", "vendor": "yeastar", "clock": 13}]})
    with pytest.raises(ValueError, match="'a' and 'b' are both zorio with seed 5"):
        parse_fleet(
            {
                "pbxs": [
                    {"name": "a", "vendor": "zorio", "seed": 5},
                    {"name": "b", "vendor": "zorio", "seed": 5},
                ]
            }
        )
    with pytest.raises(ValueError, match="'a' is used twice"):
        parse_fleet(
            {"pbxs": [{"name": "a", "vendor": "zorio"}, {"name": "a", "vendor": "yeastar"}]}
        )
    with pytest.raises(ValueError, match="must match"):
        FleetPbxConfig("Bad-Name", "zorio")


def test_cli_serves_a_fleet_file_and_prints_each_pbx():
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdr_assets.simulator", "--port", "0", "--fleet", str(EXAMPLE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        lines = [proc.stdout.readline().strip() for _ in range(6)]
        assert f"yeastar PBX 'kathmandu' (Asia/Kathmandu) at {base}/pbx/kathmandu" in lines
        r = requests.get(
            f"{base}/pbx/london/api/pbx/cdr",
            timeout=10,
            headers={"Authorization": "Bearer london-demo-token"},
            params={"from": DAY, "to": DAY},
        )
        assert r.status_code == 200 and r.json()["total"] > 0 and "links" in r.json()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_names_a_bad_fleet_file(tmp_path):
    bad = tmp_path / "fleet.yaml"
    bad.write_text("pbxs:\n  - {name: x, vendor: zorio, colour: red}\n")
    out = subprocess.run(
        [sys.executable, "-m", "cdr_assets.simulator", "--port", "0", "--fleet", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "pbxs[0] (x): unknown key 'colour'" in out.stderr
