"""cdr_assets: PBX call-detail records and recordings as Dagster assets (Parquet + DuckDB).

Most users list their PBXs in `cdr_assets.yaml` and load `cdr_assets.definitions`. To assemble
your own `Definitions`, use the resources and the factory directly::

    import dagster as dg
    from cdr_assets import build_pbx_definitions, load_config

    config = load_config("cdr_assets.yaml")
    defs = dg.Definitions.merge(*(build_pbx_definitions(p, config.storage) for p in config.pbxs))

A `dg` project declares them in a `defs.yaml` instead (`dg scaffold defs
cdr_assets.CdrAssetsComponent pbx_fleet`), built by the same factory.

Exports are resolved lazily so `python -m cdr_assets.simulator` does not import Dagster; `dir()`
lists them, which is how `dg` finds the component (entry point `dagster_dg_cli.registry_modules`).
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CdrAssetsComponent": "cdr_assets.component",
    "CdrAssetProps": "cdr_assets.assets",
    "CdrAssetsTranslator": "cdr_assets.assets",
    "CdrAssetsConfig": "cdr_assets.config",
    "load_config": "cdr_assets.config",
    "YeastarResource": "cdr_assets.vendors",
    "ZorioResource": "cdr_assets.vendors",
    "build_definitions": "cdr_assets.assets",
    "build_pbx_definitions": "cdr_assets.assets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cdr_assets' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    """The module's names and the lazy exports: `dg` discovers components with `dir()`."""
    return sorted([*globals(), *_EXPORTS])
