"""Re-reading the recording archive against its manifest, for compliance (bit rot, deletions).

Owns the comparison of every archived file (or a sample) with its `recordings` manifest row:
the file is still there, has the manifest's size and sha256, and its header is still audio of
the format the manifest's content type names. It reads files and manifests only; it never
repairs or rewrites anything (a re-run of `<pbx>/recordings` does that for what it lists).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import fsspec

from cdr_assets.audio import announced_format, inspect_audio
from cdr_assets.errors import RecordingCorrupt
from cdr_assets.storage.manifest import TABLE, ManifestRow, read_manifest
from cdr_assets.storage.parquet import FILE_NAME, resolve_fs

_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveProblem:
    """One archived recording that no longer matches its manifest row."""

    pbx: str
    call_date: date
    cdr_id: str
    uri: str
    problem: str


@dataclass
class ArchiveAudit:
    """What an audit looked at and what it found."""

    days: int = 0
    archived: int = 0  # rows of status 'archived' in those days
    checked: int = 0  # of them, files re-read
    checked_bytes: int = 0
    problems: list[ArchiveProblem] = field(default_factory=list)


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
) -> tuple[str | None, int]:
    """(what is wrong with the archived file of `row`, or None; bytes read)."""
    if not row.uri:
        return "manifest row has no uri", 0
    digest = hashlib.sha256()
    size = 0
    try:
        with fsspec.open(row.uri, "rb", **dict(storage_options or {})) as fh:
            while chunk := fh.read(_READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            if size == row.bytes and digest.hexdigest() == row.sha256:
                fh.seek(0)
                kind, _ = inspect_audio(fh, size)
                expected = announced_format(row.content_type)
                if expected is not None and kind != expected:
                    return f"header is {kind}, manifest says {row.content_type}", size
    except FileNotFoundError:
        return "file is missing", 0
    except RecordingCorrupt as exc:
        return f"header is not audio: {exc}", size
    except OSError as exc:
        return f"cannot be read: {type(exc).__name__}", size
    if size != row.bytes:
        return f"size {size} bytes, manifest says {row.bytes}", size
    if digest.hexdigest() != row.sha256:
        return "sha256 differs from the manifest (the bytes changed)", size
    return None, size


def audit_archive(
    data_dir: str,
    pbxs: Iterable[str],
    *,
    first: date | None = None,
    last: date | None = None,
    sample: int | None = None,
    seed: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    recordings_storage_options: Mapping[str, Any] | None = None,
) -> ArchiveAudit:
    """Re-read the archived recordings of `pbxs` (days `first..last`): all of them, or a random
    `sample` of them (seeded by `seed`), and report every one that does not match."""
    audit = ArchiveAudit()
    rows: list[ManifestRow] = []
    for pbx, day in manifest_days(data_dir, pbxs, first, last, storage_options):
        audit.days += 1
        manifest = read_manifest(data_dir, pbx, day, storage_options)
        rows.extend(row for row in manifest.values() if row.status == "archived")
    audit.archived = len(rows)
    if sample is not None and sample < len(rows):
        rows = random.Random(seed).sample(rows, sample)
    for row in rows:
        problem, size = check_file(row, recordings_storage_options)
        audit.checked += 1
        audit.checked_bytes += size
        if problem is not None:
            audit.problems.append(
                ArchiveProblem(row.pbx, row.call_date, row.cdr_id, row.uri or "", problem)
            )
    return audit
