"""The archive audit against files on disk: intact, changed, truncated, deleted, not audio."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cdr_assets.storage import audit as audit_module
from cdr_assets.storage.audit import allocate_sample, archive_path, audit_archive, manifest_days
from cdr_assets.storage.manifest import read_manifest, write_manifest
from tests.fixtures.archive_day import archive_day

DAY = date(2026, 6, 27)


def test_an_intact_archive_has_no_problems(make_simulator, tmp_path: Path) -> None:
    sim = make_simulator(calls_per_day=20)
    rows = archive_day(sim, tmp_path, "saigon", DAY, 4)
    archive_day(sim, tmp_path, "saigon", date(2026, 6, 28), 2)
    audit = audit_archive(str(tmp_path), ["saigon", "hq"])
    assert (audit.days, audit.archived, audit.checked, audit.problems) == (2, 6, 6, [])
    assert audit.checked_bytes >= sum(row.bytes for row in rows)
    assert list(manifest_days(str(tmp_path), ["saigon"], first=DAY, last=DAY)) == [("saigon", DAY)]


def test_bit_rot_truncation_deletion_and_a_foreign_file_are_each_named(
    make_simulator, tmp_path: Path
) -> None:
    sim = make_simulator(calls_per_day=20)
    rows = archive_day(sim, tmp_path, "saigon", DAY, 5)
    flipped, cut, gone, replaced, intact = (Path(row.uri) for row in rows)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[:1000])
    gone.unlink()
    replaced.write_bytes(b"<html>not audio</html>".ljust(replaced.stat().st_size, b" "))

    audit = audit_archive(str(tmp_path), ["saigon"])
    found = {problem.cdr_id: (problem.kind, problem.problem) for problem in audit.problems}
    assert found == {
        rows[0].cdr_id: ("sha256", "sha256 differs from the manifest (the bytes changed)"),
        rows[1].cdr_id: ("size", f"size 1000 bytes, manifest says {rows[1].bytes}"),
        rows[2].cdr_id: ("missing", "file is missing"),
        rows[3].cdr_id: (
            "header",
            "sha256 differs from the manifest and header is not audio: content is neither WAV "
            "nor MP3 (unrecognised header)",
        ),
    }
    assert intact.exists() and audit.checked == 5
    assert audit.problem_count == 4 and audit.problem_kinds["missing"] == 1
    assert {p.path for p in audit.problems} == {
        f"saigon/2026/06/27/{Path(row.uri).name}" for row in rows[:4]
    }


def test_a_sample_reads_only_that_many(make_simulator, tmp_path: Path) -> None:
    sim = make_simulator(calls_per_day=20)
    archive_day(sim, tmp_path, "saigon", DAY, 5)
    audit = audit_archive(str(tmp_path), ["saigon"], sample=2, seed=1)
    assert (audit.archived, audit.checked) == (5, 2)


def test_a_sample_is_reproducible_by_seed_and_reaches_every_day(
    make_simulator, tmp_path: Path
) -> None:
    sim = make_simulator(calls_per_day=20)
    days = [DAY + timedelta(days=n) for n in range(3)]
    for day in days:
        for row in archive_day(sim, tmp_path, "saigon", day, 4):
            Path(row.uri).unlink()  # so every file read is listed: the list is the sample

    def sample(seed: str, size: int) -> list[tuple[date, str]]:
        audit = audit_archive(str(tmp_path), ["saigon"], sample=size, seed=seed)
        assert (audit.archived, audit.checked, audit.problem_count) == (12, size, size)
        return [(p.call_date, p.cdr_id) for p in audit.problems]

    assert sample("run-1", 5) == sample("run-1", 5)
    assert {day for day, _ in sample("run-1", 3)} == set(days)  # one from each day
    assert len({tuple(sample(f"run-{n}", 5)) for n in range(5)}) > 1
    days_read = {sample(f"run-{n}", 1)[0][0] for n in range(30)}
    assert days_read == set(days)  # a day a run, every day over time


@pytest.mark.parametrize(
    ("counts", "sample", "expected_sum"),
    [([10, 0, 5], 20, 15), ([10, 0, 5, 1], 3, 3), ([100, 1, 1, 10], 12, 12), ([7], 3, 3)],
)
def test_allocation_gives_each_day_one_before_any_gets_two(
    counts: list[int], sample: int, expected_sum: int
) -> None:
    for seed in range(20):
        quotas = allocate_sample(counts, sample, random.Random(seed))
        assert sum(quotas) == expected_sum
        assert all(0 <= q <= n for q, n in zip(quotas, counts, strict=True))
        if sample >= sum(1 for n in counts if n):
            assert all(q >= 1 for q, n in zip(quotas, counts, strict=True) if n)
    assert allocate_sample([100, 1, 1, 10], 12, random.Random(0))[0] >= 8  # by size after that


def test_problems_are_all_counted_but_only_the_first_kept(make_simulator, tmp_path: Path) -> None:
    rows = archive_day(make_simulator(calls_per_day=20), tmp_path, "saigon", DAY, 5)
    for row in rows:
        Path(row.uri).unlink()
    audit = audit_archive(str(tmp_path), ["saigon"], keep_problems=2)
    assert (audit.problem_count, len(audit.problems), audit.checked) == (5, 2, 5)


def test_a_row_rewritten_while_its_file_was_read_is_checked_again(
    make_simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recordings run repairs a file and rewrites its manifest row after the audit read the
    old row: the audit holds the file against the row as it is now."""
    sim = make_simulator(calls_per_day=20)
    rows = archive_day(sim, tmp_path, "saigon", DAY, 2)
    stale = replace(rows[0], sha256="0" * 64)  # what the audit read; the repair fixed it since
    write_manifest(str(tmp_path), "saigon", DAY, [stale, rows[1]])

    real = audit_module.read_manifest_table
    calls = []

    def manifest_then_repair(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # the confirmation read: the repair has rewritten the row by now
            write_manifest(str(tmp_path), "saigon", DAY, rows)
        return real(*args, **kwargs)

    monkeypatch.setattr(audit_module, "read_manifest_table", manifest_then_repair)
    audit = audit_archive(str(tmp_path), ["saigon"])
    assert (audit.checked, audit.problems, len(calls)) == (2, [], 2)


def test_a_manifest_written_before_recorded_at_existed_is_still_audited(
    make_simulator, tmp_path: Path
) -> None:
    rows = archive_day(make_simulator(calls_per_day=20), tmp_path, "saigon", DAY, 2)
    path = tmp_path / "recordings" / "pbx=saigon" / f"call_date={DAY}" / "data.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["recorded_at"]), path)
    assert read_manifest(str(tmp_path), "saigon", DAY)[rows[0].cdr_id].recorded_at is None
    audit = audit_archive(str(tmp_path), ["saigon"], sample=1, seed=0)
    assert (audit.checked, audit.problems) == (1, [])


def test_archive_path_is_relative_to_the_root_whatever_the_root() -> None:
    assert archive_path("s3://bucket/pbx/hq/2026/06/27/x.wav") == "hq/2026/06/27/x.wav"
    assert archive_path("/srv/rec/hq/2026/06/27/x.mp3") == "hq/2026/06/27/x.mp3"
