"""Loopback simulator of the Yeastar P-Series and Zorio PBX APIs (tests, demo, benchmarks).

`Simulator(SimulatorConfig(...)).start()` serves both vendors' pages on one port from
deterministic synthetic data, with real WAV recordings, switchable faults (`sim.faults`),
request counters (`sim.stats`) and a bounded cache of rendered list pages (`sim.page_cache`).
`SERVER_STYLES` names the one-switch variations of production servers (Laravel envelope,
pretty JSON, extra keys, newest first, charset) for client tests to run against; `DELETE`
removes a field in `sim.faults.override_record`. A fleet of further PBXs, each with its own
config, faults and stats, is served on the same port under `/pbx/<name>`
(`Simulator(fleet=load_fleet(path))`, `sim.pbx(name)`). Stdlib only (PyYAML for fleet files).
Run standalone with `python -m cdr_assets.simulator --port 8765 [--fleet FILE]` (`--help` lists
every switch and fault).
"""

from .config import (
    SERVER_STYLES,
    FleetPbxConfig,
    SimulatorConfig,
    YeastarSimConfig,
    ZorioSimConfig,
)
from .faults import DELETE, DriftEvent, Faults, Stats
from .fleet import load_fleet, parse_fleet
from .server import HostedPbx, Simulator

__all__ = [
    "DELETE",
    "SERVER_STYLES",
    "DriftEvent",
    "Faults",
    "FleetPbxConfig",
    "HostedPbx",
    "Simulator",
    "SimulatorConfig",
    "Stats",
    "YeastarSimConfig",
    "ZorioSimConfig",
    "load_fleet",
    "parse_fleet",
]
