"""The zone a Zorio server reads `from`/`to` in, learned from its rows, kept, and forgotten.

The simulator reads dates in `zorio.date_timezone`; each test runs days through the real
client and `ingest_cdr_day` (which tells each window what its rows spanned) and checks the
windows asked for, the requests paid and the rows committed against what the simulator serves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdr_assets.config import parse_config
from cdr_assets.ingest import DayIngest, ingest_cdr_day
from cdr_assets.simulator import Simulator, SimulatorConfig
from cdr_assets.storage.parquet import read_partition
from cdr_assets.vendors.zorio_zone import ZONE_SUBDIR, shown_zone
from tests.vendors.simclients import DAY, zorio_client

PBX_ZONE = "Asia/Ho_Chi_Minh"  # UTC+07:00, no DST
PER_PAGE = 50
CALLS = 200  # a call every 7.2 minutes: every midnight has calls within 15 minutes of it
NOW = datetime(2026, 7, 1, tzinfo=UTC)
LIST = "/api/pbx/cdr"


def pages(result: DayIngest) -> int:
    """List requests of a day fetched in one pass per window: its windows' pages."""
    return sum(-(-w.api_total // PER_PAGE) * w.passes for w in result.windows)


def day_n(n: int) -> date:
    return DAY + timedelta(days=n)


class Pbx:
    """A Zorio PBX on a simulator, with its state kept in `root/state` across runs."""

    def __init__(self, sim: Simulator, root: Path) -> None:
        self.sim = sim
        self.root = root
        entry = {
            "name": "saigon",
            "vendor": "zorio",
            "base_url": sim.base_url,
            "timezone": PBX_ZONE,
            "start_date": "2026-01-01",
            "api_token": {"env": "T_TOKEN"},
            "per_page": PER_PAGE,
        }
        storage = {"data_dir": str(root / "data"), "state_dir": str(root / "state")}
        self.config = parse_config({"storage": storage, "pbxs": [entry]})

    def run(self, day: date) -> tuple[DayIngest, int]:
        """One run of `day` with a new client (as each Dagster run builds its resource):
        (what it committed, list requests it made)."""
        client = zorio_client(
            self.sim,
            per_page=PER_PAGE,
            timezone=PBX_ZONE,
            auth_state_dir=self.config.storage.state_dir,
        )
        before = self.sim.stats.count(LIST)
        pbx = self.config.pbxs[0]
        result = ingest_cdr_day(client, pbx, self.config.storage, day, ingested_at=NOW)
        return result, self.sim.stats.count(LIST) - before

    def stored_ids(self, day: date) -> list[str]:
        table = read_partition(self.config.storage.data_dir, "cdr", "saigon", day, ["cdr_id"])
        assert table is not None
        return sorted(table["cdr_id"].to_pylist())

    def served_ids(self, day: date) -> list[str]:
        return sorted(r["uuid"] for r in self.sim.calls("zorio", day))

    def state(self) -> dict[str, Any]:
        path = Path(self.config.storage.state_dir) / ZONE_SUBDIR / "saigon.json"
        return orjson.loads(path.read_bytes()) if path.exists() else {}


def sim_config(date_timezone: str) -> SimulatorConfig:
    return SimulatorConfig(calls_per_day=CALLS).with_overrides(
        zorio={"timezone": PBX_ZONE, "date_timezone": date_timezone}
    )


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., Simulator]]:
    """Plain simulators: the zone is learned from instants, the same in every server style."""
    started: list[Simulator] = []

    def make(config: SimulatorConfig) -> Simulator:
        started.append(Simulator(config).start())
        return started[-1]

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def make_pbx(make_simulator: Callable[..., Simulator], tmp_path: Path) -> Callable[[str], Pbx]:
    def make(date_timezone: str) -> Pbx:
        return Pbx(make_simulator(sim_config(date_timezone)), tmp_path)

    return make


def learned_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if "the server reads from/to in" in r.getMessage()
    ]


# --------------------------------------------------------------------------- the rule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("2026-06-14T17:03:00+00:00", "2026-06-15T16:55:00+00:00", PBX_ZONE),
        ("2026-06-15T00:10:00+00:00", "2026-06-15T23:58:00+00:00", "UTC"),
        ("2026-06-14T15:01:00+00:00", "2026-06-15T14:50:00+00:00", "UTC+09:00"),
        ("2026-06-14T18:40:00+00:00", "2026-06-15T16:55:00+00:00", None),  # quiet after midnight
        ("2026-06-14T17:03:00+00:00", "2026-06-15T17:20:00+00:00", None),  # a row past midnight
    ],
)
def test_a_window_shows_the_zone_whose_midnights_hug_its_rows(first, last, expected) -> None:
    assert shown_zone(DAY, DAY, at(first), at(last), pbx_zone=PBX_ZONE) == expected


def test_a_three_date_window_shows_the_zone_across_a_dst_change() -> None:
    # New York falls back on 2026-11-01: the window is 73 hours long in its own zone.
    first, last = at("2026-10-31T04:05:00+00:00"), at("2026-11-03T04:58:00+00:00")
    start, end = date(2026, 10, 31), date(2026, 11, 2)
    assert shown_zone(start, end, first, last, pbx_zone="America/New_York") == "America/New_York"


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize(
    ("server_zone", "learned", "dates_per_day"),
    [(PBX_ZONE, PBX_ZONE, 1), ("UTC", "UTC", 2), ("Asia/Tokyo", "UTC+09:00", 2)],
)
def test_two_windows_teach_the_servers_zone_and_later_days_cost_its_dates(
    make_pbx, caplog, server_zone: str, learned: str, dates_per_day: int
) -> None:
    caplog.set_level(logging.INFO)
    pbx = make_pbx(server_zone)
    totals = []
    for n in range(4):
        result, made = pbx.run(day_n(n))
        totals.append(result.api_total)
        assert made == pages(result)
        assert pbx.stored_ids(day_n(n)) == pbx.served_ids(day_n(n))
        assert result.complete and result.outside_window == 0
    assert pbx.state()["learned"] == learned
    (line,) = learned_lines(caplog)  # once, naming the PBX and the zone
    assert "'saigon'" in line and learned in line
    # Three server dates a day while learning, then the dates a local day overlaps.
    wide, narrow = 3 * CALLS, dates_per_day * CALLS
    assert [round(total, -1) for total in totals] == [wide, wide, narrow, narrow]
    (window,) = result.windows
    assert window.label.endswith(f"(server zone {learned}, learned)")


def test_a_pbx_without_calls_around_midnight_keeps_its_margins(make_simulator, tmp_path) -> None:
    pbx = Pbx(make_simulator(sim_config(PBX_ZONE).with_overrides(calls_per_day=20)), tmp_path)
    for n in range(3):
        result, made = pbx.run(day_n(n))
        assert result.windows[0].label.startswith(f"from={day_n(n) - timedelta(days=1)}")
    assert pbx.state().get("learned") is None


def test_a_configured_query_timezone_is_neither_learned_nor_second_guessed(make_pbx) -> None:
    pbx = make_pbx(PBX_ZONE)
    client = zorio_client(pbx.sim, query_timezone="UTC", auth_state_dir=str(pbx.root / "state"))
    assert client.query_windows(DAY, DAY) == [(DAY - timedelta(days=1), DAY)]


# --------------------------------------------------------------------------- safety


def restarted(sim: Simulator, date_timezone: str) -> Iterator[Simulator]:
    """The same PBX (same data, same address) after its server started reading dates in
    another zone."""
    port = sim.port
    sim.stop()
    again = Simulator(sim_config(date_timezone), port=port).start()
    try:
        yield again
    finally:
        again.stop()


def test_a_server_that_changes_zone_between_runs_is_caught_and_loses_no_call(
    make_pbx, caplog
) -> None:
    pbx = make_pbx(PBX_ZONE)
    for n in range(2):
        pbx.run(day_n(n))
    assert pbx.state()["learned"] == PBX_ZONE
    for sim in restarted(pbx.sim, "UTC"):
        pbx.sim = sim
        caplog.set_level(logging.INFO)
        result, made = pbx.run(day_n(2))
        # The learned date came back with calls up to 07:00 the next local day: the zone is
        # forgotten (one WARNING) and the day fetched with its margins again, nothing lost.
        (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert "'saigon'" in warning.getMessage() and "forgetting" in warning.getMessage()
        assert pbx.stored_ids(day_n(2)) == pbx.served_ids(day_n(2))
        assert result.complete and result.windows[0].passes == 2
        assert result.windows[0].label == f"from={day_n(1)} to={day_n(3)}"
        assert made == CALLS // PER_PAGE + -(-result.api_total // PER_PAGE)
        assert pbx.state().get("learned") is None
        # The margins teach it the new zone again.
        pbx.run(day_n(3))
        assert pbx.state()["learned"] == "UTC"
        result, made = pbx.run(day_n(4))
        assert made == pages(result) and round(result.api_total, -1) == 2 * CALLS
        assert pbx.stored_ids(day_n(4)) == pbx.served_ids(day_n(4))


def test_a_learned_zone_belongs_to_its_server_address(make_pbx, make_simulator) -> None:
    pbx = make_pbx(PBX_ZONE)
    for n in range(2):
        pbx.run(day_n(n))
    other = Pbx(make_simulator(sim_config(PBX_ZONE)), pbx.root)  # same state, new URL
    result, _ = other.run(day_n(2))
    assert result.windows[0].label == f"from={day_n(1)} to={day_n(3)}"
