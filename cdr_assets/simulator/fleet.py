"""A simulated fleet from a file: the PBXs one simulator hosts under `/pbx/<name>`.

Owns the fleet file's shape (YAML, `python -m cdr_assets.simulator --fleet FILE`): `defaults`
(top-level `SimulatorConfig` fields every PBX gets, e.g. `calls_per_day`) and `pbxs`, one flat
block per PBX: `name`, `vendor`, any top-level `SimulatorConfig` field (`seed`, `calls_per_day`,
`recording_ratio`, `latency_ms`, ...) and any field of that vendor's sub-config (`timezone`,
`client_id`, `client_secret`, `date_format`, `clock` for Yeastar; `timezone`, `api_token`,
`date_timezone`, `envelope` for Zorio). A PBX without a `seed` gets one derived from its name,
so PBXs of one vendor never share CDR ids by accident. It must not know HTTP.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from hashlib import blake2b
from pathlib import Path
from typing import Any

import yaml

from .config import VENDORS, FleetPbxConfig, SimulatorConfig, check_fleet

_TOP_FIELDS = frozenset(
    f.name for f in dataclasses.fields(SimulatorConfig) if f.name not in ("yeastar", "zorio")
)


def seed_for(name: str) -> int:
    """A stable seed per PBX name (the default when a block gives none)."""
    return 1000 + int.from_bytes(blake2b(name.encode(), digest_size=3).digest()) % 10**6


def fleet_pbx(
    block: Mapping[str, Any], defaults: Mapping[str, Any] | None = None, where: str = "pbx"
) -> FleetPbxConfig:
    """One flat block -> a `FleetPbxConfig`; a ValueError names `where`, the PBX and the key."""
    if not isinstance(block, Mapping):
        raise ValueError(f"{where}: expected a mapping of settings, not {type(block).__name__}")
    name, vendor = block.get("name"), block.get("vendor")
    if not isinstance(name, str) or not isinstance(vendor, str):
        raise ValueError(f"{where}: 'name' and 'vendor' are required")
    where = f"{where} ({name})"
    if vendor not in VENDORS:
        raise ValueError(f"{where}: vendor must be one of {VENDORS}, not {vendor!r}")
    vendor_fields = {f.name for f in dataclasses.fields(getattr(SimulatorConfig(), vendor))}
    top: dict[str, Any] = {"seed": seed_for(name), **(defaults or {})}
    sub: dict[str, Any] = {}
    for key, value in block.items():
        if key in ("name", "vendor"):
            continue
        if key in _TOP_FIELDS:
            top[key] = value
        elif key in vendor_fields:
            sub[key] = value
        else:
            raise ValueError(f"{where}: unknown key {key!r} for a {vendor} PBX")
    try:
        config = SimulatorConfig().with_overrides(**top, **({vendor: sub} if sub else {}))
        return FleetPbxConfig(name, vendor, config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def parse_fleet(document: Any, source: str = "fleet") -> tuple[FleetPbxConfig, ...]:
    """A loaded fleet document -> its PBXs (checked: names unique, seeds distinct per vendor)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("pbxs"), list):
        raise ValueError(f"{source}: expected a mapping with a 'pbxs' list")
    unknown = set(document) - {"defaults", "pbxs"}
    if unknown:
        raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)}")
    defaults = document.get("defaults") or {}
    bad = set(defaults) - _TOP_FIELDS if isinstance(defaults, Mapping) else {"(not a mapping)"}
    if bad:
        raise ValueError(f"{source}: defaults takes only {sorted(_TOP_FIELDS)}, not {sorted(bad)}")
    fleet = tuple(
        fleet_pbx(block, defaults, f"{source}: pbxs[{k}]")
        for k, block in enumerate(document["pbxs"])
    )
    try:
        check_fleet(fleet)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return fleet


def load_fleet(path: str | Path) -> tuple[FleetPbxConfig, ...]:
    """Read a fleet file (YAML); errors name the file, the block and the key."""
    file = Path(path)
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"fleet file {str(file)!r} could not be read: {exc}") from None
    return parse_fleet(document, str(file))
