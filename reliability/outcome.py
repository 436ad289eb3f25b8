"""Judging a case: the day in the warehouse against a clean run's, and one row of the matrix.

Owns the clean reference (the day's rows and recordings manifest from a run with no fault), the
comparison of a faulted run's warehouse with it (only the simulator's current records, all
of them, each once, equal to the clean run's where the record did not change; every recording
archived with the clean run's bytes unless the case expects it missing), and the `Row` the
report prints. It must not start processes or arm faults.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cdr_assets.simulator import Simulator
from reliability.workspace import ID_FIELDS, RUN_DAY, PbxSpec, Workspace

HEALED = "healed"
NAMED_ERROR = "named error"


@dataclass(frozen=True)
class Reference:
    """The clean run of RUN_DAY for one PBX."""

    rows: dict[str, dict[str, Any]]  # cdr_id -> row without run columns, raw parsed
    manifest: dict[str, tuple[Any, ...]]  # cdr_id -> (status, sha256, bytes)

    @classmethod
    def of(cls, workspace: Workspace, pbx: PbxSpec, *, recordings: bool = True) -> Reference:
        table = workspace.day_rows(pbx)
        if table is None or table.num_rows == 0:
            raise RuntimeError(f"the clean run of {pbx.name} stored no CDRs for {RUN_DAY}")
        manifest = workspace.manifest(pbx)
        if recordings and not manifest:
            raise RuntimeError(f"the clean run of {pbx.name} archived no recordings")
        return cls(rows=comparable_rows(table), manifest=manifest)

    def with_recording(self) -> list[tuple[str, str]]:
        """(cdr_id, recording_ref) of the clean day's CDRs that have a recording, sorted."""
        return sorted(
            (cdr_id, row["recording_ref"] or cdr_id)
            for cdr_id, row in self.rows.items()
            if row["has_recording"]
        )


def comparable_rows(table: pa.Table) -> dict[str, dict[str, Any]]:
    rows = {}
    for row in table.to_pylist():
        row["raw"] = json.loads(row["raw"])  # the same record in another JSON writing is equal
        rows[row["cdr_id"]] = row
    return rows


def compare_with_clean(
    workspace: Workspace,
    pbx: PbxSpec,
    sim: Simulator,
    reference: Reference,
    *,
    rejected: Collection[str] = (),
    missing: Collection[str] = (),
    recordings: bool = True,
) -> list[str]:
    """What differs between the day in the warehouse and what a clean run would hold now
    (`recordings=False`: the day's recordings must not have been archived at all)."""
    table = workspace.day_rows(pbx)
    if table is None:
        return ["the day was not stored"]
    problems: list[str] = []
    stored = table.column("cdr_id").to_pylist()
    if len(stored) != len(set(stored)):
        problems.append(f"{len(stored) - len(set(stored))} duplicate cdr_id")
    served = {call[ID_FIELDS[pbx.vendor]] for call in sim.calls(pbx.vendor, RUN_DAY)}
    expected = served - set(rejected)
    if lost := expected - set(stored):
        problems.append(f"lost {sorted(lost)[:3]} ({len(lost)})")
    if extra := set(stored) - expected:
        problems.append(f"not served now {sorted(extra)[:3]} ({len(extra)})")
    rows = comparable_rows(table)
    changed = [
        cdr_id
        for cdr_id, row in rows.items()
        if cdr_id in reference.rows and row != reference.rows[cdr_id]
    ]
    if changed:
        problems.append(f"{len(changed)} rows differ from the clean run, e.g. {changed[0]}")
    manifest = workspace.manifest(pbx)
    if not recordings:
        if manifest:
            problems.append(f"{len(manifest)} recordings archived, expected none")
        return problems
    for cdr_id, row in rows.items():
        if not row["has_recording"]:
            continue
        got = manifest.get(cdr_id)
        want = reference.manifest.get(cdr_id)
        if cdr_id in missing:
            if got is None or got[0] != "missing":
                problems.append(f"recording {cdr_id}: {got and got[0]}, expected missing")
        elif got is None or got[0] != "archived":
            problems.append(f"recording {cdr_id}: {got and got[0]}, expected archived")
        elif want is not None and got != want:
            problems.append(f"recording {cdr_id}: bytes differ from the clean run")
    if not workspace.archived_files_verified(pbx):
        problems.append("an archived file does not match its sha256")
    return problems


@dataclass
class Row:
    """One line of the matrix."""

    fault: str
    outcome: str = ""
    detail: str = ""
    requests: int = 0
    step_retries: int = 0
    seconds: float = 0.0
    warehouse: str = ""
    earlier_intact: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def cells(self) -> list[str]:
        verdict = "pass" if self.passed else "**FAIL**: " + "; ".join(self.problems)
        return [
            self.fault,
            f"{self.outcome}{': ' + self.detail if self.detail else ''}",
            str(self.requests),
            str(self.step_retries),
            f"{self.seconds:.1f}",
            self.warehouse,
            self.earlier_intact,
            verdict,
        ]


HEADER = [
    "fault",
    "outcome",
    "requests",
    "step retries",
    "seconds",
    "warehouse = clean run",
    "earlier data intact",
    "verdict",
]


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---", "---", "---:", "---:", "---:", "---", "---", "---"]) + "|",
    ]
    for row in rows:
        lines.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row.cells()) + " |"
        )
    return "\n".join(lines)
