"""Definitions for every PBX in the config file (`$CDR_ASSETS_CONFIG`, default ./cdr_assets.yaml).

`dg dev` / `dg launch` (through `[tool.dg]` in pyproject.toml) and `dagster dev -m
cdr_assets.definitions` load this module; it reads the config once and builds each PBX's assets
with the factory. A `dg` project uses `CdrAssetsComponent` instead, which does not read the file.
"""

from cdr_assets.assets import build_definitions
from cdr_assets.config import load_config

defs = build_definitions(load_config())
