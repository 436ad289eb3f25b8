"""cdr_assets: PBX call-detail records and recordings as Dagster assets (Parquet + DuckDB).

Most users list their PBXs in `cdr_assets.yaml` and load `cdr_assets.definitions`. To assemble
your own `Definitions`, use the resources and the factory directly::

    import dagster as dg
    from cdr_assets import build_pbx_definitions, load_config

    config = load_config("cdr_assets.yaml")
    defs = dg.Definitions.merge(*(build_pbx_definitions(p, config.storage) for p in config.pbxs))

Exports are resolved lazily so `python -m cdr_assets.simulator` does not import Dagster.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
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
