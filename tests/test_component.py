"""CdrAssetsComponent in process: a `defs.yaml` in a temp `dg` project, loaded as dg loads it
(`dg.ComponentTree`), builds the same definitions as `cdr_assets.yaml`; secrets stay EnvVars;
`translation` and a Python `get_asset_spec` change the specs, and a translated fleet still runs
its job against the simulator; bad attributes fail naming the key and the defs.yaml line."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml
from dagster.components.resolved.errors import ResolutionException

import cdr_assets
from cdr_assets import CdrAssetsComponent
from cdr_assets.assets import CdrAssetProps, build_definitions
from cdr_assets.config import EnvRef, parse_config
from cdr_assets.simulator import Simulator
from tests.fixtures.dg_project import write_dg_project

DAY = date(2026, 6, 27)
SECRET = "s3cr3t-never-shown"
SIM_SECRETS = {
    "T_HQ_CLIENT_ID": "demo-client",
    "T_HQ_CLIENT_SECRET": "demo-secret",
    "T_SAIGON_TOKEN": "demo-token",
}
TRANSLATION = {
    "key_prefix": "telephony",
    "group_name": "telephony",
    "owners": ["team:telephony"],
    "tags": {"pbx": "{{ pbx.name }}", "asset": "{{ asset }}"},
}


def fleet(base_url: str = "https://192.0.2.10:8088", **hq: Any) -> dict[str, Any]:
    """`attributes` with one PBX of each vendor, secrets as dg templates."""
    return {
        "storage": {"data_dir": "./data", "duckdb_path": "./data/cdr.duckdb"},
        "pbxs": [
            {
                "name": "hq",
                "vendor": "yeastar",
                "base_url": base_url,
                "timezone": "Asia/Singapore",
                "start_date": "2026-01-01",
                "client_id": "{{ env.T_HQ_CLIENT_ID }}",
                "client_secret": "{{ env.T_HQ_CLIENT_SECRET }}",
                **hq,
            },
            {
                "name": "saigon",
                "vendor": "zorio",
                "base_url": base_url,
                "timezone": "Asia/Ho_Chi_Minh",
                "start_date": "2026-01-01",
                "api_token": {"env": "T_SAIGON_TOKEN"},
            },
        ],
    }


class Project:
    """A temp dg project with one component at `defs/pbx_fleet/defs.yaml`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.package = f"fleet_{uuid.uuid4().hex[:8]}"
        self.defs_yaml = write_dg_project(root, self.package) / "pbx_fleet" / "defs.yaml"
        self.defs_yaml.parent.mkdir()

    def write(self, attributes: dict[str, Any], type_name: str = "cdr_assets.CdrAssetsComponent"):
        document = {"type": type_name, "attributes": attributes}
        self.defs_yaml.write_text(yaml.safe_dump(document, sort_keys=False))

    def tree(self) -> dg.ComponentTree:
        return dg.ComponentTree.for_project(self.root / self.package)

    def component(self) -> CdrAssetsComponent:
        return self.tree().load_component("pbx_fleet", CdrAssetsComponent)

    def defs(self) -> dg.Definitions:
        return self.tree().build_defs("pbx_fleet")

    def load_error(self) -> str:
        """The message dg shows for a component that fails to load (the cause's text)."""
        with pytest.raises(Exception) as raised:
            self.component()
        cause = raised.value.__cause__
        assert isinstance(cause, ResolutionException), raised.value
        return str(cause)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    for name, value in SIM_SECRETS.items():
        monkeypatch.setenv(name, value)
    made = Project(tmp_path / "proj")
    monkeypatch.syspath_prepend(str(made.root))
    yield made
    for module in [m for m in sys.modules if m.split(".")[0] == made.package]:
        del sys.modules[module]


def keys(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_all_asset_keys()}


def check_keys(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_asset_graph().asset_check_keys}


def spec_of(defs: dg.Definitions, key: str) -> dg.AssetSpec:
    return next(s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == key)


# --------------------------------------------------------------------------- what it builds


def test_each_pbx_gets_its_assets_checks_job_and_schedule(project: Project) -> None:
    project.write(fleet())
    defs = project.defs()
    assert keys(defs) == {
        "hq/cdr",
        "hq/recordings",
        "saigon/cdr",
        "saigon/recordings",
        "analytics/cdr_daily_kpis",
    }
    assert {
        "hq/cdr:cdr_id_unique",
        "hq/cdr:cdr_complete",
        "hq/cdr:no_rejected_records",
        "hq/cdr:cdr_in_query_window",
        "hq/recordings:every_recording_archived",
        "saigon/cdr:cdr_complete",
        "saigon/recordings:every_recording_archived",
        "saigon/recordings:recordings_audit",
    } <= check_keys(defs)
    assert {job.name for job in defs.jobs or []} == {
        "hq_daily_job",
        "saigon_daily_job",
        "hq_recordings_audit_job",
        "saigon_recordings_audit_job",
    }
    assert {s.name for s in defs.schedules or []} == {
        "hq_daily",
        "saigon_daily",
        "hq_recordings_audit",
        "saigon_recordings_audit",
    }
    assert set(defs.resources or {}) == {"hq_pbx", "saigon_pbx", "cdr_duckdb"}
    assert spec_of(defs, "saigon/cdr").group_name == "saigon"
    dg.Definitions.validate_loadable(defs)


def test_the_component_and_the_config_file_build_the_same_definitions(
    project: Project, tmp_path: Path
) -> None:
    attributes = fleet()
    attributes["storage"] = {  # absolute: the file's paths are not anchored
        "data_dir": str(tmp_path / "data"),
        "duckdb_path": str(tmp_path / "data" / "cdr.duckdb"),
        "recordings_dir": str(tmp_path / "data" / "recordings"),
    }
    project.write(attributes)
    from_yaml = project.defs()
    from_file = build_definitions(parse_config(attributes))

    def shape(defs: dg.Definitions) -> dict[str, Any]:
        specs = sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string())
        return {
            "specs": [(s.key, s.group_name, s.description, s.kinds, s.tags) for s in specs],
            "checks": check_keys(defs),
            "schedules": {(s.name, s.cron_schedule, s.execution_timezone) for s in defs.schedules},
            "resources": {k: repr(v) for k, v in (defs.resources or {}).items()},
        }

    assert shape(from_yaml) == shape(from_file)


def test_python_users_construct_it_from_the_config_models() -> None:
    config = parse_config(fleet())
    component = CdrAssetsComponent(storage=config.storage, pbxs=config.pbxs)
    defs = dg.component_defs(component=component)
    assert keys(defs) == {
        "hq/cdr",
        "hq/recordings",
        "saigon/cdr",
        "saigon/recordings",
        "analytics/cdr_daily_kpis",
    }


def test_lazy_exports_are_listed_so_dg_finds_the_component() -> None:
    assert {"CdrAssetsComponent", "CdrAssetsTranslator", "CdrAssetProps"} <= set(dir(cdr_assets))
    assert cdr_assets.CdrAssetsComponent is CdrAssetsComponent


# --------------------------------------------------------------------------- secrets


def test_secrets_stay_env_var_references_and_never_reach_the_resource(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_HQ_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("T_HQ_URL", "https://192.0.2.10:8088")
    project.write(fleet(base_url="{{ env.T_HQ_URL }}"))
    component = project.component()
    hq, saigon = component.pbxs
    assert hq.client_secret == EnvRef(env="T_HQ_CLIENT_SECRET")
    assert saigon.api_token == EnvRef(env="T_SAIGON_TOKEN")  # the {env: X} spelling too
    resources = project.defs().resources or {}
    assert resources["hq_pbx"].client_secret == dg.EnvVar("T_HQ_CLIENT_SECRET")
    assert resources["hq_pbx"].client_id == dg.EnvVar("T_HQ_CLIENT_ID")
    assert resources["hq_pbx"].base_url == dg.EnvVar("T_HQ_URL")  # resolved at launch
    assert resources["saigon_pbx"].api_token == dg.EnvVar("T_SAIGON_TOKEN")
    shown = repr(resources["hq_pbx"]) + repr(component)
    assert SECRET not in shown and "demo-token" not in shown


def test_a_template_in_any_other_key_is_rendered_at_load(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_HQ_ZONE", "Asia/Singapore")
    project.write(fleet(timezone="{{ env.T_HQ_ZONE }}", page_size="{{ 250 }}"))
    hq = project.component().pbxs[0]
    assert hq.timezone == "Asia/Singapore" and hq.page_size == 250


# --------------------------------------------------------------------------- translation


@pytest.fixture
def sim(make_simulator: Callable[..., Simulator]) -> Simulator:
    return make_simulator(calls_per_day=24)


def test_a_translated_fleet_runs_its_job_and_schedule_on_the_translated_keys(
    project: Project, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_SIM_URL", sim.base_url)
    attributes = fleet(base_url="{{ env.T_SIM_URL }}", max_retries=2)
    project.write({**attributes, "translation": TRANSLATION})
    defs = project.defs()
    assert keys(defs) == {
        "telephony/hq/cdr",
        "telephony/hq/recordings",
        "telephony/saigon/cdr",
        "telephony/saigon/recordings",
        "analytics/cdr_daily_kpis",  # the fleet's, not a PBX's: not translated
    }
    cdr, recordings = spec_of(defs, "telephony/hq/cdr"), spec_of(defs, "telephony/hq/recordings")
    assert {cdr.group_name, recordings.group_name} == {"telephony"}
    assert cdr.owners == ["team:telephony"]
    assert cdr.tags["pbx"] == "hq" and recordings.tags["asset"] == "recordings"
    assert "dagster/kind/yeastar" in cdr.tags  # merged, not replaced
    assert [dep.asset_key for dep in recordings.deps] == [cdr.key]
    analytics = spec_of(defs, "analytics/cdr_daily_kpis")
    assert {dep.asset_key.to_user_string() for dep in analytics.deps} == {
        "telephony/hq/cdr",
        "telephony/saigon/cdr",
    }
    translated_checks = {
        "telephony/hq/cdr:cdr_complete",
        "telephony/hq/recordings:every_recording_archived",
        "telephony/hq/recordings:recordings_audit",
    }
    assert translated_checks <= check_keys(defs)

    schedule = defs.resolve_schedule_def("hq_daily")
    tick = datetime(2026, 6, 28, 2, 0, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        requests = list(schedule(context))
    assert [r.partition_key for r in requests] == ["2026-06-26", "2026-06-27"]
    assert schedule.job_name == "hq_daily_job"

    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("hq_daily_job").execute_in_process(
            partition_key=DAY.isoformat(), instance=instance
        )
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"telephony/hq/cdr", "telephony/hq/recordings"}
    evaluations = result.get_asset_check_evaluations()
    assert {e.asset_key.to_user_string() for e in evaluations} == materialized
    assert all(e.passed for e in evaluations)
    with duckdb.connect(str(project.root / "data" / "cdr.duckdb"), read_only=True) as con:
        (rows,) = con.execute(
            "select count(*) from cdr where pbx = 'hq' and call_date = ?", [DAY]
        ).fetchone()
    assert rows == len(sim.calls("yeastar", DAY)) > 0


def test_translation_values_can_differ_per_pbx(project: Project) -> None:
    on_cron = "dg.AutomationCondition.on_cron('0 3 * * *', cron_timezone=pbx.timezone)"
    project.write(
        {
            **fleet(),
            "translation": {
                "group_name": "cdr_{{ pbx.name }}",
                "automation_condition": f"{{{{ {on_cron} if pbx.name == 'hq' else None }}}}",
            },
        }
    )
    defs = project.defs()
    hq, saigon = spec_of(defs, "hq/cdr"), spec_of(defs, "saigon/cdr")
    assert (hq.group_name, saigon.group_name) == ("cdr_hq", "cdr_saigon")
    assert hq.automation_condition is not None and saigon.automation_condition is None
    assert "Asia/Singapore" in (hq.automation_condition.get_label() or "")


class OwnedFleet(CdrAssetsComponent):
    """A Python override: every asset owned by its PBX's team, under `pbx/`."""

    def get_asset_spec(self, props: CdrAssetProps) -> dg.AssetSpec:
        spec = super().get_asset_spec(props)
        return spec.replace_attributes(
            key=spec.key.with_prefix("pbx"), owners=[f"team:{props.pbx.name}"]
        )


def test_a_python_get_asset_spec_override_runs_before_the_translation(project: Project) -> None:
    component = OwnedFleet.resolve_from_dict(
        {**fleet(), "translation": {"key_prefix": "telephony", "tags": {"site": "{{ pbx.name }}"}}}
    )
    defs = dg.component_defs(component=component)
    spec = spec_of(defs, "telephony/pbx/saigon/recordings")
    assert spec.owners == ["team:saigon"] and spec.tags["site"] == "saigon"
    assert [d.asset_key.to_user_string() for d in spec.deps] == ["telephony/pbx/saigon/cdr"]
    assert "telephony/pbx/saigon/cdr:cdr_id_unique" in check_keys(defs)


# --------------------------------------------------------------------------- storage


def test_relative_storage_paths_are_taken_from_the_project_root(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attributes = fleet()
    attributes["storage"] = {"data_dir": "./data", "recordings_dir": "s3://bucket/recordings"}
    project.write(attributes)
    monkeypatch.chdir(tmp_path)  # not the project root
    resources = project.defs().resources or {}
    assert resources["hq_pbx"].auth_state_dir == str(project.root / "data" / ".state")
    component = project.component()
    assert component.storage.recordings_dir == "s3://bucket/recordings"
    assert component.storage.data_dir == "./data"  # as written; anchored when built


# --------------------------------------------------------------------------- errors


def test_a_bad_time_zone_is_named_with_its_defs_yaml_line(project: Project) -> None:
    project.write(fleet(timezone="Asia/Singapur"))
    message = project.load_error()
    lines = project.defs_yaml.read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if "Asia/Singapur" in text)
    assert message.startswith(f"{project.defs_yaml}:{line} - attributes.pbxs.0.timezone")
    assert "pbxs[0].timezone: 'Asia/Singapur' is not an IANA time zone" in message
    assert "^ pbxs[0].timezone" in message  # the caret under the value


def test_every_problem_is_listed_by_key_and_no_secret_is_echoed(project: Project) -> None:
    attributes = fleet(name="HQ", client_secret=SECRET, colour="blue")
    attributes["storage"]["state_dir"] = "s3://bucket/state"
    project.write(attributes)
    problems = project.load_error().split("CdrAssetsComponent attributes are invalid:\n")[1]
    assert "storage: state_dir 's3://bucket/state' must be a local directory path" in problems
    project.write(fleet(name="HQ", client_secret=SECRET, colour="blue"))
    problems = project.load_error().split("CdrAssetsComponent attributes are invalid:\n")[1]
    assert problems.splitlines() == [
        "  pbxs[0].name: 'HQ' must match [a-z0-9_]+ (it becomes the asset key prefix)",
        "  pbxs[0].client_secret: secrets are given only by environment reference, e.g. "
        "{env: HQ_SECRET} or '{{ env.HQ_SECRET }}'",
        "  pbxs[0].colour: Extra inputs are not permitted",
    ]
    assert SECRET not in project.load_error()


def test_an_unset_variable_in_a_rendered_key_names_that_key(project: Project) -> None:
    project.write(fleet(timezone="{{ env.T_NOT_SET_ANYWHERE }}"))
    assert "pbxs[0].timezone: Input should be a valid string" in project.load_error()


def test_a_duplicate_name_and_a_whole_field_template_are_validated(project: Project) -> None:
    attributes = fleet()
    attributes["pbxs"][1] = {**attributes["pbxs"][0]}
    project.write(attributes)
    assert "pbxs[1].name 'hq' is used twice" in project.load_error()
    attributes = fleet()
    attributes["storage"] = "{{ {'data_dir': 's3://bucket/cdr', 'state_dir': 's3://b/s'} }}"
    project.write(attributes)
    assert "storage: state_dir 's3://b/s' must be a local directory path" in project.load_error()
