"""What both simulated vendor APIs share: their calls, faults, stats and rendered-page cache.

Owns the day/page rendering that does not depend on the vendor; each vendor module adds its
endpoints, auth and record quirks. It must not know HTTP routing (server.py does).
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Protocol

from .config import SimulatorConfig
from .data import page_of_segments
from .faults import Faults, Stats
from .pagecache import PageCache


class _Calls(Protocol):
    """The vendor call generators' common face (data.YeastarCalls, data.ZorioCalls)."""

    index: Any

    def record_json(self, d: date, i: int, withheld: frozenset[str]) -> str: ...


class VendorApi:
    """Base of YeastarApi and ZorioApi."""

    vendor: ClassVar[str]
    calls: _Calls

    def __init__(
        self, config: SimulatorConfig, faults: Faults, stats: Stats, cache: PageCache | None
    ) -> None:
        self.cache = cache if cache is not None else PageCache(config.page_cache_mb * 2**20)
        self.seed = config.seed
        self.faults = faults
        self.stats = stats

    def render(self, d: date, i: int) -> dict:
        """Record (d, i) as the API serves it now (faults applied)."""
        raise NotImplementedError

    def day_records(self, d: date) -> list[dict]:
        return [self.render(d, i) for i in range(self.calls.index.n)]

    def page_text(
        self, segments: list[tuple[date, int, int]], offset: int, limit: int
    ) -> tuple[int, bytes]:
        """(count, JSON text of the records, comma-separated) of an unfiltered list page.

        Byte-equal to dumping `render()` dicts; served from the page cache when the same
        window, slice and withheld set were rendered before.
        """
        withheld = frozenset(self.faults.withheld_recordings)
        key = (self.vendor, tuple(segments), offset, limit, withheld)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        items = page_of_segments(segments, offset, limit)
        record_json = self.calls.record_json
        text = ",".join([record_json(d, i, withheld) for d, i in items]).encode()
        self.cache.put(key, len(items), text)
        return len(items), text
