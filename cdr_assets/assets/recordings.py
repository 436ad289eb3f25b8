"""One day of `<name>/recordings`: archive every recording of the day's CDRs, write the manifest.

Wiring only: which CDRs have recordings comes from the committed `cdr` partition, what to do
with each is `RecordingArchiver`'s policy, where bytes and manifest rows go is storage's.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg

from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.recordings import ArchiveOutcome, ProgressLog, RecordingArchiver, RecordingTask
from cdr_assets.schema import RECORDINGS_SCHEMA
from cdr_assets.storage.archive import RecordingArchive
from cdr_assets.storage.manifest import ManifestCheckpoint, read_manifest, write_manifest
from cdr_assets.storage.parquet import read_partition
from cdr_assets.vendors.base import PbxClient

#: Seconds between manifest checkpoints while a day's recordings are archived.
CHECKPOINT_EVERY_S = 10.0


def recording_tasks(storage: StorageConfig, pbx: str, day: date) -> list[RecordingTask]:
    """The day's CDRs that have a recording, read from the committed `cdr` partition."""
    cdrs = read_partition(
        storage.data_dir, "cdr", pbx, day, columns=["cdr_id", "has_recording", "recording_ref"]
    )
    if cdrs is None:
        raise dg.Failure(
            description=f"PBX {pbx!r}, partition {day}: no CDRs stored yet; "
            f"materialize {pbx}/cdr for {day} first",
            allow_retries=False,
        )
    with_recording = cdrs.filter(cdrs["has_recording"])
    return [
        RecordingTask(cdr_id=cdr_id, recording_ref=ref or cdr_id, call_date=day)
        for cdr_id, ref in zip(
            with_recording["cdr_id"].to_pylist(),
            with_recording["recording_ref"].to_pylist(),
            strict=True,
        )
    ]


def archive_day(
    archiver: RecordingArchiver,
    storage: StorageConfig,
    pbx: str,
    day: date,
    *,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> ArchiveOutcome:
    """Archive one day and replace its manifest partition (one row per recording). The
    manifest is checkpointed while the day is archived, and once more if the run stops early,
    so a killed or failed run's successor downloads only what was not finished."""
    tasks = recording_tasks(storage, pbx, day)
    previous = read_manifest(storage.data_dir, pbx, day)
    checkpoint = ManifestCheckpoint(
        storage.data_dir, pbx, day, previous, every_s=checkpoint_every_s, schema=RECORDINGS_SCHEMA
    )
    try:
        outcome = archiver.archive_partition(tasks, previous, on_row=checkpoint.record)
    except BaseException:
        checkpoint.flush()
        raise
    write_manifest(storage.data_dir, pbx, day, outcome.rows, RECORDINGS_SCHEMA)
    return outcome


def make_archiver(
    client: PbxClient, pbx: PbxConfigBase, storage: StorageConfig, log: ProgressLog
) -> RecordingArchiver:
    """The archiver of one PBX with its configured concurrency, attempts and rechecks."""
    return RecordingArchiver(
        client,
        RecordingArchive(storage.recordings_dir, storage.recordings_storage_options),
        pbx=pbx.name,
        concurrency=pbx.recording_concurrency,
        max_attempts=pbx.recording_attempts,
        missing_rechecks=pbx.missing_rechecks,
        log=log,
    )


def recordings_day_metadata(outcome: ArchiveOutcome, storage: StorageConfig) -> dict[str, Any]:
    """The day's own `recordings` materialization metadata."""
    counts = outcome.counts
    return {
        "dagster/partition_row_count": len(outcome.rows),
        "archived": counts["archived"],
        "missing": counts["missing"],
        "failed": counts["failed"],
        "downloaded_this_run": outcome.downloaded,
        "already_archived": outcome.skipped,
        "bytes_downloaded": outcome.bytes_downloaded,
        "mb_per_s": round(outcome.mb_per_s, 3),
        "recordings_dir": storage.recordings_dir,
    }
