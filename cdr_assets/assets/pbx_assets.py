"""A PBX's two assets, `<name>/cdr` and `<name>/recordings`, as one step that goes day by day.

Why one `multi_asset` step that yields an `AssetMaterialization` per day (and not two `@asset`s
returning one `MaterializeResult`): a range run (a UI backfill, `dg launch --partition-range`,
which Dagster requires to be single-run) must record each day on its own, with its own metadata
and check results, the moment the day is committed, so that days committed before a later day
fails stay materialized and a retry or re-execution can skip them. A result at the end of the step
would record all days or none, with the same metadata on each; and a downstream step would be
skipped when an upstream step yields no output. So each day, in order: fetch and commit its CDRs,
record them, evaluate their checks, and archive the day's recordings only if its blocking checks
passed. The step holds the PBX's lock (`cdr_assets.pbx_lock`) throughout, so one step at a time
talks to a PBX, and a killed run never keeps it.

A subset (only `cdr`, only `recordings`, only some checks, e.g. `every_recording_archived`
executed on its own from the UI) does only that part: checks of days it does not write are
evaluated against what is stored, nothing is fetched or downloaded for them.
"""

import contextlib
from collections.abc import Iterator
from datetime import date

import dagster as dg

from cdr_assets.assets.cdr import cdr_day_metadata, ingest_day
from cdr_assets.assets.checks import (
    BLOCKING_CHECKS,
    RECORDINGS_ARCHIVED,
    DayCheck,
    cdr_check_names,
    check_specs,
    evaluate_cdr_checks,
    evaluate_recordings_check,
)
from cdr_assets.assets.partitions import run_days
from cdr_assets.assets.recordings import archive_day, make_archiver, recordings_day_metadata
from cdr_assets.assets.translator import CdrAssetProps, CdrAssetsTranslator
from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.errors import CdrAssetsError, PbxApiError, PbxAuthError
from cdr_assets.pbx_lock import PbxLockTimeout, hold_pbx_lock
from cdr_assets.schema import TABLE_SCHEMAS
from cdr_assets.storage.duckdb import DuckDBLockTimeout, ensure_views
from cdr_assets.vendors.base import PbxClient

#: What `python -m cdr_assets.auth_breaker` is, for messages about a refused credential.
BREAKER_COMMAND = "python -m cdr_assets.auth_breaker show|reset"
_Event = dg.AssetMaterialization | dg.AssetCheckResult | dg.AssetCheckEvaluation


def day_failure(pbx: str, day: date, exc: CdrAssetsError) -> dg.Failure:
    """The step failure for an error while `day` was processed: it names the PBX, the endpoint
    (in the client's message) and the day, and is retried by the step's policy only when a
    retry can help (a transient fault); a refused credential never is."""
    transient = isinstance(exc, PbxApiError) and exc.transient
    said = str(exc).rstrip(".")
    prefix = f"PBX {pbx!r}, "  # the clients' errors begin "PBX 'x', endpoint /path..."
    if said.startswith(prefix):
        description = f"{prefix}partition {day}, {said.removeprefix(prefix)}"
    else:
        description = f"PBX {pbx!r}, partition {day}: {said}"
    if isinstance(exc, PbxAuthError):
        description += (
            f". Not retried: repeated refusals get this client's IP blocked. Fix the credential "
            f"in the environment; `{BREAKER_COMMAND}` shows or resets the breaker."
        )
    elif not transient:
        description += ". Not retried: the same request would get the same answer."
    metadata = {"pbx": pbx, "partition": day.isoformat(), "retried": transient}
    if isinstance(exc, PbxApiError):
        metadata["endpoint"] = exc.endpoint
    return dg.Failure(description=description, metadata=metadata, allow_retries=transient)


def build_pbx_assets(
    pbx: PbxConfigBase,
    storage: StorageConfig,
    partitions: dg.PartitionsDefinition,
    resource_key: str,
    *,
    translator: CdrAssetsTranslator,
    retry_policy: dg.RetryPolicy | None,
) -> dg.AssetsDefinition:
    """The step that materializes `<name>/cdr` (and `<name>/recordings`) day by day."""
    cdr_spec = translator.get_asset_spec(CdrAssetProps(pbx, "cdr", storage))
    cdr_key = cdr_spec.key
    specs = [cdr_spec.replace_attributes(skippable=True)]
    checks = check_specs(cdr_key, cdr_check_names(pbx), partitions)
    rec_key: dg.AssetKey | None = None
    if pbx.archive_recordings:
        rec_spec = translator.get_asset_spec(CdrAssetProps(pbx, "recordings", storage))
        rec_key = rec_spec.key
        specs.append(rec_spec.replace_attributes(deps=[cdr_key], skippable=True))
        checks += check_specs(rec_key, [RECORDINGS_ARCHIVED], partitions)

    @dg.multi_asset(
        name=f"{pbx.name}_cdr_and_recordings",
        specs=specs,
        check_specs=checks,
        can_subset=True,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys={resource_key},
        retry_policy=retry_policy,
        pool=pbx.pool,
    )
    def pbx_assets(context: dg.AssetExecutionContext) -> Iterator[_Event]:
        client: PbxClient = getattr(context.resources, resource_key)
        step = _PbxStep(context, pbx, storage, client, cdr_key, rec_key)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(
                    hold_pbx_lock(
                        storage.state_dir,
                        pbx.name,
                        run_id=context.run.run_id,
                        timeout_s=pbx.pbx_lock_timeout_minutes * 60,
                        log=context.log,
                    )
                )
            except PbxLockTimeout as exc:  # waiting longer would not help: it says who holds it
                raise dg.Failure(description=str(exc), allow_retries=False) from exc
            try:
                yield from step.run(run_days(context))
            finally:
                step.refresh_views()

    return pbx_assets


class _PbxStep:
    """One execution of a PBX's step over the days of its run."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        pbx: PbxConfigBase,
        storage: StorageConfig,
        client: PbxClient,
        cdr_key: dg.AssetKey,
        rec_key: dg.AssetKey | None,
    ) -> None:
        self.context = context
        self.pbx = pbx
        self.storage = storage
        self.client = client
        self.cdr_key = cdr_key
        self.rec_key = rec_key
        selected = context.selected_asset_keys
        self.write_cdr = cdr_key in selected
        self.write_recordings = rec_key is not None and rec_key in selected
        checks = context.selected_asset_check_keys
        self.cdr_checks = {k.name for k in checks if k.asset_key == cdr_key}
        self.recordings_check = rec_key is not None and any(k.asset_key == rec_key for k in checks)
        self.held_back: list[str] = []

    def run(self, days: list[date]) -> Iterator[_Event]:
        done_cdr = self._committed_in_lineage(self.cdr_key, days) if self.write_cdr else set()
        done_rec = set()
        if self.write_recordings and self.rec_key is not None:
            done_rec = self._committed_in_lineage(self.rec_key, days)
        for day in days:
            passed = yield from self._cdr_day(day, skip=day in done_cdr)
            if self.rec_key is not None:
                yield from self._recordings_day(day, passed, skip=day in done_rec)
        if self.held_back and not self.write_cdr:
            raise dg.Failure(
                description=f"PBX {self.pbx.name!r}: recordings not archived for "
                f"{', '.join(self.held_back)}: a blocking check of their CDRs failed; "
                "materialize the cdr asset of those days again first",
                allow_retries=False,
            )

    def _cdr_day(self, day: date, *, skip: bool) -> Iterator[_Event]:
        """Commit and record the day's CDRs (unless done already in this run's lineage), emit
        the selected checks; returns whether the day's blocking checks passed."""
        if self.write_cdr and not skip:
            try:
                result = ingest_day(
                    self.client,
                    self.pbx,
                    self.storage,
                    day,
                    run_id=self.context.run.run_id,
                    log=self.context.log,
                )
            except CdrAssetsError as exc:
                raise day_failure(self.pbx.name, day, exc) from exc
            yield dg.AssetMaterialization(
                asset_key=self.cdr_key,
                partition=day.isoformat(),
                metadata=cdr_day_metadata(self.pbx, result),
            )
        elif skip:
            self.context.log.info(
                "%s %s: CDRs already committed by this run or the one it re-executes",
                self.pbx.name,
                day,
            )
        names = set(self.cdr_checks)
        if self.write_recordings:
            names |= BLOCKING_CHECKS  # they decide whether the day's recordings are archived
        verdicts = evaluate_cdr_checks(self.pbx, self.storage, day, names)
        for verdict in verdicts:
            if verdict.name in self.cdr_checks:
                yield self._check_event(self.cdr_key, day, verdict)
        return not any(v.blocks for v in verdicts)

    def _recordings_day(self, day: date, cdr_passed: bool, *, skip: bool) -> Iterator[_Event]:
        assert self.rec_key is not None
        if self.write_recordings and not cdr_passed:
            self.held_back.append(day.isoformat())
            self.context.log.warning(
                "%s %s: recordings held back: a blocking check of the day's CDRs failed",
                self.pbx.name,
                day,
            )
        elif self.write_recordings and not skip:
            archiver = make_archiver(self.client, self.pbx, self.storage, self.context.log)
            try:
                outcome = archive_day(archiver, self.storage, self.pbx.name, day)
            except CdrAssetsError as exc:
                raise day_failure(self.pbx.name, day, exc) from exc
            yield dg.AssetMaterialization(
                asset_key=self.rec_key,
                partition=day.isoformat(),
                metadata=recordings_day_metadata(outcome, self.storage),
            )
        if self.recordings_check:
            verdict = evaluate_recordings_check(self.storage, self.pbx.name, day)
            yield self._check_event(self.rec_key, day, verdict)

    def _check_event(
        self, key: dg.AssetKey, day: date, verdict: DayCheck
    ) -> dg.AssetCheckResult | dg.AssetCheckEvaluation:
        """A one-day run reports an `AssetCheckResult` (Dagster ties it to the day's latest
        materialization); a range run reports each day as an `AssetCheckEvaluation` of that
        partition, as `AssetCheckResult` has no partition of its own."""
        if self.context.has_partition_key:
            return dg.AssetCheckResult(
                asset_key=key,
                check_name=verdict.name,
                passed=verdict.passed,
                metadata=verdict.metadata,
                description=verdict.description,
            )
        return dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=verdict.name,
            passed=verdict.passed,
            metadata=verdict.metadata,
            description=verdict.description,
            blocking=verdict.name in BLOCKING_CHECKS,
            partition=day.isoformat(),
        )

    def _committed_in_lineage(self, key: dg.AssetKey, days: list[date]) -> set[date]:
        """Days of `key` already materialized by this run (an earlier attempt of this step) or
        by the runs it re-executes, which a retry must not fetch again."""
        run = self.context.run
        if self.context.retry_number == 0 and run.parent_run_id is None:
            return set()
        instance = self.context.instance
        lineage = {run.run_id}
        while run.parent_run_id:
            parent = instance.get_run_by_id(run.parent_run_id)
            if parent is None:
                break
            lineage.add(parent.run_id)
            run = parent
        wanted = [day.isoformat() for day in days]
        found: set[date] = set()
        cursor = None
        while True:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=wanted),
                limit=1000,
                cursor=cursor,
            )
            for record in records.records:
                if record.run_id in lineage and record.partition_key:
                    found.add(date.fromisoformat(record.partition_key))
            if not records.has_more:
                return found
            cursor = records.cursor

    def refresh_views(self) -> None:
        """Make DuckDB's views current (only when they changed); a held lock only warns: the
        Parquet is committed and the next run refreshes them."""
        try:
            ensure_views(self.storage.duckdb_path, self.storage.data_dir, TABLE_SCHEMAS)
        except DuckDBLockTimeout as exc:
            self.context.log.warning("DuckDB views not refreshed: %s", exc)
