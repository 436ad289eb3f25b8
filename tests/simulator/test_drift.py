"""Records that change while a client pages (drift, unstable sort), over real HTTP.

A plain page-by-page walk is compared with `sim.calls` after the fact: inserts ahead of the
page duplicate a record and hide the new one, deletes ahead hide a record; changes behind the
page are seen exactly once.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from cdr_assets.simulator import Simulator

from .conftest import (
    YeastarClient,
    ZorioClient,
    walk_ids,
    yeastar_day_pages,
    zorio_day_pages,
)

DAY = date(2026, 6, 1)
N = 47  # calls per day: pages of 10 -> 5 pages, the last one short
SIZE = 10
CASES = [("yeastar", "asc"), ("yeastar", "desc"), ("zorio", "asc")]


def _sim(make_simulator, vendor: str, order: str) -> Simulator:
    # Zorio reads dates in its own zone here, so one server date is one PBX-local day
    return make_simulator(
        calls_per_day=N, yeastar={"order": order}, zorio={"timezone": "UTC", "date_timezone": "UTC"}
    )


def _fetch(sim: Simulator, vendor: str):
    if vendor == "yeastar":
        return yeastar_day_pages(YeastarClient(sim), "06/01/2026", SIZE), "uid"
    return zorio_day_pages(ZorioClient(sim), "2026-06-01", SIZE), "uuid"


def _ids(sim: Simulator, vendor: str, key: str) -> list[str]:
    return [r[key] for r in sim.calls(vendor, DAY)]


@pytest.mark.parametrize(("vendor", "order"), CASES)
def test_insert_ahead_repeats_one_record_and_hides_the_new_one(make_simulator, vendor, order):
    sim = _sim(make_simulator, vendor, order)
    fetch, key = _fetch(sim, vendor)
    before = _ids(sim, vendor, key)
    first_pages = [r[key] for page in (1, 2) for r in fetch(page)[0]]
    sim.faults.drift(vendor, DAY, at_page=3, action="insert", where="ahead")
    seen, totals = walk_ids(fetch, key)
    [event] = sim.faults.drift_log
    [new] = event.ids
    assert event.action == "insert" and event.total_before == N and event.total_after == N + 1
    after = _ids(sim, vendor, key)
    assert set(after) == set(before) | {new} and len(after) == N + 1
    assert totals[:2] == [N, N] and set(totals[2:]) == {N + 1}
    assert new not in seen
    twice = [i for i, n in Counter(seen).items() if n == 2]
    assert twice == [first_pages[-1]]  # the last record of page 2 comes again on page 3
    assert set(seen) == set(before) and len(seen) == N + 1


@pytest.mark.parametrize(("vendor", "order"), CASES)
def test_insert_behind_is_seen_once(make_simulator, vendor, order):
    sim = _sim(make_simulator, vendor, order)
    fetch, key = _fetch(sim, vendor)
    sim.faults.drift(vendor, DAY, at_page=2, action="insert", where="behind", count=2)
    seen, totals = walk_ids(fetch, key)
    [event] = sim.faults.drift_log
    assert len(event.ids) == 2 and set(event.ids) <= set(seen)
    assert len(set(seen)) == len(seen) == N + 2
    assert seen == _ids(sim, vendor, key)[:: -1 if order == "desc" else 1]
    assert totals[0] == N and set(totals[1:]) == {N + 2}


@pytest.mark.parametrize(("vendor", "order"), CASES)
def test_delete_ahead_hides_a_record_that_is_still_there(make_simulator, vendor, order):
    sim = _sim(make_simulator, vendor, order)
    fetch, key = _fetch(sim, vendor)
    before = _ids(sim, vendor, key)
    in_order = before[::-1] if order == "desc" else before
    sim.faults.drift(vendor, DAY, at_page=3, action="delete", where="ahead")
    seen, totals = walk_ids(fetch, key)
    [event] = sim.faults.drift_log
    [gone] = event.ids
    after = _ids(sim, vendor, key)
    assert set(after) == set(before) - {gone}
    skipped = in_order[2 * SIZE]  # the first record of page 3 slid onto page 2, already read
    assert gone in seen and skipped not in seen and skipped in after
    assert len(seen) == len(set(seen)) == N - 1  # the count matches: only the ids tell
    assert set(seen) != set(after)
    assert totals[:2] == [N, N] and set(totals[2:]) == {N - 1}


@pytest.mark.parametrize(("vendor", "order"), CASES)
def test_delete_behind_is_never_seen(make_simulator, vendor, order):
    sim = _sim(make_simulator, vendor, order)
    fetch, key = _fetch(sim, vendor)
    before = _ids(sim, vendor, key)
    sim.faults.drift(vendor, DAY, at_page=1, action="delete", where="behind", count=3)
    seen, totals = walk_ids(fetch, key)
    [event] = sim.faults.drift_log
    assert len(event.ids) == 3 and not set(event.ids) & set(seen)
    assert set(seen) == set(before) - set(event.ids) == set(_ids(sim, vendor, key))
    assert len(seen) == N - 3 and set(totals) == {N - 3}
    assert min(event.positions) >= SIZE  # behind page 1


def test_drift_fires_once_only_for_its_day_and_page(make_simulator):
    sim = _sim(make_simulator, "yeastar", "asc")
    client = YeastarClient(sim)
    sim.faults.drift("yeastar", date(2026, 6, 2), at_page=2, action="insert")
    other_day = yeastar_day_pages(client, "06/01/2026", SIZE)
    assert other_day(2)[1] == N and not sim.faults.drift_log
    the_day = yeastar_day_pages(client, "06/02/2026", SIZE)
    assert the_day(1)[1] == N and not sim.faults.drift_log  # page 1 is not the armed page
    assert the_day(2)[1] == N + 1 and the_day(2)[1] == N + 1
    assert len(sim.faults.drift_log) == 1
    assert len(sim.calls("yeastar", date(2026, 6, 2))) == N + 1


def test_inserted_calls_belong_to_the_day_and_have_no_recording(make_simulator):
    sim = _sim(make_simulator, "zorio", "asc")
    sim.faults.drift("zorio", DAY, at_page=2, action="insert", count=3)
    sim.faults.drift("yeastar", DAY, at_page=2, action="insert", count=3)
    zorio, yeastar = ZorioClient(sim), YeastarClient(sim)
    zorio_day_pages(zorio, "2026-06-01", SIZE)(2)
    yeastar_day_pages(yeastar, "06/01/2026", SIZE)(2)
    z_event, y_event = sorted(sim.faults.drift_log, key=lambda e: e.vendor, reverse=True)
    calls = {r["uuid"]: r for r in sim.calls("zorio", DAY)}
    starts = [r["start_time"] for r in sim.calls("zorio", DAY)]
    assert starts == sorted(starts)
    for uuid in z_event.ids:
        assert calls[uuid]["start_time"].startswith("2026-06-01")
        assert calls[uuid]["recording_available"] is False
        detail = zorio.get(f"/api/pbx/cdr/{uuid}")
        assert detail.status_code == 200 and detail.json()["data"] == calls[uuid]
    ycalls = {r["uid"]: r for r in sim.calls("yeastar", DAY)}
    assert len({r["id"] for r in ycalls.values()}) == N + 3
    for uid in y_event.ids:
        assert ycalls[uid]["time"].startswith("06/01/2026") and "record_file" not in ycalls[uid]


def test_a_deleted_call_has_no_detail(make_simulator):
    sim = _sim(make_simulator, "zorio", "asc")
    client = ZorioClient(sim)
    sim.faults.drift("zorio", DAY, at_page=1, action="delete", where="behind")
    zorio_day_pages(client, "2026-06-01", SIZE)(1)
    [gone] = sim.faults.drift_log[0].ids
    assert client.get(f"/api/pbx/cdr/{gone}").status_code == 404


def test_clear_undoes_drift(make_simulator):
    sim = _sim(make_simulator, "yeastar", "asc")
    fetch = yeastar_day_pages(YeastarClient(sim), "06/01/2026", SIZE)
    before = sim.calls("yeastar", DAY)
    sim.faults.drift("yeastar", DAY, at_page=2, action="delete")
    assert fetch(2)[1] == N - 1
    sim.faults.clear()
    assert sim.calls("yeastar", DAY) == before and fetch(2)[1] == N
    assert sim.faults.drift_log == []


def test_bad_drift_arguments_say_what_is_wrong(simulator):
    faults = simulator.faults
    for kwargs, word in (
        ({"vendor": "asterisk", "at_page": 2, "action": "insert"}, "vendor"),
        ({"vendor": "zorio", "at_page": 2, "action": "update"}, "action"),
        ({"vendor": "zorio", "at_page": 2, "action": "insert", "where": "middle"}, "where"),
        ({"vendor": "zorio", "at_page": 1, "action": "insert"}, "page"),
        ({"vendor": "zorio", "at_page": 2, "action": "insert", "count": 0}, "count"),
    ):
        with pytest.raises(ValueError, match=word):
            faults.drift(day=DAY, **kwargs)
    with pytest.raises(ValueError, match="page"):
        faults.repeat_across_pages("zorio", DAY, page=1)


@pytest.mark.parametrize(("vendor", "order"), CASES)
def test_repeat_across_pages_shows_one_record_twice_and_one_never(make_simulator, vendor, order):
    sim = _sim(make_simulator, vendor, order)
    fetch, key = _fetch(sim, vendor)
    in_order = _ids(sim, vendor, key)[:: -1 if order == "desc" else 1]
    sim.faults.repeat_across_pages(vendor, DAY, page=3)
    seen, totals = walk_ids(fetch, key)
    assert set(totals) == {N} and len(seen) == N
    assert seen[2 * SIZE] == seen[2 * SIZE - 1] == in_order[2 * SIZE - 1]
    assert set(in_order) - set(seen) == {in_order[2 * SIZE]}
    assert [r[key] for r in fetch(3)[0]] == in_order[2 * SIZE : 3 * SIZE]  # once only
