"""Build one PBX's Dagster definitions from its config entry: the asset factory."""

from __future__ import annotations

import warnings

import dagster as dg

from cdr_assets.assets.cdr import build_cdr_asset
from cdr_assets.assets.partitions import daily_partitions
from cdr_assets.assets.recordings import build_recordings_asset
from cdr_assets.assets.schedules import build_daily_schedule
from cdr_assets.config import CdrAssetsConfig, PbxConfigBase, StorageConfig
from cdr_assets.vendors import VENDOR_RESOURCES


def resource_key_for(pbx: PbxConfigBase) -> str:
    return f"{pbx.name}_pbx"


def build_pbx_definitions(
    pbx: PbxConfigBase,
    storage: StorageConfig,
    *,
    retry_policy: dg.RetryPolicy | None = None,
) -> dg.Definitions:
    """`<name>/cdr`, `<name>/recordings` (with their checks), the PBX's API resource, a job and
    its daily schedule. Secrets stay `dg.EnvVar`s, resolved by Dagster at run launch."""
    partitions = daily_partitions(pbx)
    resource_key = resource_key_for(pbx)
    resource = VENDOR_RESOURCES[pbx.vendor](**pbx.resource_settings())
    with warnings.catch_warnings():
        # BackfillPolicy is beta, yet it is Dagster's way to run a range of days as one run.
        warnings.simplefilter("ignore", dg.BetaWarning)
        cdr = build_cdr_asset(pbx, storage, partitions, resource_key, retry_policy)
        assets = [cdr]
        if pbx.archive_recordings:
            assets.append(build_recordings_asset(pbx, storage, partitions, resource_key, cdr.key))
    job = dg.define_asset_job(f"{pbx.name}_daily_job", selection=assets)
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        schedules=[build_daily_schedule(pbx, job)],
        resources={resource_key: resource},
    )


def build_definitions(
    config: CdrAssetsConfig, *, retry_policy: dg.RetryPolicy | None = None
) -> dg.Definitions:
    """Every PBX of one config; the entry point for users assembling their own Definitions."""
    return dg.Definitions.merge(
        *(
            build_pbx_definitions(pbx, config.storage, retry_policy=retry_policy)
            for pbx in config.pbxs
        )
    )
