"""RecordingArchiver against the simulator: expiry, damage, retries, vendor concurrency."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import fsspec
import pytest

from cdr_assets.recordings import RecordingArchiver, RecordingTask, describe_error
from cdr_assets.simulator import Simulator
from cdr_assets.storage.archive import RecordingArchive
from cdr_assets.vendors import YeastarResource, ZorioResource

DAY = date(2026, 6, 27)


def _zorio(sim: Simulator, **fields: object) -> ZorioResource:
    settings: dict[str, object] = {
        "pbx_name": "saigon",
        "base_url": sim.base_url,
        "api_token": "demo-token",
        "timezone": sim.config.zorio.timezone,
        "max_retries": 1,
    }
    return ZorioResource(**(settings | fields))


def _yeastar(sim: Simulator, **fields: object) -> YeastarResource:
    return YeastarResource(
        pbx_name="hq",
        base_url=sim.base_url,
        client_id="demo-client",
        client_secret="demo-secret",
        timezone=sim.config.yeastar.timezone,
        max_retries=1,
        **fields,
    )


def _tasks(sim: Simulator, vendor: str, limit: int | None = None) -> list[RecordingTask]:
    tasks = []
    for call in sim.calls(vendor, DAY):
        if vendor == "zorio" and call["recording_available"]:
            tasks.append(RecordingTask(call["uuid"], call["uuid"], DAY))
        elif vendor == "yeastar" and call.get("record_file"):
            tasks.append(RecordingTask(call["uid"], call["record_file"], DAY))
    return tasks[:limit]


@dataclass
class ArchiveTarget:
    """A recording archive on local disk or on the S3 server, and how to look inside it."""

    root: str
    options: dict[str, Any]

    def archive(self) -> RecordingArchive:
        return RecordingArchive(self.root, self.options)

    def read(self, uri: str) -> bytes:
        with fsspec.open(uri, "rb", **self.options) as file:
            return file.read()

    def files(self) -> list[str]:
        fs, path = fsspec.core.url_to_fs(self.root, **self.options)
        return fs.find(path) if fs.exists(path) else []


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    if request.param == "local":
        return ArchiveTarget(str(tmp_path / "archive"), {})
    bucket = request.getfixturevalue("s3_bucket_url")
    return ArchiveTarget(bucket.url, bucket.storage_options)


def _archiver(client: object, root: Path | ArchiveTarget, **options: object) -> RecordingArchiver:
    archive = root.archive() if isinstance(root, ArchiveTarget) else RecordingArchive(str(root))
    return RecordingArchiver(
        client,
        archive,
        pbx="p",
        retry_pause_s=0.01,
        **options,  # type: ignore[arg-type]
    )


def test_download_slower_than_the_link_lifetime_completes(
    make_simulator: Callable[..., Simulator], target: ArchiveTarget
) -> None:
    sim = make_simulator(calls_per_day=12, zorio={"link_ttl": 2})
    (task,) = _tasks(sim, "zorio", limit=1)
    sim.faults.recording_seconds[task.recording_ref] = 4  # 64 KB of audio
    sim.faults.throttle_bytes_per_s = 16_000  # ~4 s to download a link valid for 2 s
    outcome = _archiver(_zorio(sim), target).archive_partition([task], {})
    (row,) = outcome.rows
    assert row.status == "archived", row.error
    assert outcome.seconds > 2
    assert row.sha256 == sim.recording_sha256("zorio", task.recording_ref)


def test_expired_link_is_minted_again(
    make_simulator: Callable[..., Simulator], target: ArchiveTarget
) -> None:
    sim = make_simulator(calls_per_day=12)
    (task,) = _tasks(sim, "zorio", limit=1)
    sim.faults.fail_next("/api/public/recordings", 403, body=b'{"message":"Invalid signature."}')
    (row,) = _archiver(_zorio(sim), target).archive_partition([task], {}).rows
    assert (row.status, row.attempts) == ("archived", 2)
    assert sim.stats.count("/api/pbx/cdr/{uuid}") == 2  # a fresh link per attempt


@pytest.mark.parametrize("fault", ["truncate_next_recordings", "corrupt_next_recordings"])
def test_damaged_body_is_retried_never_archived(
    make_simulator: Callable[..., Simulator], target: ArchiveTarget, fault: str
) -> None:
    sim = make_simulator(calls_per_day=12)
    (task,) = _tasks(sim, "yeastar", limit=1)
    setattr(sim.faults, fault, 1)
    (row,) = _archiver(_yeastar(sim), target).archive_partition([task], {}).rows
    assert (row.status, row.attempts) == ("archived", 2)
    stored = target.read(row.uri)
    assert hashlib.sha256(stored).hexdigest() == row.sha256
    assert row.sha256 == sim.recording_sha256("yeastar", task.recording_ref)
    assert [name for name in target.files() if ".part" in name] == []


def test_persistent_damage_ends_failed_and_rerun_retries_it(
    make_simulator: Callable[..., Simulator], target: ArchiveTarget
) -> None:
    sim = make_simulator(calls_per_day=12)
    (task,) = _tasks(sim, "zorio", limit=1)
    sim.faults.corrupt_next_recordings = 3
    archiver = _archiver(_zorio(sim), target, max_attempts=3)
    (failed,) = archiver.archive_partition([task], {}).rows
    assert failed.status == "failed" and failed.attempts == 3
    assert "header" in (failed.error or "") or "RIFF" in (failed.error or "")
    assert target.files() == []
    (retried,) = archiver.archive_partition([task], {task.cdr_id: failed}).rows
    assert (retried.status, retried.attempts) == ("archived", 4)


def test_mp3_downloads_are_one_at_a_time(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(calls_per_day=40, yeastar={"recording_format": "mp3"})
    tasks = _tasks(sim, "yeastar")
    assert len(tasks) > 4 and all(t.recording_ref.endswith(".mp3") for t in tasks)
    outcome = _archiver(_yeastar(sim), tmp_path, concurrency=4).archive_partition(tasks, {})
    assert {row.status for row in outcome.rows} == {"archived"}
    assert sim.stats.max_concurrent_mp3 == 1
    assert {row.content_type for row in outcome.rows} == {"audio/mpeg"}


def test_wav_downloads_run_in_parallel_and_progress_is_logged(
    make_simulator: Callable[..., Simulator], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = make_simulator(calls_per_day=40)
    tasks = _tasks(sim, "zorio")
    caplog.set_level(logging.INFO)
    outcome = _archiver(_zorio(sim), tmp_path, concurrency=4, progress_every_s=0).archive_partition(
        tasks, {}
    )
    assert outcome.counts["archived"] == len(tasks)
    assert outcome.bytes_downloaded == sum(row.bytes or 0 for row in outcome.rows)
    progress = [r.getMessage() for r in caplog.records if "recordings " in r.getMessage()]
    assert progress[-1].startswith(f"p {DAY}: recordings {len(tasks)}/{len(tasks)}")
    assert "MB/s" in progress[-1]


def test_one_slow_recording_does_not_stall_the_others(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(calls_per_day=40)
    slow, *others = _tasks(sim, "zorio")
    sim.faults.recording_seconds[slow.recording_ref] = 600  # 9.6 MB among ~1 MB files
    sim.faults.throttle_bytes_per_s = 4_000_000
    outcome = _archiver(_zorio(sim), tmp_path, concurrency=2).archive_partition([slow, *others], {})
    finished = {row.cdr_id: row.archived_at for row in outcome.rows}
    assert {row.status for row in outcome.rows} == {"archived"}
    finished_meanwhile = [t for t in others if finished[t.cdr_id] < finished[slow.cdr_id]]
    assert len(finished_meanwhile) >= 3  # the other worker kept going


def test_previous_archived_row_is_kept_without_a_request(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(calls_per_day=12)
    (task,) = _tasks(sim, "zorio", limit=1)
    archiver = _archiver(_zorio(sim), tmp_path)
    (row,) = archiver.archive_partition([task], {}).rows
    requests_before = len(sim.stats.requests)
    (again,) = archiver.archive_partition([task], {task.cdr_id: row}).rows
    assert again == row and len(sim.stats.requests) == requests_before


def test_error_descriptions_drop_signed_query_values() -> None:
    error = OSError("GET http://h/a.wav?expires=1&signature=abc123&access_token=tok9 failed")
    text = describe_error(error)
    assert "abc123" not in text and "tok9" not in text and "signature=***" in text


# --------------------------------------------------------------------------- answers that end early


def test_a_refused_credential_ends_the_archive_run_at_once(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    from cdr_assets.errors import PbxAuthError

    sim = make_simulator(calls_per_day=40)
    tasks = _tasks(sim, "zorio")
    assert len(tasks) > 4
    client = _zorio(sim, api_token="wrong-token")
    with pytest.raises(PbxAuthError):
        _archiver(client, tmp_path, concurrency=2).archive_partition(tasks, {})
    # The first refusal opened the breaker: no recording after it went to the PBX again.
    assert sim.stats.count("/api/pbx/cdr/{uuid}") == 2  # one request and its one re-send


def test_an_answer_a_retry_cannot_change_fails_the_recording_after_one_attempt(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(calls_per_day=12)
    (task,) = _tasks(sim, "zorio", limit=1)
    sim.faults.fail_next(
        "/api/public/recordings", 200, body=b"<html>maintenance</html>", content_type="text/html"
    )
    (row,) = _archiver(_zorio(sim), tmp_path, max_attempts=3).archive_partition([task], {}).rows
    assert (row.status, row.attempts) == ("failed", 1)
    assert "instead of audio" in row.error


def test_an_mp3_served_for_a_wav_name_is_stored_as_mp3(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(
        calls_per_day=12, yeastar={"recording_format": "mp3", "record_file_suffix": "wav"}
    )
    (task,) = _tasks(sim, "yeastar", limit=1)
    assert task.recording_ref.endswith(".wav")
    (row,) = _archiver(_yeastar(sim), tmp_path).archive_partition([task], {}).rows
    assert row.status == "archived" and row.uri.endswith(f"{task.cdr_id}.mp3")
    assert row.content_type == "audio/mpeg"
    assert row.sha256 == sim.recording_sha256("yeastar", task.recording_ref)


def test_a_file_size_that_disagrees_with_a_complete_body_is_archived_with_a_note(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator(calls_per_day=12, zorio={"file_size_delta": 7})
    (task,) = _tasks(sim, "zorio", limit=1)
    (row,) = _archiver(_zorio(sim), tmp_path).archive_partition([task], {}).rows
    assert (row.status, row.attempts) == ("archived", 1)
    assert row.sha256 == sim.recording_sha256("zorio", task.recording_ref)
    assert row.error is not None and str(row.bytes + 7) in row.error  # the PBX's stated size
