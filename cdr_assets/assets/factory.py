"""Build one PBX's Dagster definitions from its config entry: the asset factory.

Both front doors use it: `cdr_assets.definitions` (the `cdr_assets.yaml` file) and the `dg`
Component (`defs.yaml`); Python users call `build_definitions` / `build_pbx_definitions`.
"""

from __future__ import annotations

import warnings

import dagster as dg

from cdr_assets.assets.analytics import build_analytics_definitions
from cdr_assets.assets.partitions import daily_partitions
from cdr_assets.assets.pbx_assets import build_pbx_assets
from cdr_assets.assets.recordings_audit import build_recordings_audit_definitions
from cdr_assets.assets.schedules import build_daily_schedule
from cdr_assets.assets.translator import CdrAssetProps, CdrAssetsTranslator
from cdr_assets.config import CdrAssetsConfig, PbxConfigBase, StorageConfig
from cdr_assets.vendors import VENDOR_RESOURCES

#: A whole-step retry for what the clients' own HTTP retries could not absorb (a PBX restart).
#: Only transient faults reach it: answers that will not change and refused credentials fail
#: the step with `allow_retries=False`.
DEFAULT_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL)


def resource_key_for(pbx: PbxConfigBase) -> str:
    return f"{pbx.name}_pbx"


def build_pbx_definitions(
    pbx: PbxConfigBase,
    storage: StorageConfig,
    *,
    retry_policy: dg.RetryPolicy | None = DEFAULT_RETRY_POLICY,
    translator: CdrAssetsTranslator | None = None,
) -> dg.Definitions:
    """`<name>/cdr`, `<name>/recordings` (with their checks), the PBX's API resource, a job and
    its daily schedule. Secrets stay `dg.EnvVar`s, resolved by Dagster at run launch."""
    partitions = daily_partitions(pbx)
    resource_key = resource_key_for(pbx)
    resource = VENDOR_RESOURCES[pbx.vendor](**pbx.resource_settings(storage))
    translator = translator or CdrAssetsTranslator()
    with warnings.catch_warnings():
        # Partitioned check specs are a preview, yet they are how a check has a result per day.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        assets = build_pbx_assets(
            pbx,
            storage,
            partitions,
            resource_key,
            translator=translator,
            retry_policy=retry_policy,
        )
    audit = build_recordings_audit_definitions(pbx, storage, translator)
    # The audit runs in its own job only: the daily job has the step's own checks.
    selection = dg.AssetSelection.assets(assets) - dg.AssetSelection.checks(
        *(audit.asset_checks or [])
    )
    job = dg.define_asset_job(f"{pbx.name}_daily_job", selection=selection)
    daily = dg.Definitions(
        assets=[assets],
        jobs=[job],
        schedules=[build_daily_schedule(pbx, job.name)],
        resources={resource_key: resource},
    )
    return dg.Definitions.merge(daily, audit)


def build_definitions(
    config: CdrAssetsConfig,
    *,
    retry_policy: dg.RetryPolicy | None = DEFAULT_RETRY_POLICY,
    translator: CdrAssetsTranslator | None = None,
) -> dg.Definitions:
    """Every PBX of one config, and the fleet's `analytics/cdr_daily_kpis` over their `cdr`
    assets; the entry point for users assembling their own Definitions."""
    translator = translator or CdrAssetsTranslator()
    cdr_keys = {
        pbx.name: translator.get_asset_spec(CdrAssetProps(pbx, "cdr", config.storage)).key
        for pbx in config.pbxs
    }
    return dg.Definitions.merge(
        *(
            build_pbx_definitions(
                pbx, config.storage, retry_policy=retry_policy, translator=translator
            )
            for pbx in config.pbxs
        ),
        build_analytics_definitions(config.pbxs, config.storage, cdr_keys),
    )
