"""Definitions for every PBX in the config file (`$CDR_ASSETS_CONFIG`, default ./cdr_assets.yaml).

`dagster dev -m cdr_assets.definitions` and `dagster asset materialize -m cdr_assets.definitions`
load this module; it reads the config once and builds each PBX's assets with the factory.
"""

import dagster as dg

from cdr_assets.assets import build_definitions
from cdr_assets.config import load_config

# A whole-step retry for what the clients' own HTTP retries could not absorb (PBX restarts).
RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL)

defs = build_definitions(load_config(), retry_policy=RETRY_POLICY)
