"""Dagster wiring: the asset factory and what it builds for each PBX."""

from cdr_assets.assets.factory import build_definitions, build_pbx_definitions

__all__ = ["build_definitions", "build_pbx_definitions"]
