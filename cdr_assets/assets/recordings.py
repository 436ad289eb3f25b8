"""The `<name>/recordings` asset: archive every recording of a day's CDRs, write the manifest.

Wiring only: which CDRs have recordings comes from the committed `cdr` partition, what to do
with each is `RecordingArchiver`'s policy, where bytes and manifest rows go is storage's.
"""

from collections import Counter
from collections.abc import Iterator
from datetime import date

import dagster as dg

from cdr_assets.assets.checks import check_recordings_covered, recordings_check_specs
from cdr_assets.assets.metadata import column_schema
from cdr_assets.assets.partitions import run_days
from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.recordings import ArchiveOutcome, RecordingArchiver, RecordingTask
from cdr_assets.schema import RECORDINGS_SCHEMA
from cdr_assets.storage.archive import RecordingArchive
from cdr_assets.storage.manifest import read_manifest, write_manifest
from cdr_assets.storage.parquet import read_partition
from cdr_assets.vendors.base import PbxClient


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
    archiver: RecordingArchiver, storage: StorageConfig, pbx: str, day: date
) -> ArchiveOutcome:
    """Archive one day and replace its manifest partition (one row per recording)."""
    tasks = recording_tasks(storage, pbx, day)
    previous = read_manifest(storage.data_dir, pbx, day)
    outcome = archiver.archive_partition(tasks, previous)
    write_manifest(storage.data_dir, pbx, day, outcome.rows, RECORDINGS_SCHEMA)
    return outcome


def build_recordings_asset(
    pbx: PbxConfigBase,
    storage: StorageConfig,
    partitions: dg.PartitionsDefinition,
    resource_key: str,
    cdr_key: dg.AssetKey,
) -> dg.AssetsDefinition:
    key = dg.AssetKey([pbx.name, "recordings"])

    @dg.asset(
        key=key,
        deps=[cdr_key],
        group_name=pbx.name,
        partitions_def=partitions,
        pool=f"pbx_{pbx.name}",
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys={resource_key},
        check_specs=recordings_check_specs(key),
        kinds={pbx.vendor, "audio"},
        metadata={"dagster/column_schema": column_schema(RECORDINGS_SCHEMA)},
        description=(
            f"Verified copies of PBX {pbx.name!r}'s call recordings under "
            f"{storage.recordings_dir}, and the `recordings` manifest. Each signed link is "
            "requested just before its download, so month-old days can be backfilled; a re-run "
            "skips intact files, repairs damaged ones and picks up recordings that appeared late."
        ),
    )
    def recordings_asset(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        client: PbxClient = getattr(context.resources, resource_key)
        archiver = RecordingArchiver(
            client,
            RecordingArchive(storage.recordings_dir, storage.recordings_storage_options),
            pbx=pbx.name,
            concurrency=pbx.recording_concurrency,
            max_attempts=pbx.recording_attempts,
            missing_rechecks=pbx.missing_rechecks,
            log=context.log,
        )
        days = run_days(context)
        counts: Counter[str] = Counter()
        downloaded = skipped = bytes_downloaded = 0
        seconds = 0.0
        for day in days:
            outcome = archive_day(archiver, storage, pbx.name, day)
            counts.update(outcome.counts)
            downloaded += outcome.downloaded
            skipped += outcome.skipped
            bytes_downloaded += outcome.bytes_downloaded
            seconds += outcome.seconds
            context.log.info(
                "%s %s: %s (%d downloaded, %d already archived, %.1f MB at %.2f MB/s)",
                pbx.name,
                day,
                dict(outcome.counts),
                outcome.downloaded,
                outcome.skipped,
                outcome.bytes_downloaded / 1e6,
                outcome.mb_per_s,
            )
        if counts["failed"]:
            context.log.warning(
                "%s: %d recordings failed; a re-run retries them", pbx.name, counts["failed"]
            )
        yield dg.MaterializeResult(
            metadata={
                "archived": counts["archived"],
                "missing": counts["missing"],
                "failed": counts["failed"],
                "downloaded_this_run": downloaded,
                "already_archived": skipped,
                "bytes_downloaded": bytes_downloaded,
                "mb_per_s": round(bytes_downloaded / 1e6 / seconds, 3) if seconds else 0.0,
                "recordings_dir": storage.recordings_dir,
            },
            check_results=[check_recordings_covered(storage.data_dir, pbx.name, days)],
        )

    return recordings_asset
