"""`<name>/recordings_audit` through Dagster: the archive the daily job wrote from the simulator,
re-read by the audit's own job on the same instance, intact and then damaged."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from cdr_assets import verify_archive
from cdr_assets.assets.recordings_audit import RECORDINGS_AUDIT, audit_window
from cdr_assets.storage.audit import FINDING_KINDS
from cdr_assets.storage.manifest import read_manifest
from tests.assets.conftest import DAY, Pipeline

ALL_DAYS = {"recordings_audit": {"days": "all", "sample": "all"}}


def _run_job(pipeline: Pipeline, name: str, **kwargs: Any) -> dg.ExecuteInProcessResult:
    job = pipeline.defs.resolve_job_def(name)
    return job.execute_in_process(instance=pipeline.instance, raise_on_error=False, **kwargs)


def _audit(pipeline: Pipeline, pbx: str) -> dg.AssetCheckEvaluation:
    result = _run_job(pipeline, f"{pbx}_recordings_audit_job")
    assert result.success
    assert not result.get_asset_materialization_events()  # nothing re-materialized
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.asset_key, evaluation.check_name) == (
        dg.AssetKey([pbx, "recordings"]),
        RECORDINGS_AUDIT,
    )
    return evaluation


def _archived_day(pipeline: Pipeline, pbx: str) -> list[Any]:
    """Materialize DAY with the PBX's daily job; its checks are the step's, not the audit."""
    result = _run_job(pipeline, f"{pbx}_daily_job", partition_key=DAY.isoformat())
    assert result.success
    names = {e.check_name for e in result.get_asset_check_evaluations()}
    assert "every_recording_archived" in names and RECORDINGS_AUDIT not in names
    rows = list(read_manifest(pipeline.config.storage.data_dir, pbx, DAY).values())
    assert len(rows) >= 4 and {row.status for row in rows} == {"archived"}
    return rows


def _value(evaluation: dg.AssetCheckEvaluation, key: str) -> Any:
    return evaluation.metadata[key].value


@pytest.mark.parametrize("pbx", ["hq", "saigon"])
def test_an_intact_archive_passes_having_read_every_file(
    make_pipeline: Callable[..., Pipeline], pbx: str
) -> None:
    pipeline = make_pipeline(storage=ALL_DAYS)
    rows = _archived_day(pipeline, pbx)
    evaluation = _audit(pipeline, pbx)
    assert evaluation.passed, evaluation.description
    assert not evaluation.blocking
    assert (_value(evaluation, "checked"), _value(evaluation, "archived")) == (len(rows), len(rows))
    assert _value(evaluation, "mb_read") == round(sum(row.bytes for row in rows) / 1e6, 3)
    assert _value(evaluation, "problems") == 0 and _value(evaluation, "days") == 1


def test_bit_rot_truncation_deletion_and_a_broken_header_fail_listing_each_file(
    make_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    pipeline = make_pipeline(storage=ALL_DAYS)
    rows = _archived_day(pipeline, "saigon")
    flipped, cut, gone, garbled = (Path(row.uri) for row in rows[:4])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[:-100])
    gone.unlink()
    head = garbled.read_bytes()
    garbled.write_bytes(b"\0" * 44 + head[44:])

    evaluation = _audit(pipeline, "saigon")
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert _value(evaluation, "checked") == len(rows)
    assert _value(evaluation, "problems") == 4
    kinds = {k: _value(evaluation, f"problems_{k}") for k in FINDING_KINDS}
    assert kinds == dict.fromkeys(FINDING_KINDS, 0) | dict.fromkeys(
        ["sha256", "size", "missing", "header"], 1
    )
    listed = _value(evaluation, "problem_files")
    for path, why in [
        (flipped, "sha256 differs from the manifest (the bytes changed)"),
        (cut, f"size {rows[1].bytes - 100} bytes, manifest says {rows[1].bytes}"),
        (gone, "file is missing"),
        (garbled, "header is not audio"),
    ]:
        relative = path.relative_to(Path(pipeline.config.storage.recordings_dir)).as_posix()
        line = next(line for line in listed.splitlines() if f"`{relative}`" in line)
        assert why in line and line.startswith(f"- {DAY} ")
    assert str(tmp_path) not in listed and str(tmp_path) not in (evaluation.description or "")
    assert "4 of" in (evaluation.description or "")


def test_a_run_of_days_skips_it_and_executing_it_alone_evaluates_it(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """`dg launch --assets hq/cdr,hq/recordings --partition ...` and the UI's Materialize select
    every check of the assets, the audit too: such a run leaves it out; executing the check on
    its own (the UI's Execute) runs it."""
    pipeline = make_pipeline(storage=ALL_DAYS)
    everything = pipeline.defs.resolve_implicit_global_asset_job_def()
    keys = {dg.AssetKey(["hq", "cdr"]), dg.AssetKey(["hq", "recordings"])}
    days = everything.get_subset(asset_selection=keys)
    audit_key = dg.AssetCheckKey(dg.AssetKey(["hq", "recordings"]), RECORDINGS_AUDIT)
    assert audit_key in days.asset_layer.asset_graph.asset_check_keys  # selected, as by dg launch
    result = days.execute_in_process(
        partition_key=DAY.isoformat(), instance=pipeline.instance, raise_on_error=False
    )
    assert result.success
    assert result.get_asset_materialization_events()
    names = {e.check_name for e in result.get_asset_check_evaluations()}
    assert "every_recording_archived" in names and RECORDINGS_AUDIT not in names
    alone = everything.get_subset(asset_selection=set(), asset_check_selection={audit_key})
    result = alone.execute_in_process(instance=pipeline.instance)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and _value(evaluation, "checked") > 0


def test_a_sample_reads_that_many_seeded_by_the_run_and_the_shell_reads_it_again(
    make_pipeline: Callable[..., Pipeline], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = make_pipeline(zorio={"recordings_audit": {"sample": 3}}, storage=ALL_DAYS)
    rows = _archived_day(pipeline, "saigon")
    evaluation = _audit(pipeline, "saigon")
    assert evaluation.passed
    assert (_value(evaluation, "checked"), _value(evaluation, "archived")) == (3, len(rows))
    runs = pipeline.instance.get_run_records()
    assert _value(evaluation, "seed") == f"saigon:{runs[0].dagster_run.run_id}"

    for row in rows:
        Path(row.uri).unlink()  # every file gone: each audit lists exactly what it read
    first = _audit(pipeline, "saigon")
    assert _value(first, "problems") == 3
    listed = _value(first, "problem_files")
    command = _value(first, "same_sample_from_the_shell")
    assert command.startswith("cdr_assets verify-archive --pbx saigon --to ")
    config = tmp_path / "cdr_assets.yaml"
    config.write_text(yaml.safe_dump(pipeline.config.model_dump(mode="json")))
    capsys.readouterr()
    assert verify_archive.main([*shlex.split(command)[2:], "--config", str(config)]) == 1
    printed = capsys.readouterr().out
    assert "checked 3 of" in printed
    read_again = {line.split()[2].rstrip(":") for line in printed.splitlines()[1:]}
    assert read_again == {
        line.split("`")[1].rsplit("/", 1)[1].split(".")[0] for line in listed.splitlines()
    }


def test_the_audit_has_its_own_job_and_schedule_and_the_daily_job_leaves_it_out(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(
        yeastar={"recordings_audit": {"cron": "30 4 * * 6"}},
        zorio={"archive_recordings": False},
        storage={"recordings_audit": {"cron": None}},
    )
    defs = pipeline.defs
    schedule = defs.resolve_schedule_def("hq_recordings_audit")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
        "30 4 * * 6",
        pipeline.config.pbxs[0].timezone,
        "hq_recordings_audit_job",
    )
    audit_key = dg.AssetCheckKey(dg.AssetKey(["hq", "recordings"]), RECORDINGS_AUDIT)
    graph = defs.resolve_asset_graph()
    audit_job = defs.resolve_job_def("hq_recordings_audit_job")
    assert audit_job.asset_layer.asset_graph.asset_check_keys == {audit_key}
    assert not audit_job.asset_layer.executable_asset_keys  # materializes nothing
    daily = defs.resolve_job_def("hq_daily_job").asset_layer.asset_graph.asset_check_keys
    assert audit_key not in daily
    assert dg.AssetCheckKey(dg.AssetKey(["hq", "recordings"]), "every_recording_archived") in daily
    # no recordings, no audit; a null cron keeps the check but drops its schedule
    assert not any(
        key.asset_key.path[0] == "saigon"
        for key in graph.asset_check_keys
        if key.name == RECORDINGS_AUDIT
    )
    names = {s.name for s in defs.schedules or []}
    assert "saigon_recordings_audit" not in names and "hq_recordings_audit" in names
    only_check = make_pipeline(storage={"recordings_audit": {"cron": None}}).defs
    assert {s.name for s in only_check.schedules or []} == {"hq_daily", "saigon_daily"}
    only_check.resolve_job_def("saigon_recordings_audit_job")


def test_a_schedule_tick_requests_the_audit_job(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline()
    schedule = pipeline.defs.resolve_schedule_def("saigon_recordings_audit")
    assert schedule.cron_schedule == "0 3 * * 0"  # the default: Sundays 03:00 local
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 6, 28, 3, 0, tzinfo=UTC),
        repository_def=pipeline.defs.get_repository_def(),
    )
    (request,) = schedule.evaluate_tick(context).run_requests or []
    assert request.partition_key is None and request.asset_selection is None


def test_the_window_is_the_last_days_before_the_pbx_s_today(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(yeastar={"start_date": "2026-06-20"})
    hq = pipeline.config.pbxs[0]  # Asia/Singapore, UTC+8
    settings = hq.audit_settings(pipeline.config.storage)
    now = datetime(2026, 6, 27, 17, 0, tzinfo=UTC)  # already 06-28 01:00 in Singapore
    assert audit_window(hq, settings, now) == (date(2026, 6, 20), date(2026, 6, 27))
    short = settings.model_copy(update={"days": 3})
    assert audit_window(hq, short, now) == (date(2026, 6, 25), date(2026, 6, 27))
    every = settings.model_copy(update={"days": "all"})
    assert audit_window(hq, every, now) == (None, date(2026, 6, 27))
