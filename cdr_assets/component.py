"""`CdrAssetsComponent`: the `dg` front door, a `defs.yaml` over the config models and factory
that `cdr_assets.yaml` users get.

Owns the mapping from a `defs.yaml`'s `attributes` (`storage`, `pbxs` with the same keys as
`cdr_assets.yaml`, and `translation`) to `build_definitions`: templates are rendered except a
secret's or `base_url`'s `'{{ env.NAME }}'`, which stays a `dg.EnvVar` (read at run launch,
shown by name only); entries are validated by the config models and errors point at the line
of `defs.yaml`. It must not hold asset logic: every definition comes from the factory.

Usage (`dg scaffold defs cdr_assets.CdrAssetsComponent pbx_fleet` writes a starter)::

    type: cdr_assets.CdrAssetsComponent
    attributes:
      storage: {data_dir: ./data, duckdb_path: ./data/cdr.duckdb}
      pbxs:
        - name: hq
          vendor: yeastar
          base_url: https://192.0.2.10:8088
          timezone: Asia/Singapore
          start_date: 2026-01-01
          client_id: "{{ env.HQ_CLIENT_ID }}"
          client_secret: "{{ env.HQ_CLIENT_SECRET }}"
      translation:              # every asset; templates see pbx, asset, storage and spec
        key_prefix: telephony
        group_name: telephony
        owners: ["team:telephony"]
        tags: {pbx: "{{ pbx.name }}"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from dagster.components.resolved.errors import ResolutionException
from dagster.components.utils.translation import (
    ComponentTranslator,
    TranslationFn,
    TranslationFnResolver,
    create_component_translator_cls,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cdr_assets.assets import CdrAssetProps, CdrAssetsTranslator, build_definitions
from cdr_assets.component_scaffolder import CdrAssetsScaffolder
from cdr_assets.config import (
    CdrAssetsConfig,
    PbxConfig,
    StorageConfig,
    config_problems,
    env_template_name,
)

#: PBX keys whose value is only ever an environment reference: never rendered, so a secret
#: cannot reach the resource's config (and the UI) as a value.
SECRET_KEYS = frozenset({"client_id", "client_secret", "api_token"})
#: Storage keys that name a local directory or file when they hold no URL.
_STORAGE_PATH_KEYS = ("data_dir", "duckdb_path", "recordings_dir", "state_dir")


class _StorageAttributes(BaseModel):
    """`storage` validated where it sits in `attributes`, so its errors read `storage.<key>`."""

    model_config = ConfigDict(extra="forbid")
    storage: StorageConfig


def _render_pbx(context: dg.ResolutionContext, entry: Any) -> Any:
    """Render one `pbxs` entry's templates, leaving secrets and an env-referenced `base_url`
    as written for the config models to turn into references."""
    if not isinstance(entry, dict):
        return entry  # the config model reports what it should have been
    return {
        key: value
        if key in SECRET_KEYS or (key == "base_url" and env_template_name(value))
        else context.at_path(key).resolve_value(value)
        for key, value in entry.items()
    }


def _validated(
    context: dg.ResolutionContext, field: str, model: type[BaseModel], data: dict[str, Any]
) -> Any:
    """`model` validated from `data`; on error a `ResolutionException` (which dg shows as it
    is) whose first lines point at the first wrong key in `defs.yaml`, then one key-named line
    per problem, e.g. `pbxs[0].timezone: 'Asia/Singapur' is not an IANA time zone`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = config_problems(exc)
    lines = [str(problem) for problem in problems]
    where = ""
    tree = context.source_position_tree
    if tree is not None:
        source = tree.source_error(
            yaml_path=["attributes", *(problems[0].path or (field,))],
            inline_error_message=lines[0],
            value_error=True,
        )
        if source.file_name != "<string>":
            where = f"{source.file_name}:{source.start_line_no} - {source.location}\n"
        where += f"{source.snippet}\n" if source.snippet else ""
    raise ResolutionException(
        f"{where}CdrAssetsComponent attributes are invalid:\n  " + "\n  ".join(lines)
    )


def _rendered_if_template(context: dg.ResolutionContext, raw: Any) -> Any:
    """A whole field given as one template string (`pbxs: "{{ ... }}"`) is rendered first."""
    return context.resolve_value(raw) if isinstance(raw, str) else raw


def resolve_storage(context: dg.ResolutionContext, raw: Any) -> StorageConfig:
    """`attributes.storage` -> `StorageConfig` (templates rendered: no secret lives here)."""
    data = context.resolve_value(_rendered_if_template(context, raw) or {})
    return _validated(context, "storage", _StorageAttributes, {"storage": data}).storage


def resolve_pbxs(context: dg.ResolutionContext, raw: Any) -> list[PbxConfig]:
    """`attributes.pbxs` -> the PBX config models, secrets as `EnvRef`s."""
    entries = _rendered_if_template(context, raw)
    if isinstance(entries, list):
        entries = [_render_pbx(context.at_path(i), entry) for i, entry in enumerate(entries)]
    return _validated(context, "pbxs", CdrAssetsConfig, {"pbxs": entries}).pbxs


def _translation_vars(props: CdrAssetProps) -> dict[str, Any]:
    return {"pbx": props.pbx, "asset": props.asset, "storage": props.storage}


def storage_under(storage: StorageConfig, root: Path) -> StorageConfig:
    """`storage` with relative local paths taken from `root` (the dg project's), so data lands
    in one place whatever directory `dg launch` or the code server runs in. URLs stay."""
    anchored: dict[str, str] = {}
    for key in _STORAGE_PATH_KEYS:
        value = getattr(storage, key)
        if "://" not in value and not Path(value).is_absolute():
            anchored[key] = str(root / value)
    return storage.model_copy(update=anchored)


@dg.scaffold_with(CdrAssetsScaffolder)
class CdrAssetsComponent(dg.Component, dg.Model, dg.Resolvable):
    """PBX CDR and recording assets, checks, a job and a daily schedule per PBX, from `storage`
    and `pbxs` (the keys of `cdr_assets.yaml`; secrets as `'{{ env.NAME }}'` or `{env: NAME}`).

    Change specs with `translation` in YAML, or subclass and override `get_asset_spec`.
    """

    storage: Annotated[
        StorageConfig,
        dg.Resolver(
            resolve_storage,
            model_field_type=dict[str, Any],
            inject_before_resolve=False,
            description="Where Parquet, the DuckDB file, the recording archive and the shared "
            "state live: data_dir, duckdb_path, recordings_dir (fsspec URLs allowed), "
            "recordings_storage_options, state_dir, recordings_audit. Relative paths are from the "
            "project root.",
            examples=[{"data_dir": "./data", "duckdb_path": "./data/cdr.duckdb"}],
        ),
    ] = StorageConfig()
    pbxs: Annotated[
        list[PbxConfig],
        dg.Resolver(
            resolve_pbxs,
            model_field_type=list[dict[str, Any]],
            inject_before_resolve=False,
            description="The PBXs, with the keys of cdr_assets.yaml (name, vendor, base_url, "
            "timezone, start_date, credentials, ...). Secrets only as '{{ env.NAME }}'.",
        ),
    ]
    translation: (
        Annotated[
            TranslationFn[CdrAssetProps],
            TranslationFnResolver(template_vars_for_translation_fn=_translation_vars),
        ]
        | None
    ) = Field(
        default=None,
        description="Overrides of each asset's spec (key_prefix, key, group_name, owners, tags, "
        "automation_condition, ...); templates see `pbx` (its config), `asset` ('cdr' or "
        "'recordings'), `storage` and `spec`, so values can differ per PBX.",
    )

    def get_asset_spec(self, props: CdrAssetProps) -> dg.AssetSpec:
        """The spec before `translation`; override in a subclass to change specs in Python."""
        return CdrAssetsTranslator().get_asset_spec(props)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        config = CdrAssetsConfig(
            storage=storage_under(self.storage, context.project_root), pbxs=self.pbxs
        )
        return build_definitions(config, translator=CdrAssetsComponentTranslator(self))


class CdrAssetsComponentTranslator(
    create_component_translator_cls(CdrAssetsComponent, CdrAssetsTranslator),
    ComponentTranslator[CdrAssetsComponent],
):
    """The component's spec (its `get_asset_spec`, if a subclass overrides it, else the default
    translator's), then its `translation`; the factory asks it for every asset."""

    def get_asset_spec(self, props: CdrAssetProps) -> dg.AssetSpec:
        spec = super().get_asset_spec(props)
        translation = self.component.translation
        return translation(spec, props) if translation is not None else spec
