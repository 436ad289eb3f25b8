"""Dagster wiring: the asset factory, its translator seam, and what it builds for each PBX."""

from cdr_assets.assets.factory import DEFAULT_RETRY_POLICY, build_definitions, build_pbx_definitions
from cdr_assets.assets.translator import CdrAssetProps, CdrAssetsTranslator

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "CdrAssetProps",
    "CdrAssetsTranslator",
    "build_definitions",
    "build_pbx_definitions",
]
