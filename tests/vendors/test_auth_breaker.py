"""The auth breaker across resources, processes and runs, against the simulator's Yeastar PBX
(which blocks an IP after 5 failed get_tokens) and a slow-refusing server of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdr_assets.errors import PbxAuthError
from cdr_assets.vendors.auth_breaker import (
    FINGERPRINT_HEX_DIGITS,
    AuthBreaker,
    BreakerState,
    fingerprint,
    list_states,
)
from tests.vendors.loopback import Seen, http_host
from tests.vendors.simclients import settled_count, yeastar_client

#: One process, one resource, one call: what a Dagster run or a retried step does first.
ONE_RUN = """
import os, sys, time
from pathlib import Path
from cdr_assets.errors import PbxAuthError
from cdr_assets.vendors import YeastarResource

go = os.environ.get("T_GO_FILE")
client = YeastarResource(
    pbx_name="hq",
    base_url=os.environ["T_BASE_URL"],
    client_id=os.environ["T_CLIENT_ID"],
    client_secret=os.environ["T_CLIENT_SECRET"],
    timezone="UTC",
    auth_state_dir=os.environ["T_STATE_DIR"],
    auth_cooldown_minutes=float(os.environ.get("T_COOLDOWN", "60")),
)
if go:
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.005)
try:
    client.system_information()
except PbxAuthError as exc:
    print(exc)
    sys.exit(3)
print("ok")
"""


def run_env(base_url: str, client_id: str, secret: str, state_dir: Path, **extra: str) -> dict:
    return {
        **os.environ,
        "T_BASE_URL": base_url,
        "T_CLIENT_ID": client_id,
        "T_CLIENT_SECRET": secret,
        "T_STATE_DIR": str(state_dir),
        **extra,
    }


def run_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ONE_RUN], env=env, capture_output=True, text=True, timeout=60
    )


def state_bytes(state_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(state_dir.rglob("*")) if path.is_file())


def test_a_wrong_secret_is_sent_once_across_processes_and_the_ip_stays_unblocked(
    simulator, tmp_path
) -> None:
    cfg = simulator.config.yeastar
    wrong = "wrong-" + cfg.client_secret
    env = run_env(simulator.base_url, cfg.client_id, wrong, tmp_path)
    runs = [run_once(env) for _ in range(3)]
    assert [run.returncode for run in runs] == [3, 3, 3], [run.stderr for run in runs]
    assert settled_count(simulator, "get_token") == 1
    assert "get_token refused" in runs[0].stdout and "suspended until" in runs[0].stdout
    for later in runs[1:]:
        assert "suspended by the auth breaker" in later.stdout
        assert "nothing was sent" in later.stdout
        assert "errcode -1" in later.stdout and "reset --pbx hq" in later.stdout
    secrets = (wrong, cfg.client_secret)
    for run in runs:
        assert not any(secret in run.stdout + run.stderr for secret in secrets)
    contents = state_bytes(tmp_path)
    assert contents and not any(secret.encode() in contents for secret in secrets)
    (state,) = list_states(str(tmp_path))
    assert len(state.fingerprint) == FINGERPRINT_HEX_DIGITS

    fixed = run_once(run_env(simulator.base_url, cfg.client_id, cfg.client_secret, tmp_path))
    assert fixed.returncode == 0 and fixed.stdout.strip() == "ok", fixed.stdout + fixed.stderr
    assert settled_count(simulator, "get_token") == 2  # the IP was never blocked
    assert list_states(str(tmp_path)) == []


def test_concurrent_processes_make_one_attempt(tmp_path) -> None:
    def slow_refusal(seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        time.sleep(0.5)  # long enough for every process to be waiting on the lock
        return 200, [("Content-Type", "application/json")], b'{"errcode":-1,"errmsg":"FAILURE"}'

    go = tmp_path / "go"
    with http_host(responder=slow_refusal) as pbx:
        env = run_env(pbx.base_url, "id", "wrong", tmp_path / "state", T_GO_FILE=str(go))
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", ONE_RUN], env=env, stdout=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        for process in processes:  # all three imported, built their resource and wait
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        go.touch()
        outputs = [process.communicate(timeout=60)[0] for process in processes]
        assert [process.returncode for process in processes] == [3, 3, 3]
        assert [seen.method for seen in pbx.seen] == ["POST"]
    assert sum("Not retried: further attempts are suspended" in out for out in outputs) == 1
    assert sum("nothing was sent" in out for out in outputs) == 2


def test_after_the_cool_down_exactly_one_attempt_is_made(simulator, tmp_path) -> None:
    def client() -> Any:
        return yeastar_client(
            simulator,
            client_secret="wrong",
            auth_state_dir=str(tmp_path),
            auth_cooldown_minutes=1.5 / 60,
        )

    with pytest.raises(PbxAuthError, match="get_token refused"):
        client().system_information()
    with pytest.raises(PbxAuthError, match="nothing was sent"):
        client().system_information()
    time.sleep(1.6)
    with pytest.raises(PbxAuthError, match="get_token refused"):  # half-open: one attempt
        client().system_information()
    with pytest.raises(PbxAuthError, match="nothing was sent"):  # and open again
        client().system_information()
    assert settled_count(simulator, "get_token") == 2


def test_without_a_state_dir_the_breaker_holds_for_the_process(simulator) -> None:
    for _ in range(3):
        with pytest.raises(PbxAuthError):
            yeastar_client(simulator, client_secret="wrong").system_information()
    assert settled_count(simulator, "get_token") == 1
    yeastar_client(simulator).system_information()  # another credential is tried at once
    assert settled_count(simulator, "get_token") == 2


def test_an_unreadable_state_fails_safe(simulator, tmp_path) -> None:
    (tmp_path / "auth_breaker").mkdir()
    (tmp_path / "auth_breaker" / "hq.json").write_text("{not json")
    with pytest.raises(PbxAuthError, match="unreadable") as caught:
        yeastar_client(simulator, auth_state_dir=str(tmp_path)).system_information()
    assert "reset --pbx hq" in str(caught.value)
    assert settled_count(simulator, "get_token") == 0


def test_fingerprints_tell_credentials_apart_and_are_salted() -> None:
    salt = bytes(16)
    same = fingerprint(["https://pbx", "id", "secret"], salt)
    assert same == fingerprint(["https://pbx", "id", "secret"], salt)
    assert same != fingerprint(["https://pbx", "id", "secret2"], salt)
    assert same != fingerprint(["https://pbx2", "id", "secret"], salt)
    assert same != fingerprint(["https://pbx", "id", "secret"], bytes([1]) * 16)
    assert len(same) == FINGERPRINT_HEX_DIGITS


def test_state_round_trips_and_names_its_cause(tmp_path) -> None:
    breaker = AuthBreaker(
        "hq", "https://pbx", ("id", "secret"), state_dir=str(tmp_path), cooldown=_minutes(5)
    )
    error = breaker.trip(
        PbxAuthError("hq", "/openapi/v1.0/cdr/search", "ACCOUNT IP BLOCKED", errcode=70004)
    )
    assert "ACCOUNT IP BLOCKED" in str(error) and "reset --pbx hq" in str(error)
    raw = (tmp_path / "auth_breaker" / "hq.json").read_bytes()
    state = BreakerState.from_json(raw)
    assert state.errcode == 70004 and state.endpoint == "/openapi/v1.0/cdr/search"
    assert (state.cooldown_until - state.opened_at).total_seconds() == 300
    assert b"secret" not in raw and orjson.loads(raw)["pbx"] == "hq"
    assert oct((tmp_path / "auth_breaker" / "hq.json").stat().st_mode & 0o777) == "0o600"


def _minutes(value: float) -> Any:
    from datetime import timedelta

    return timedelta(minutes=value)
