"""`python -m cdr_assets.auth_breaker show|reset`: what an operator sees and does after a PBX
refused the credential."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cdr_assets.auth_breaker import main
from cdr_assets.errors import PbxAuthError
from cdr_assets.vendors.auth_breaker import list_states
from tests.vendors.simclients import settled_count, yeastar_client


def write_config(tmp_path: Path, base_url: str) -> Path:
    config = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "pbxs": [
            {
                "name": "hq",
                "vendor": "yeastar",
                "base_url": base_url,
                "timezone": "Asia/Singapore",
                "start_date": "2026-06-01",
                "client_id": {"env": "T_YEASTAR_ID"},
                "client_secret": {"env": "T_YEASTAR_SECRET"},
            },
            {
                "name": "saigon",
                "vendor": "zorio",
                "base_url": base_url,
                "timezone": "Asia/Ho_Chi_Minh",
                "start_date": "2026-06-01",
                "api_token": {"env": "T_ZORIO_TOKEN"},
            },
        ],
    }
    path = tmp_path / "cdr_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def refuse_once(simulator, tmp_path: Path, cooldown_minutes: float) -> tuple[Path, str]:
    """A config whose state dir holds an open breaker for `hq` (a wrong secret was refused)."""
    config = write_config(tmp_path, simulator.base_url)
    state_dir = str(tmp_path / "data" / ".state")
    wrong = "wrong-" + simulator.config.yeastar.client_secret
    with pytest.raises(PbxAuthError):
        yeastar_client(
            simulator,
            client_secret=wrong,
            auth_state_dir=state_dir,
            auth_cooldown_minutes=cooldown_minutes,
        ).system_information()
    return config, wrong


@pytest.fixture
def refused(simulator, tmp_path) -> tuple[Path, str]:
    """An open breaker whose cool-down outlasts the test, however slow the machine."""
    return refuse_once(simulator, tmp_path, cooldown_minutes=30)


@pytest.fixture
def refused_briefly(simulator, tmp_path) -> tuple[Path, str]:
    """An open breaker that cools down after 1.2 s."""
    return refuse_once(simulator, tmp_path, cooldown_minutes=0.02)


def test_show_prints_state_times_endpoint_and_reason_but_no_secret(refused, capsys) -> None:
    config, wrong = refused
    assert main(["show", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    (state,) = list_states(str(config.parent / "data" / ".state"))
    assert "hq: open" in out and "saigon: closed" in out
    assert "opened at" in out and "cool-down ends" in out and " UTC" in out
    assert "endpoint         /openapi/v1.0/get_token (errcode -1)" in out
    assert "get_token refused (FAILURE)" in out and "client_secret" in out
    assert f"fingerprint {state.fingerprint[:8]}..." in out and state.fingerprint not in out
    assert wrong not in out


def test_show_marks_a_cooled_down_breaker_half_open(refused_briefly, capsys) -> None:
    config, _ = refused_briefly
    time.sleep(1.3)
    assert main(["show", "--pbx", "hq", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "hq: half-open" in out and "next attempt goes to the PBX, once" in out
    assert "saigon" not in out


def test_reset_command_lets_the_next_attempt_through(simulator, refused) -> None:
    config, wrong = refused
    env = {**os.environ, "CDR_ASSETS_CONFIG": str(config)}
    result = subprocess.run(
        [sys.executable, "-m", "cdr_assets.auth_breaker", "reset", "--pbx", "hq"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "hq: reset" in result.stdout
    state_dir = str(config.parent / "data" / ".state")
    assert list_states(state_dir) == []
    again = yeastar_client(simulator, client_secret=wrong, auth_state_dir=state_dir)
    with pytest.raises(PbxAuthError, match="get_token refused"):
        again.system_information()
    assert settled_count(simulator, "get_token") == 2


def test_reset_of_everything_and_unknown_names(refused, capsys) -> None:
    config, _ = refused
    assert main(["reset", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "hq: reset" in out and "saigon: was closed" in out
    assert main(["show", "--pbx", "nowhere", "--config", str(config)]) == 2
    assert "no PBX 'nowhere'" in capsys.readouterr().err


def test_a_missing_config_is_named(tmp_path, capsys) -> None:
    assert main(["show", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_the_cdr_assets_command_shows_the_breaker_too(refused) -> None:
    config, _ = refused
    command = str(Path(sys.executable).parent / "cdr_assets")
    result = subprocess.run(
        [command, "auth-breaker", "show", "--pbx", "hq", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "hq: open" in result.stdout
