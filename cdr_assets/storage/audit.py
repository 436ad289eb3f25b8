"""Re-reading the recording archive against its manifest, for compliance (bit rot, deletions).

Owns the comparison of every archived file (or a sample) with its `recordings` manifest row:
the file is still there, has the manifest's size and sha256, and its header is still audio of
the format the manifest's content type names. It reads files and manifests only; it never
repairs or rewrites anything (a re-run of `<pbx>/recordings` does that for what it lists).

Memory stays flat whatever the archive's size: files are hashed in 1 MiB chunks, a sample is
drawn per day from that day's Arrow manifest (only the chosen rows become objects), and at most
`keep_problems` problems are kept (all are counted).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from cdr_assets.audio import announced_format, inspect_audio
from cdr_assets.errors import RecordingCorrupt
from cdr_assets.storage.manifest import (
    TABLE,
    ManifestRow,
    count_status,
    manifest_rows,
    read_manifest_table,
)
from cdr_assets.storage.parquet import FILE_NAME, resolve_fs

_READ_CHUNK = 1024 * 1024
#: Path components of `<pbx>/<YYYY>/<MM>/<DD>/<file>` under the archive root.
_LAYOUT_DEPTH = 5


#: What can be wrong with an archived file, as `Finding.kind` names it.
FINDING_KINDS = ("missing", "size", "sha256", "header", "unreadable", "no_uri")


class Finding(NamedTuple):
    """What is wrong with one archived file: a kind to count by and a sentence for people."""

    kind: str  # one of FINDING_KINDS
    message: str


@dataclass(frozen=True)
class ArchiveProblem:
    """One archived recording that no longer matches its manifest row."""

    pbx: str
    call_date: date
    cdr_id: str
    uri: str
    problem: str
    kind: str  # a `Finding.kind`

    @property
    def path(self) -> str:
        """The file's path under the archive root (`<pbx>/<YYYY>/<MM>/<DD>/<file>`): what
        reports show, so no bucket, host or local directory leaks into them."""
        return archive_path(self.uri)


@dataclass
class ArchiveAudit:
    """What an audit looked at and what it found."""

    days: int = 0
    archived: int = 0  # rows of status 'archived' in those days
    checked: int = 0  # of them, files re-read
    checked_bytes: int = 0
    problem_count: int = 0
    problem_kinds: Counter[str] = field(default_factory=Counter)
    problems: list[ArchiveProblem] = field(default_factory=list)  # the first `keep_problems`
    days_checked: int = 0  # days of which at least one file was re-read


def archive_path(uri: str) -> str:
    """`s3://bucket/pbx/hq/2026/06/27/x.wav` -> `hq/2026/06/27/x.wav` (the archive layout)."""
    return "/".join(uri.replace("\\", "/").rstrip("/").split("/")[-_LAYOUT_DEPTH:])


def manifest_days(
    data_dir: str,
    pbxs: Iterable[str],
    first: date | None = None,
    last: date | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[tuple[str, date]]:
    """(pbx, day) of every recordings manifest partition written, oldest first per PBX."""
    fs, root = resolve_fs(data_dir, storage_options)
    for pbx in pbxs:
        pattern = f"{root}/{TABLE}/pbx={pbx}/call_date=*/{FILE_NAME}"
        days = sorted(
            date.fromisoformat(path.rsplit("/", 2)[-2].removeprefix("call_date="))
            for path in fs.glob(pattern)
        )
        for day in days:
            if (first is None or day >= first) and (last is None or day <= last):
                yield pbx, day


def check_file(
    row: ManifestRow, storage_options: Mapping[str, Any] | None = None
) -> tuple[Finding | None, int]:
    """(what is wrong with the archived file of `row`, or None; bytes read). The file is
    streamed through sha256; its header is read again when the bytes differ, to say whether
    it is still audio at all."""
    if not row.uri:
        return Finding("no_uri", "manifest row has no uri"), 0
    digest = hashlib.sha256()
    size = 0
    try:
        with fsspec.open(row.uri, "rb", **dict(storage_options or {})) as fh:
            while chunk := fh.read(_READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            fh.seek(0)
            header = _header_problem(fh, size, row.content_type)
    except FileNotFoundError:
        return Finding("missing", "file is missing"), 0
    except OSError as exc:
        return Finding("unreadable", f"cannot be read: {type(exc).__name__}"), size
    if size != row.bytes:  # a cut file's header disagrees with its size too: no news
        return Finding("size", f"size {size} bytes, manifest says {row.bytes}"), size
    if digest.hexdigest() != row.sha256:
        if header:
            return Finding("header", f"sha256 differs from the manifest and {header}"), size
        return Finding("sha256", "sha256 differs from the manifest (the bytes changed)"), size
    if header:
        return Finding("header", header), size
    return None, size


def _header_problem(fh: Any, size: int, content_type: str | None) -> str | None:
    try:
        kind, _ = inspect_audio(fh, size)
    except RecordingCorrupt as exc:
        return f"header is not audio: {exc}"
    expected = announced_format(content_type)
    if expected is not None and kind != expected:
        return f"header is {kind}, manifest says {content_type}"
    return None


def allocate_sample(counts: Sequence[int], sample: int, rng: random.Random) -> list[int]:
    """How many of each day's `counts` files to re-read so that `sample` are read in all:
    every day with files gets one before any gets a second (when the sample is smaller than
    the days, a random choice of days, so successive runs cover them all), the rest go in
    proportion to each day's size (largest remainders, ties broken at random)."""
    total = sum(counts)
    if sample >= total:
        return list(counts)
    days = [i for i, n in enumerate(counts) if n > 0]
    quotas = [0] * len(counts)
    if sample <= len(days):
        for i in rng.sample(days, sample):
            quotas[i] = 1
        return quotas
    spare = sample - len(days)  # 0 < spare < total - len(days)
    pool = total - len(days)
    shares = {i: spare * (counts[i] - 1) / pool for i in days}
    for i in days:
        quotas[i] = 1 + int(shares[i])
    left = sample - sum(quotas)
    order = sorted(days, key=lambda i: (shares[i] - int(shares[i]), rng.random()), reverse=True)
    for i in order[:left]:
        quotas[i] += 1
    return quotas


def audit_archive(
    data_dir: str,
    pbxs: Iterable[str],
    *,
    first: date | None = None,
    last: date | None = None,
    sample: int | None = None,
    seed: int | str | None = None,
    keep_problems: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    recordings_storage_options: Mapping[str, Any] | None = None,
) -> ArchiveAudit:
    """Re-read the archived recordings of `pbxs` (days `first..last`): all of them, or a random
    `sample` of them spread over the days (seeded by `seed`: the same seed and manifests read
    the same files), and report every one that does not match (the first `keep_problems`)."""
    audit = ArchiveAudit()
    rng = random.Random(seed)
    days = list(manifest_days(data_dir, pbxs, first, last, storage_options))
    audit.days = len(days)
    quotas: list[int | None] = [None] * len(days)
    if sample is not None:
        counts = [count_status(data_dir, p, d, "archived", storage_options) for p, d in days]
        audit.archived = sum(counts)
        quotas = list(allocate_sample(counts, sample, rng))
    for (pbx, day), quota in zip(days, quotas, strict=True):
        if quota == 0:
            continue
        table = read_manifest_table(
            data_dir, pbx, day, status="archived", storage_options=storage_options
        )
        if table is None or not table.num_rows:
            continue
        if quota is None:
            audit.archived += table.num_rows
        elif quota < table.num_rows:
            table = table.take(sorted(rng.sample(range(table.num_rows), quota)))
        audit.days_checked += 1
        found = _check_rows(manifest_rows(table), audit, recordings_storage_options)
        if found:
            found = _confirmed(
                found, data_dir, pbx, day, storage_options, recordings_storage_options
            )
        for problem in found:
            audit.problem_count += 1
            audit.problem_kinds[problem.kind] += 1
            if keep_problems is None or len(audit.problems) < keep_problems:
                audit.problems.append(problem)
    return audit


def _check_rows(
    rows: Iterable[ManifestRow], audit: ArchiveAudit, storage_options: Mapping[str, Any] | None
) -> list[tuple[ManifestRow, Finding]]:
    found = []
    for row in rows:
        finding, size = check_file(row, storage_options)
        audit.checked += 1
        audit.checked_bytes += size
        if finding is not None:
            found.append((row, finding))
    return found


def _confirmed(
    found: list[tuple[ManifestRow, Finding]],
    data_dir: str,
    pbx: str,
    day: date,
    storage_options: Mapping[str, Any] | None,
    recordings_storage_options: Mapping[str, Any] | None,
) -> list[ArchiveProblem]:
    """The problems that still hold against the day's manifest as it is now: a run of
    `<pbx>/recordings` may have repaired a file and rewritten its row while it was read; such
    a row is checked again, one no longer `archived` is dropped."""
    table = read_manifest_table(data_dir, pbx, day, storage_options=storage_options)
    current = {row.cdr_id: row for row, _ in found}  # the partition is gone: they all stand
    if table is not None:
        ids = pa.array([row.cdr_id for row, _ in found], pa.string())
        kept = table.filter(pc.is_in(table["cdr_id"], value_set=ids))
        current = {row.cdr_id: row for row in manifest_rows(kept)}
    confirmed = []
    for row, finding in found:
        now = current.get(row.cdr_id)
        if now is None or now.status != "archived":
            continue
        if now != row:
            refound, _ = check_file(now, recordings_storage_options)
            if refound is None:
                continue
            row, finding = now, refound
        confirmed.append(
            ArchiveProblem(
                row.pbx, row.call_date, row.cdr_id, row.uri or "", finding.message, finding.kind
            )
        )
    return confirmed
