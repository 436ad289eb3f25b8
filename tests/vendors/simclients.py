"""Vendor resources pointed at a running simulator, for the vendor-client tests."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cdr_assets.vendors import YeastarResource, ZorioResource

#: A closed PBX-local day well in the past (the simulator serves any day deterministically).
DAY = date(2026, 6, 15)

#: Signed-link lifetime for the expiry tests. The simulator's expiry is the whole second of
#: minting plus the TTL and a link is valid through that second, so it lives TTL to TTL + 1 s:
#: long enough to download on a loaded machine, short enough to wait out.
LINK_TTL_S = 2


def wait_out_links_minted_before(moment: float) -> None:
    """Sleep until every link the server minted before `moment` (monotonic) has expired."""
    time.sleep(max(0.0, moment + LINK_TTL_S + 1.1 - time.monotonic()))


#: Settings that keep a test quick when the simulator injects faults.
FAST_RETRIES: dict[str, Any] = dict(backoff_factor=0.01, max_retries=3, timeout_s=10)


def yeastar_client(sim: Any, **overrides: Any) -> YeastarResource:
    """A YeastarResource for the simulator's Yeastar PBX (fast retries for tests)."""
    cfg = sim.config.yeastar
    settings: dict[str, Any] = dict(
        pbx_name="hq",
        base_url=sim.base_url,
        client_id=cfg.client_id,
        client_secret=cfg.client_secret,
        timezone=cfg.timezone,
        **FAST_RETRIES,
    )
    settings.update(overrides)
    return YeastarResource(**settings)


def zorio_client(sim: Any, **overrides: Any) -> ZorioResource:
    """A ZorioResource for the simulator's Zorio account (fast retries for tests)."""
    cfg = sim.config.zorio
    settings: dict[str, Any] = dict(
        pbx_name="saigon",
        base_url=sim.base_url,
        api_token=cfg.api_token,
        timezone=cfg.timezone,
        **FAST_RETRIES,
    )
    settings.update(overrides)
    return ZorioResource(**settings)


def collect(fetch: Any) -> list[dict]:
    """Every record of a CdrFetch, pages concatenated."""
    return [record for page in fetch.pages() for record in page]


def record_start(record: dict) -> datetime:
    """A raw record's start instant (Yeastar `timestamp`, Zorio `start_time`)."""
    if "timestamp" in record:
        return datetime.fromtimestamp(int(record["timestamp"]), UTC)
    return datetime.fromisoformat(record["start_time"])


def of_days(records: list[dict], timezone: str, *days: date) -> list[dict]:
    """The records whose start falls on one of `days` in `timezone` (a window's margins hold
    calls of the neighbouring days; the ingest assigns rows by instant the same way)."""
    zone = ZoneInfo(timezone)
    return [r for r in records if record_start(r).astimezone(zone).date() in days]


def settled_count(sim: Any, endpoint: str, settle_s: float = 0.05, timeout_s: float = 3.0) -> int:
    """`sim.stats.count(endpoint)` once it stops changing: the simulator records a request after
    writing its reply, so a client can see the reply a moment before the count moves."""
    deadline = time.monotonic() + timeout_s
    last = sim.stats.count(endpoint)
    while time.monotonic() < deadline:
        time.sleep(settle_s)
        current = sim.stats.count(endpoint)
        if current == last:
            return current
        last = current
    return last
