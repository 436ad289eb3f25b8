"""What both simulated vendor APIs share: their calls, faults, stats and rendered-page cache.

Owns the day/page rendering that does not depend on the vendor; each vendor module adds its
endpoints, auth and record quirks. It must not know HTTP routing (server.py does).
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Protocol

from .config import SimulatorConfig
from .data import Generated, page_of_segments
from .faults import Faults, Stats
from .pagecache import PageCache


class _Calls(Protocol):
    """The vendor call generators' common face (data.YeastarCalls, data.ZorioCalls)."""

    index: Any

    def decode_ref(self, ref: str) -> tuple[date, int] | None: ...

    def generate(self, d: date, i: int) -> Generated: ...

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

    def recording_name(self, gen: Generated) -> str | None:
        """The name faults refer to a call's recording by (None: the call has none)."""
        raise NotImplementedError

    def recording(self, ref: str) -> tuple[date, int, Generated, int] | None:
        """(day, index, call, seconds) of a downloadable recording by its name or numeric id."""
        decoded = self.calls.decode_ref(ref)
        if decoded is None:
            return None
        d, i = decoded
        gen = self.calls.generate(d, i)
        name = self.recording_name(gen)
        faults = self.faults
        if not name or name in faults.withheld_recordings or name in faults.missing_recordings:
            return None
        return d, i, gen, faults.recording_seconds.get(name, gen.recording_seconds)

    def audio_key(self, d: date, i: int) -> str:
        return f"{self.seed}:{self.vendor}:{d}:{i}"

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
