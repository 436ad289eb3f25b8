"""`python -m cdr_assets.simulator` serves until SIGTERM."""

from __future__ import annotations

import dataclasses
import re
import signal
import subprocess
import sys

import pytest
import requests

from cdr_assets.simulator import Faults, SimulatorConfig, YeastarSimConfig, ZorioSimConfig
from cdr_assets.simulator.__main__ import build_parser, config_from_args


def test_cli_prints_its_url_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cdr_assets.simulator",
            "--port",
            "0",
            "--calls-per-day",
            "10",
            "--zorio-token",
            "cli-token",
            "--yeastar-clock",
            "12",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[-1]
        r = requests.get(
            base + "/api/pbx/cdr",
            headers={"Authorization": "Bearer cli-token"},
            params={"from": "2026-06-01", "to": "2026-06-01"},
            timeout=10,
        )
        assert r.status_code == 200 and r.json()["total"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _help() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "cdr_assets.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout


def test_help_has_a_flag_for_every_config_field():
    text = _help()
    flags = set(re.findall(r"(--[a-z0-9-]+)", text))
    prefixes = {YeastarSimConfig: "--yeastar-", ZorioSimConfig: "--zorio-"}
    wanted = set()
    for cls, prefix in prefixes.items():
        wanted |= {prefix + f.name.replace("_", "-") for f in dataclasses.fields(cls)}
    wanted |= {
        "--" + f.name.replace("_", "-")
        for f in dataclasses.fields(SimulatorConfig)
        if f.name not in ("yeastar", "zorio")
    }
    assert wanted - flags == set()


def test_help_epilog_documents_every_runtime_fault_with_an_example():
    epilog = _help().split("runtime faults (`sim.faults`", 1)[1]
    internal = {
        "take_failure",
        "take_transport",
        "take_truncate",
        "take_corrupt",
        "take_drift",
        "take_repeat",
        "day_changes",
        "change_day",
        "log_drift",
        "overrides",
        "token_generation",
    }
    public = {name for name in dir(Faults()) if not name.startswith("_")} - internal
    for name in public:
        entry = re.search(rf"^  {name}\b.*?(?=^  \w|\Z)", epilog, re.M | re.S)
        assert entry is not None, name
        assert "e.g. " in entry.group(), name


def test_switches_and_faults_can_be_set_on_the_command_line():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cdr_assets.simulator",
            "--port",
            "0",
            "--calls-per-day",
            "30",
            "--zorio-envelope",
            "laravel",
            "--zorio-timezone",
            "UTC",
            "--pretty",
            "--json-content-type",
            "application/json; charset=utf-8",
            "--yeastar-order",
            "desc",
            "--drift",
            "zorio:2026-06-01:2:insert:ahead",
            "--truncate-body-next",
            "/openapi/:1",
            "--override-record",
            "zorio:nope:-uuid",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        http = requests.Session()
        http.headers["Authorization"] = "Bearer demo-token"
        window = {"from": "2026-06-01", "to": "2026-06-01", "per_page": 10}
        first = http.get(base + "/api/pbx/cdr", params={**window, "page": 1}, timeout=10)
        assert first.headers["Content-Type"] == "application/json; charset=utf-8"
        assert first.content.startswith(b'{\n    "current_page": 1,')
        assert "links" in first.json() and first.json()["total"] == 30
        second = http.get(base + "/api/pbx/cdr", params={**window, "page": 2}, timeout=10)
        assert second.json()["total"] == 31  # the drift fired on page 2
        r = requests.post(
            base + "/openapi/v1.0/get_token",
            headers={"User-Agent": "x"},
            json={"username": "demo-client", "password": "demo-secret"},
        )
        assert r.status_code == 200
        with pytest.raises(ValueError):
            r.json()  # half a body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_a_bad_option_exits_2_naming_it():
    for args, word in (
        (["--drift", "zorio:2026-06-01:1:insert:ahead"], "page"),
        (["--drift", "zorio:2026-06-01"], "--drift"),
        (["--override-record", "zorio:x:duration=forty"], "not JSON"),
        (["--fail-next", "/api/:often"], "--fail-next '/api/:often'"),
        (["--zorio-recording-base-url", "nowhere"], "recording_base_url"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "cdr_assets.simulator", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 2 and word in out.stderr, (args, out.stderr)


def test_network_flags_reach_the_config():
    args = build_parser().parse_args(
        ["--latency-ms", "150", "--latency-jitter-ms", "20", "--bandwidth-bytes-per-s", "1000"]
    )
    config = config_from_args(args)
    assert (config.latency_ms, config.latency_jitter_ms, config.bandwidth_bytes_per_s) == (
        150,
        20,
        1000,
    )
