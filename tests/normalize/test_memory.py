"""Memory stays flat as a day grows: normalizing page after page must not keep earlier pages."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdr_assets.normalize import normalize_zorio_records
from tests.normalize.seed_records import ZORIO_RECORD


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads Linux /proc")
def test_normalizing_many_pages_does_not_grow_memory() -> None:
    """Regression: a memoryview handed to pyarrow kept every page's JSON blob alive."""
    page = [{**ZORIO_RECORD, "uuid": f"{i:036d}"} for i in range(10_000)]
    now = datetime.now(UTC)

    def normalize_pages(count: int) -> None:
        for _ in range(count):
            normalize_zorio_records(page, pbx="p", timezone="UTC", ingested_at=now)

    normalize_pages(5)  # warm up allocators and caches
    gc.collect()
    before = _rss_mb()
    normalize_pages(60)  # ~330 MB of page JSON in total if kept
    gc.collect()
    assert _rss_mb() - before < 60
