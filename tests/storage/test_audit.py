"""The archive audit against files on disk: intact, changed, truncated, deleted, not audio."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from cdr_assets.storage.audit import audit_archive, manifest_days
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
    found = {problem.cdr_id: problem.problem for problem in audit.problems}
    assert found == {
        rows[0].cdr_id: "sha256 differs from the manifest (the bytes changed)",
        rows[1].cdr_id: f"size 1000 bytes, manifest says {rows[1].bytes}",
        rows[2].cdr_id: "file is missing",
        rows[3].cdr_id: found[rows[3].cdr_id],
    }
    assert found[rows[3].cdr_id].startswith("sha256 differs")  # same size, other bytes
    assert intact.exists() and audit.checked == 5


def test_a_sample_reads_only_that_many(make_simulator, tmp_path: Path) -> None:
    sim = make_simulator(calls_per_day=20)
    archive_day(sim, tmp_path, "saigon", DAY, 5)
    audit = audit_archive(str(tmp_path), ["saigon"], sample=2, seed=1)
    assert (audit.archived, audit.checked) == (5, 2)
