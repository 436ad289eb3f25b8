"""The one seam where users change how a PBX's assets look in Dagster.

`CdrAssetsTranslator.get_asset_spec` is asked for the spec of every asset the factory builds, as
dagster-dlt's and dagster-fivetran's translators are: subclass it (Python) or set the Component's
`translation` (YAML) to change keys (e.g. a `telephony/` prefix), group, owners, tags, kinds,
automation condition or freshness policy. It holds no asset logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import dagster as dg

from cdr_assets.assets.metadata import column_schema
from cdr_assets.config import PbxConfigBase, StorageConfig
from cdr_assets.schema import CDR_SCHEMA, RECORDINGS_SCHEMA

AssetName = Literal["cdr", "recordings"]


@dataclass(frozen=True)
class CdrAssetProps:
    """What the translator knows about one asset: its PBX, which asset, and the storage."""

    pbx: PbxConfigBase
    asset: AssetName
    storage: StorageConfig


def freshness_policy(pbx: PbxConfigBase) -> dg.FreshnessPolicy:
    """Fresh when the day that just closed was materialized by its schedule's tick (local
    midnight + `schedule_lag_minutes`) plus `freshness_grace_minutes`, in the PBX's zone.

    Dagster's freshness is per asset, not per partition: any materialization inside the window
    counts, which the daily schedule's run of the closed day is.
    """
    deadline = pbx.schedule_lag_minutes + pbx.freshness_grace_minutes  # < 24 h (config)
    hour, minute = divmod(deadline, 60)
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{minute} {hour} * * *",
        lower_bound_delta=timedelta(minutes=deadline),  # materialized since local midnight
        timezone=pbx.timezone,
    )


class CdrAssetsTranslator:
    """Default specs: key `<pbx>/<asset>`, group `<pbx>`, kinds, column schema, freshness."""

    def get_asset_spec(self, props: CdrAssetProps) -> dg.AssetSpec:
        pbx = props.pbx
        if props.asset == "cdr":
            description = (
                f"CDRs of PBX {pbx.name!r} ({pbx.vendor}) whose call started on the partition's "
                f"local day in {pbx.timezone}. Re-materializing a day replaces it, so re-running "
                "recent days picks up calls that ended after midnight and late status changes."
            )
            kinds = {pbx.vendor, "parquet", "duckdb"}
            schema = CDR_SCHEMA
        else:
            description = (
                f"Verified copies of PBX {pbx.name!r}'s call recordings under "
                f"{props.storage.recordings_dir}, and the `recordings` manifest. Each signed link "
                "is requested just before its download, so month-old days can be backfilled; a "
                "re-run skips intact files, repairs damaged ones and picks up late recordings."
            )
            kinds = {pbx.vendor, "audio"}
            schema = RECORDINGS_SCHEMA
        return dg.AssetSpec(
            key=dg.AssetKey([pbx.name, props.asset]),
            group_name=pbx.name,
            description=description,
            kinds=kinds,
            metadata={"dagster/column_schema": column_schema(schema)},
            freshness_policy=freshness_policy(pbx),
        )
