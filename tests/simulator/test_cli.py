"""`python -m cdr_assets.simulator` serves until SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import requests


def test_cli_prints_its_url_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdr_assets.simulator", "--port", "0", "--calls-per-day", "10",
         "--zorio-token", "cli-token", "--yeastar-clock", "12"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[-1]
        r = requests.get(base + "/api/pbx/cdr", headers={"Authorization": "Bearer cli-token"},
                         params={"from": "2026-06-01", "to": "2026-06-01"}, timeout=10)
        assert r.status_code == 200 and r.json()["total"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
