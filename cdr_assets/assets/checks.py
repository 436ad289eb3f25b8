"""Asset checks of a PBX's `cdr` and `recordings` partitions, evaluated one day at a time.

Each check judges what was committed to storage, not the run's own counters: the `cdr`
partition, its footer (what the fetch found: `cdr_assets.ingest.read_day_ingest`), the day's
`cdr_rejects` and `recordings` partitions. So a check can be evaluated again for a day committed
by an earlier run, on its own, without fetching anything, and it catches a writer bug as well as
an API that lied. Completeness, uniqueness and rejects are blocking: a day that fails them does
not get its recordings archived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import pyarrow.compute as pc

from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.ingest import read_day_ingest
from cdr_assets.storage.manifest import read_manifest
from cdr_assets.storage.parquet import read_partition
from cdr_assets.storage.rejects import read_rejects

CDR_UNIQUE = "cdr_id_unique"
CDR_COMPLETE = "cdr_complete"
CDR_NO_REJECTS = "no_rejected_records"
CDR_IN_WINDOW = "cdr_in_query_window"
RECORDINGS_ARCHIVED = "every_recording_archived"
#: The checks whose failure keeps a day's recordings from being archived.
BLOCKING_CHECKS = frozenset({CDR_UNIQUE, CDR_COMPLETE, CDR_NO_REJECTS})
_LIST_LIMIT = 20
_DESCRIPTIONS = {
    CDR_UNIQUE: "No cdr_id appears twice in the PBX's day.",
    CDR_COMPLETE: "Per query window, a pass over its pages returned as many distinct CDR ids as "
    "the API's own total, which held still while it was paged; an empty day counts only when "
    "the PBX's clock and display format were verified.",
    CDR_NO_REJECTS: "Every record the PBX sent for the day could be normalized (else it is in "
    "cdr_rejects, listed here with its page and position).",
    CDR_IN_WINDOW: "cdr/search returned only calls inside the window asked for (else the PBX reads "
    "window strings in another zone or format than configured).",
    RECORDINGS_ARCHIVED: "Every CDR with has_recording has an `archived` manifest row.",
}


@dataclass(frozen=True)
class DayCheck:
    """One check's verdict on one day."""

    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    @property
    def blocks(self) -> bool:
        """True when this failure must hold back the day's recordings."""
        return not self.passed and self.name in BLOCKING_CHECKS


def has_window_check(pbx: PbxConfigBase) -> bool:
    """Only Yeastar windows are wall times whose instants are known (Zorio's are dates)."""
    return pbx.vendor == "yeastar"


def cdr_check_names(pbx: PbxConfigBase) -> list[str]:
    names = [CDR_UNIQUE, CDR_COMPLETE, CDR_NO_REJECTS]
    return [*names, CDR_IN_WINDOW] if has_window_check(pbx) else names


def check_specs(
    asset_key: dg.AssetKey, names: list[str], partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    """Partitioned specs (one result per day); the blocking ones gate downstream."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset_key,
            description=_DESCRIPTIONS[name],
            blocking=name in BLOCKING_CHECKS,
            partitions_def=partitions,
        )
        for name in names
    ]


def evaluate_cdr_checks(
    pbx: PbxConfigBase, storage: StorageConfig, day: date, names: set[str]
) -> list[DayCheck]:
    """The `cdr` checks in `names` for one committed day."""
    evaluators = {
        CDR_UNIQUE: _unique,
        CDR_COMPLETE: _complete,
        CDR_NO_REJECTS: _no_rejects,
        CDR_IN_WINDOW: _in_window,
    }
    return [evaluators[name](pbx, storage, day) for name in cdr_check_names(pbx) if name in names]


def _unique(pbx: PbxConfigBase, storage: StorageConfig, day: date) -> DayCheck:
    ids = read_partition(storage.data_dir, "cdr", pbx.name, day, columns=["cdr_id"])
    if ids is None:
        return DayCheck(CDR_UNIQUE, False, {}, f"no cdr partition for {day}")
    counts = pc.value_counts(ids["cdr_id"])
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    examples = repeated.field("values").to_pylist()[:_LIST_LIMIT]
    return DayCheck(
        CDR_UNIQUE,
        not len(repeated),
        {
            "rows": ids.num_rows,
            "duplicated_ids": len(repeated),
            "first_duplicated_ids": dg.MetadataValue.md(_bullets(examples)),
        },
    )


def _complete(pbx: PbxConfigBase, storage: StorageConfig, day: date) -> DayCheck:
    ingest = read_day_ingest(storage.data_dir, pbx.name, day)
    if ingest is None:
        return DayCheck(CDR_COMPLETE, False, {}, f"no cdr partition with a fetch record for {day}")
    windows = [w.describe() for w in ingest.windows]
    empty_unverified = ingest.api_total == 0 and not ingest.query_verified
    passed = ingest.complete and not empty_unverified
    description = None
    if empty_unverified:
        description = "the PBX returned no CDR for a window whose format and zone were not verified"
    elif not ingest.complete:
        description = "; ".join(w.describe() for w in ingest.windows if not w.complete)
    return DayCheck(
        CDR_COMPLETE,
        passed,
        {
            "fetched": ingest.fetched,
            "distinct": ingest.distinct,
            "api_total": ingest.api_total,
            "passes": ingest.passes,
            "query_verified": ingest.query_verified,
            "windows": dg.MetadataValue.md(_bullets(windows)),
        },
        description,
    )


def _no_rejects(pbx: PbxConfigBase, storage: StorageConfig, day: date) -> DayCheck:
    rejects = read_rejects(storage.data_dir, pbx.name, day)
    lines = [
        f"page {r.page}, position {r.position}: "
        f"{'CDR ' + repr(r.cdr_id) if r.cdr_id else 'no id'}: {r.field}: {r.reason}"
        for r in rejects[:_LIST_LIMIT]
    ]
    return DayCheck(
        CDR_NO_REJECTS,
        not rejects,
        {"rejected": len(rejects), "first_rejected": dg.MetadataValue.md(_bullets(lines))},
        f"{len(rejects)} record(s) of {day} are in cdr_rejects" if rejects else None,
    )


def _in_window(pbx: PbxConfigBase, storage: StorageConfig, day: date) -> DayCheck:
    ingest = read_day_ingest(storage.data_dir, pbx.name, day)
    if ingest is None:
        return DayCheck(CDR_IN_WINDOW, False, {}, f"no cdr partition with a fetch record for {day}")
    return DayCheck(
        CDR_IN_WINDOW,
        ingest.outside_window == 0,
        {
            "outside_window": ingest.outside_window,
            "windows": dg.MetadataValue.md(_bullets([w.label for w in ingest.windows])),
        },
        f"{ingest.outside_window} call(s) outside the window asked for"
        if ingest.outside_window
        else None,
    )


def evaluate_recordings_check(storage: StorageConfig, pbx: str, day: date) -> DayCheck:
    """Lists up to 20 CDRs whose recording is not archived, with their manifest status."""
    cdrs = read_partition(storage.data_dir, "cdr", pbx, day, columns=["cdr_id", "has_recording"])
    if cdrs is None:
        return DayCheck(RECORDINGS_ARCHIVED, False, {}, f"no cdr partition for {day}")
    wanted = cdrs.filter(cdrs["has_recording"])["cdr_id"].to_pylist()
    manifest = read_manifest(storage.data_dir, pbx, day)
    uncovered = []
    for cdr_id in wanted:
        row = manifest.get(cdr_id)
        if row is None or row.status != "archived":
            uncovered.append(f"{cdr_id}: {row.status if row else 'no manifest row'}")
    return DayCheck(
        RECORDINGS_ARCHIVED,
        not uncovered,
        {
            "recordings_expected": len(wanted),
            "not_archived": len(uncovered),
            "examples": dg.MetadataValue.md(_bullets(uncovered[:_LIST_LIMIT])),
        },
        f"{len(uncovered)} of {len(wanted)} recordings are not archived" if uncovered else None,
    )


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines) or "none"
