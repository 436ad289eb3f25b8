"""`<name>/recordings_audit`: the archive re-read against its manifest, on its own schedule.

A compliance check, not a materialization check: it runs in its own job (`<name>_recordings_
audit_job`, scheduled by `recordings_audit.cron`), re-reads a sample (or all) of the archived
files of the last `recordings_audit.days` local days with `cdr_assets.storage.audit`, and fails
listing every file that is gone or whose size, sha256 or audio header no longer matches its
manifest row. It is not blocking and is left out of the daily job, so it never holds back a
day's recordings; a run of days that selects it anyway (a UI materialization or `dg launch
--assets` selects every check of its assets) skips it, so the archive is not re-read with each
materialization. The sample is seeded by the run id: a retry of the run reads the same files,
the next run other ones.
"""

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from cdr_assets.assets.schedules import build_recordings_audit_schedule
from cdr_assets.assets.translator import CdrAssetProps, CdrAssetsTranslator
from cdr_assets.config import PbxConfigBase, RecordingsAuditConfig, StorageConfig
from cdr_assets.storage.audit import FINDING_KINDS, ArchiveAudit, audit_archive

RECORDINGS_AUDIT = "recordings_audit"
#: Files listed in the check's metadata; all of them are counted.
LISTED_PROBLEMS = 50


def audit_job_name(pbx: PbxConfigBase) -> str:
    return f"{pbx.name}_recordings_audit_job"


def audit_window(
    pbx: PbxConfigBase, settings: RecordingsAuditConfig, now: datetime
) -> tuple[date | None, date]:
    """(first, last) local day audited at `now`: the `days` days before the PBX's today, not
    before `start_date`; first is None (every day archived) for `days: all`."""
    last = now.astimezone(ZoneInfo(pbx.timezone)).date() - timedelta(days=1)
    if settings.days == "all":
        return None, last
    return max(last - timedelta(days=settings.days - 1), pbx.start_date), last


def build_recordings_audit_definitions(
    pbx: PbxConfigBase, storage: StorageConfig, translator: CdrAssetsTranslator
) -> dg.Definitions:
    """The check, its job `<name>_recordings_audit_job` and schedule `<name>_recordings_audit`
    (none without `archive_recordings`; no schedule for a null cron)."""
    if not pbx.archive_recordings:
        return dg.Definitions()
    recordings = translator.get_asset_spec(CdrAssetProps(pbx, "recordings", storage))
    check = build_recordings_audit_check(pbx, storage, recordings.key)
    job = dg.define_asset_job(
        audit_job_name(pbx),
        selection=dg.AssetSelection.checks(check),
        description=f"Re-reads {pbx.name}'s archived recordings against the manifest; "
        "materializes nothing.",
    )
    schedule = build_recordings_audit_schedule(pbx, storage, job.name)
    return dg.Definitions(
        asset_checks=[check], jobs=[job], schedules=[schedule] if schedule else []
    )


def build_recordings_audit_check(
    pbx: PbxConfigBase, storage: StorageConfig, recordings_key: dg.AssetKey
) -> dg.AssetChecksDefinition:
    """The `recordings_audit` check of one PBX's `recordings` asset."""
    settings = pbx.audit_settings(storage)
    days = "every day" if settings.days == "all" else f"the last {settings.days} local days"
    files = "every archived file" if settings.sample == "all" else f"{settings.sample} files"

    spec = dg.AssetCheckSpec(
        RECORDINGS_AUDIT,
        asset=recordings_key,
        blocking=False,
        description=f"Re-reads {files} archived on {days} (a new random sample each run, spread "
        "over the days) and compares size, sha256 and audio header with the recordings "
        "manifest: fails listing files that were deleted or changed (bit rot). Evaluated in "
        "runs that are not of a day: its own job, or executed alone.",
    )

    @dg.multi_asset_check(specs=[spec], can_subset=True, name=f"{pbx.name}_recordings_audit")
    def recordings_audit(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        if context.op_execution_context.has_partitions:
            context.log.info(
                "%s: recordings_audit is not evaluated in a run of days (it re-reads the "
                "archive, not a day); job %s runs it",
                pbx.name,
                audit_job_name(pbx),
            )
            return
        first, last = audit_window(pbx, settings, datetime.now().astimezone())
        seed = f"{pbx.name}:{context.run.run_id}"
        audit = audit_archive(
            storage.data_dir,
            [pbx.name],
            first=first,
            last=last,
            sample=None if settings.sample == "all" else settings.sample,
            seed=seed,
            keep_problems=LISTED_PROBLEMS,
            recordings_storage_options=storage.recordings_storage_options,
        )
        context.log.info(
            "%s: re-read %d of %d archived recordings (%d day(s) from %s to %s), %d problem(s)",
            pbx.name,
            audit.checked,
            audit.archived,
            audit.days,
            first or "the first",
            last,
            audit.problem_count,
        )
        yield audit_result(audit, recordings_key, pbx, settings, (first, last), seed)

    return recordings_audit


def shell_command(pbx: str, first: date | None, last: date, sample: int | str, seed: str) -> str:
    """The `cdr_assets verify-archive` line that re-reads the same files as this audit."""
    days = f" --from {first}" if first else ""
    chosen = "" if sample == "all" else f" --sample {sample} --seed {seed}"
    return f"cdr_assets verify-archive --pbx {pbx}{days} --to {last}{chosen}"


def audit_result(
    audit: ArchiveAudit,
    key: dg.AssetKey,
    pbx: PbxConfigBase,
    settings: RecordingsAuditConfig,
    window: tuple[date | None, date],
    seed: str,
) -> dg.AssetCheckResult:
    """The check's verdict; its metadata lists files by their path under the archive root."""
    first, last = window
    sample = settings.sample
    span = f"{first or 'start'}..{last}"
    metadata: dict[str, Any] = {
        "days": audit.days,
        "archived": audit.archived,
        "checked": audit.checked,
        "mb_read": round(audit.checked_bytes / 1e6, 3),
        "problems": audit.problem_count,
        "first_day": str(first) if first else "all",
        "last_day": str(last),
        "seed": seed,
        "same_sample_from_the_shell": dg.MetadataValue.text(
            shell_command(pbx.name, first, last, sample, seed)
        ),
        "problem_files": dg.MetadataValue.md(_problem_lines(audit)),
    }
    metadata |= {f"problems_{kind}": audit.problem_kinds[kind] for kind in FINDING_KINDS}
    if audit.problem_count:
        listed = len(audit.problems)
        more = f" (first {listed} listed)" if listed < audit.problem_count else ""
        description = (
            f"{audit.problem_count} of {audit.checked} re-read recordings ({span}) no longer "
            f"match the manifest{more}; re-materialize recordings for their days to repair them"
        )
    elif not audit.checked:
        description = f"no archived recording in {span} to re-read"
    else:
        description = f"{audit.checked} of {audit.archived} archived recordings ({span}) match"
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=RECORDINGS_AUDIT,
        passed=not audit.problem_count,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=description,
    )


def _problem_lines(audit: ArchiveAudit) -> str:
    lines = [f"- {p.call_date} `{p.path}`: {p.problem}" for p in audit.problems]
    if len(audit.problems) < audit.problem_count:
        lines.append(f"- ... and {audit.problem_count - len(audit.problems)} more")
    return "\n".join(lines) or "none"
