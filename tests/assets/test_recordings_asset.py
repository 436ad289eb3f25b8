"""`<name>/recordings` end to end, on a local archive and on an S3 server alike."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.parquet as pq
import pytest

from tests.assets.conftest import DAY, SECRETS, Pipeline


@pytest.fixture(params=["local", "s3"])
def archive_storage(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Storage overrides putting the recording archive on a local path or an S3 bucket."""
    if request.param == "local":
        return {}
    bucket = request.getfixturevalue("s3_bucket_url")
    return {"recordings_dir": bucket.url, "recordings_storage_options": bucket.storage_options}


def _manifest(pipeline: Pipeline, pbx: str) -> dict[str, tuple[Any, ...]]:
    rows = pipeline.query(
        "SELECT cdr_id, status, uri, bytes, sha256, attempts, error FROM recordings "
        "WHERE pbx = ? ORDER BY cdr_id",
        pbx,
    )
    return {row[0]: row[1:] for row in rows}


def _with_recording(pipeline: Pipeline, pbx: str) -> dict[str, str]:
    rows = pipeline.query(
        "SELECT cdr_id, recording_ref FROM cdr WHERE pbx = ? AND has_recording", pbx
    )
    return dict(rows)


def _read(pipeline: Pipeline, uri: str) -> bytes:
    options = pipeline.config.storage.recordings_storage_options
    with fsspec.open(uri, "rb", **options) as file:
        return file.read()


@pytest.mark.parametrize(("pbx", "vendor"), [("hq", "yeastar"), ("saigon", "zorio")])
def test_every_recording_archived_with_the_served_sha256(
    make_pipeline: Callable[..., Pipeline],
    archive_storage: dict[str, Any],
    pbx: str,
    vendor: str,
) -> None:
    pipeline = make_pipeline(storage=archive_storage)
    result = pipeline.materialize(f"{pbx}/cdr,{pbx}/recordings", DAY.isoformat())
    expected = _with_recording(pipeline, pbx)
    assert expected, "the simulated day should have recordings"
    manifest = _manifest(pipeline, pbx)
    assert set(manifest) == set(expected)
    for cdr_id, (status, uri, size, sha256, _attempts, error) in manifest.items():
        assert status == "archived", error
        assert sha256 == pipeline.sim.recording_sha256(vendor, expected[cdr_id])
        body = _read(pipeline, uri)
        assert len(body) == size and body[:4] == b"RIFF"
        assert f"/{pbx}/{DAY:%Y/%m/%d}/" in uri
    checks = pipeline.checks(result)
    assert checks[(f"{pbx}/recordings", "every_recording_archived", str(DAY))] is True
    metadata = pipeline.materializations(result, f"{pbx}/recordings")[str(DAY)]
    assert metadata["archived"] == len(expected)
    assert metadata["bytes_downloaded"] == sum(m[2] for m in manifest.values())


def test_rerun_skips_intact_repairs_corrupt_keeps_one_row_each(
    make_pipeline: Callable[..., Pipeline], archive_storage: dict[str, Any]
) -> None:
    pipeline = make_pipeline(storage=archive_storage)
    pipeline.materialize("saigon/cdr,saigon/recordings", DAY.isoformat())
    first = _manifest(pipeline, "saigon")
    victim = sorted(first)[0]
    uri = first[victim][1]
    body = bytearray(_read(pipeline, uri))
    body[100] ^= 0xFF  # same size, different bytes: only the hash can tell
    with fsspec.open(uri, "wb", **pipeline.config.storage.recordings_storage_options) as file:
        file.write(bytes(body))
    audio_before = pipeline.sim.stats.count("/api/public/recordings/{id}/audio")
    result = pipeline.materialize("saigon/recordings", DAY.isoformat())
    second = _manifest(pipeline, "saigon")
    assert set(second) == set(first)
    assert pipeline.sim.stats.count("/api/public/recordings/{id}/audio") - audio_before == 1
    assert second[victim][3] == first[victim][3]  # sha256 of the fresh copy = original
    assert _read(pipeline, uri)[100] == body[100] ^ 0xFF
    assert second[victim][4] == first[victim][4] + 1  # attempts accumulate
    metadata = pipeline.materializations(result, "saigon/recordings")[str(DAY)]
    assert metadata["already_archived"] == len(first) - 1
    assert pipeline.query("SELECT count(*) - count(DISTINCT cdr_id) FROM recordings") == [(0,)]


def test_listed_recording_that_404s_is_missing_with_reason_and_not_retried_forever(
    make_pipeline: Callable[..., Pipeline], archive_storage: dict[str, Any]
) -> None:
    pipeline = make_pipeline(zorio={"missing_rechecks": 2}, storage=archive_storage)
    pipeline.materialize("saigon/cdr", DAY.isoformat())
    victim, ref = sorted(_with_recording(pipeline, "saigon").items())[0]
    pipeline.sim.faults.missing_recordings.add(ref)
    result = pipeline.materialize("saigon/recordings", DAY.isoformat())
    status, _uri, _size, _sha, attempts, error = _manifest(pipeline, "saigon")[victim]
    assert (status, attempts) == ("missing", 1) and error
    check = next(e for e in result.get_asset_check_evaluations())
    assert check.passed is False
    assert victim in check.metadata["examples"].value
    pipeline.materialize("saigon/recordings", DAY.isoformat())
    assert _manifest(pipeline, "saigon")[victim][4] == 2
    details = pipeline.sim.stats.count("/api/pbx/cdr/{uuid}")
    pipeline.materialize("saigon/recordings", DAY.isoformat())  # third run: stops asking
    assert pipeline.sim.stats.count("/api/pbx/cdr/{uuid}") == details
    assert _manifest(pipeline, "saigon")[victim][:1] == ("missing",)


def test_late_recording_is_picked_up_by_a_rerun(
    make_pipeline: Callable[..., Pipeline], archive_storage: dict[str, Any]
) -> None:
    pipeline = make_pipeline(storage=archive_storage)
    calls = pipeline.sim.calls("yeastar", DAY)
    late = next(c for c in calls if c.get("record_file"))
    pipeline.sim.faults.withheld_recordings.add(late["record_file"])
    pipeline.materialize("hq/cdr,hq/recordings", DAY.isoformat())
    assert late["uid"] not in _manifest(pipeline, "hq")
    pipeline.sim.faults.withheld_recordings.discard(late["record_file"])
    pipeline.materialize("hq/cdr,hq/recordings", DAY.isoformat())
    assert _manifest(pipeline, "hq")[late["uid"]][0] == "archived"


def test_month_old_partition_backfills_recordings(make_pipeline: Callable[..., Pipeline]) -> None:
    """Links are minted on demand, so age does not matter."""
    pipeline = make_pipeline()
    result = pipeline.materialize(
        "hq/cdr,hq/recordings", partition_range=("2026-05-01", "2026-05-02")
    )
    assert result.success
    statuses = pipeline.query("SELECT DISTINCT status FROM recordings")
    assert statuses == [("archived",)]
    assert pipeline.query("SELECT count(DISTINCT call_date) FROM recordings") == [(2,)]


def test_no_secret_or_signed_link_reaches_logs_metadata_or_files(
    make_pipeline: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pipeline = make_pipeline()
    pipeline.sim.faults.fail_next("/api/public/recordings", 403)  # an expired-link path too
    results = [
        pipeline.materialize(f"{pbx}/cdr,{pbx}/recordings", DAY.isoformat())
        for pbx in ("hq", "saigon")
    ]
    texts = [record.getMessage() for record in caplog.records]
    for result in results:
        for event in pipeline.instance.all_logs(result.run_id):
            texts.append(repr(event))
    data_dir = Path(pipeline.config.storage.data_dir)
    texts += [p.read_bytes().decode("latin-1") for p in data_dir.rglob("*.parquet")]
    texts.append(Path(pipeline.config.storage.duckdb_path).read_bytes().decode("latin-1"))
    leaks = re.compile(
        "|".join([*map(re.escape, SECRETS.values()), r"(signature|access_token)=(?!\*\*\*)"])
    )
    assert texts and not [m.group(0) for text in texts if (m := leaks.search(text))]
    assert any("access_token=***" in text for text in texts)  # redacted, not absent


@pytest.mark.parametrize(
    ("pbx", "vendor", "audio"),
    [("hq", "yeastar", "wav"), ("hq", "yeastar", "mp3"), ("saigon", "zorio", "wav")],
)
def test_duration_comes_from_the_audio_header_and_recorded_at_from_the_vendor(
    make_pipeline: Callable[..., Pipeline], pbx: str, vendor: str, audio: str
) -> None:
    pipeline = make_pipeline(sim_overrides={"yeastar": {"recording_format": audio}})
    pipeline.materialize(f"{pbx}/cdr,{pbx}/recordings", DAY.isoformat())
    rows = pipeline.query(
        "SELECT c.recording_ref, r.content_type, r.duration_s, r.recorded_at, c.answer_time "
        "FROM recordings r JOIN cdr c USING (pbx, cdr_id) WHERE pbx = ?",
        pbx,
    )
    assert rows
    api = pipeline.sim.yeastar if vendor == "yeastar" else pipeline.sim.zorio
    for ref, content_type, duration_s, recorded_at, answer_time in rows:
        found = api.recording(ref)
        assert found is not None
        assert content_type == ("audio/mpeg" if audio == "mp3" else "audio/wav")
        # WAV: data bytes / byte rate, exact; MP3: the constant-bitrate estimate of whole frames
        # (the simulator rounds up to a frame, 26 ms)
        if audio == "wav":
            assert duration_s == found[3]
        else:
            assert duration_s == pytest.approx(found[3], rel=0.01, abs=0.03)
        if vendor == "zorio":  # the detail's recording.recorded_at: when the call was answered
            assert recorded_at == answer_time and recorded_at is not None
        else:  # Yeastar's download flow states no start time
            assert recorded_at is None


def test_a_manifest_written_before_recorded_at_still_reads_in_the_view(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline()
    pipeline.materialize("saigon/cdr,saigon/recordings", DAY.isoformat())
    data_dir = Path(pipeline.config.storage.data_dir)
    (path,) = (data_dir / "recordings" / "pbx=saigon").rglob("*.parquet")
    old = pq.read_table(path)
    pq.write_table(old.drop_columns(["recorded_at"]), path)  # as an earlier version wrote it
    rows = pipeline.query("SELECT count(*), count(recorded_at), count(duration_s) FROM recordings")
    assert rows == [(old.num_rows, 0, old.num_rows)]
