"""Loopback simulator of the Yeastar P-Series and Zorio PBX APIs (tests, demo, benchmarks).

`Simulator(SimulatorConfig(...)).start()` serves both vendors' pages on one port from
deterministic synthetic data, with real WAV recordings, switchable faults (`sim.faults`),
request counters (`sim.stats`) and a bounded cache of rendered list pages (`sim.page_cache`).
Stdlib only. Run standalone with `python -m cdr_assets.simulator --port 8765`.
"""

from .config import SimulatorConfig, YeastarSimConfig, ZorioSimConfig
from .faults import Faults, Stats
from .server import Simulator

__all__ = [
    "Faults",
    "Simulator",
    "SimulatorConfig",
    "Stats",
    "YeastarSimConfig",
    "ZorioSimConfig",
]
