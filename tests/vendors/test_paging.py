"""Concurrent paging (`vendors/paging.py`) through both vendor clients, against the simulator:
the same pages in the same order as one at a time, bounded memory, a clean stop on the first
error or an early close, back-off on 429, and one token renewal under several requests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cdr_assets.errors import PbxApiError, PbxAuthError, PbxBodyError
from cdr_assets.simulator import Simulator
from cdr_assets.vendors import PbxResource
from cdr_assets.vendors.auth_breaker import PROCESS_STORE
from cdr_assets.vendors.base import CdrWindow, FetchedPage
from cdr_assets.vendors.resource import BAD_BODY_REPEATS
from cdr_assets.vendors.zorio import CDR_LIST_PATH
from tests.vendors.simclients import DAY, settled_count, yeastar_client, zorio_client

#: Small pages so a day is many of them: Zorio's widened window holds three days (~65 pages),
#: Yeastar's the day and two hours (~24 pages).
PAGE = 7
CALLS = 150
LIST_PATH = {"zorio": CDR_LIST_PATH, "yeastar": "/openapi/v1.0/cdr/search"}
LIST_ENDPOINT = {"zorio": CDR_LIST_PATH, "yeastar": "cdr/search"}
VENDORS = ("zorio", "yeastar")
Pass = list[tuple[int, list[dict]]]


def client(vendor: str, sim: Simulator, inflight: int, **overrides: Any) -> PbxResource:
    if vendor == "zorio":
        return zorio_client(sim, per_page=PAGE, max_inflight_requests=inflight, **overrides)
    return yeastar_client(sim, page_size=PAGE, max_inflight_requests=inflight, **overrides)


def the_window(resource: PbxResource) -> CdrWindow:
    (window,) = resource.fetch_cdrs(DAY, DAY).windows
    return window


def as_pass(pages: Iterator[FetchedPage]) -> Pass:
    """(page number, records as dicts) of each page, in the order they came."""
    out = []
    for page in pages:
        records = page.records
        out.append((page.number, records if isinstance(records, list) else records.dicts()))
    return out


def one_pass(vendor: str, sim: Simulator, inflight: int) -> tuple[Pass, tuple]:
    """A pass over the day's window and what its `PassTotals` saw."""
    resource = client(vendor, sim, inflight)
    try:
        window = the_window(resource)
        pages = as_pass(window.fetch_pass())
        totals = window.last_pass
        return pages, (totals.first_total, totals.last_total, totals.stable, totals.records)
    finally:
        resource.close()


def pager_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cdr-pages-")]


@pytest.fixture
def day_sim(make_simulator: Callable[..., Simulator]) -> Callable[..., Simulator]:
    def make(**overrides: Any) -> Simulator:
        return make_simulator(calls_per_day=CALLS, **overrides)

    return make


# --------------------------------------------------------------------------- same result


@pytest.mark.parametrize("vendor", VENDORS)
def test_concurrent_paging_yields_exactly_the_sequential_pass(day_sim, vendor: str) -> None:
    sim = day_sim()
    sequential = one_pass(vendor, sim, 1)
    pages, totals = sequential
    assert len(pages) > 20 and [n for n, _ in pages] == list(range(1, len(pages) + 1))
    assert totals[3] == sum(len(records) for _, records in pages) == totals[0]
    for inflight in (4, 8):
        assert one_pass(vendor, sim, inflight) == sequential, f"{inflight} in flight"
    assert pager_threads() == []


@pytest.mark.parametrize("server_style", ["default"])
@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("inflight", [1, 4])
def test_requests_in_flight_reach_but_never_exceed_max_inflight_requests(
    day_sim, vendor: str, inflight: int
) -> None:
    sim = day_sim(latency_ms=20)
    resource = client(vendor, sim, inflight)
    window = the_window(resource)  # Yeastar: token and display format, one at a time
    sim.stats.reset()
    assert len(as_pass(window.fetch_pass())) > 20
    assert sim.stats.max_in_flight == inflight  # 1: strictly one request at a time
    resource.close()


@pytest.mark.parametrize("server_style", ["default"])
@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("action", ["insert", "delete"])
def test_a_total_that_changes_while_paging_is_followed_to_its_last_page(
    day_sim, vendor: str, action: str
) -> None:
    sim = day_sim()
    resource = client(vendor, sim, 4)
    window = the_window(resource)
    sim.faults.drift(vendor, DAY, at_page=3, action=action, where="behind", count=3 * PAGE)
    pages = as_pass(window.fetch_pass())
    (event,) = sim.faults.drift_log
    totals = window.last_pass
    assert totals.first_total == event.total_before and totals.last_total == event.total_after
    assert not totals.stable  # so the ingest pages the window again
    last_page = -(-event.total_after // PAGE)
    assert [number for number, _ in pages] == list(range(1, last_page + 1))
    # The next pass is the sequential pass of the final state.
    assert as_pass(window.fetch_pass()) == one_pass(vendor, sim, 1)[0]
    assert window.last_pass.stable
    resource.close()


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("server_style", ["default"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_slow_consumer_leaves_at_most_max_inflight_pages_fetched_or_in_flight(
    day_sim, vendor: str
) -> None:
    sim = day_sim()
    resource = client(vendor, sim, 4)
    window = the_window(resource)
    before = sim.stats.count(LIST_ENDPOINT[vendor])
    ahead = []
    for consumed, _page in enumerate(window.fetch_pass(), start=1):
        threading.Event().wait(0.02)  # the normalizer at work: the pager fetches ahead meanwhile
        answered = sim.stats.count(LIST_ENDPOINT[vendor]) - before
        ahead.append(answered - consumed)  # pages answered but not yet handed on
    resource.close()
    assert max(ahead) == 4 and min(ahead) >= 0  # fetched ahead, never more than the bound


# --------------------------------------------------------------------------- errors


@pytest.mark.usefixtures("quick_repeats")
@pytest.mark.parametrize("server_style", ["default"])
@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("fault", ["http_500", "bad_body"])
def test_a_page_failing_mid_window_stops_the_pass_at_that_page(
    day_sim, vendor: str, fault: str
) -> None:
    sim = day_sim()
    resource = client(vendor, sim, 4)
    window = the_window(resource)
    if fault == "http_500":
        sim.faults.fail_next(LIST_PATH[vendor], 500, times=50, query={"page": "5"})
    else:
        body = b"<html><body>Bad gateway</body></html>"
        sim.faults.fail_next(
            LIST_PATH[vendor],
            200,
            times=50,
            body=body,
            content_type="text/html",
            query={"page": "5"},
        )
    # A later page fails at once, before page 5 has used up its retries: page 5's error wins.
    rejected = b'{"errcode":40002,"errmsg":"PARAMETER ERROR"}' if vendor == "yeastar" else None
    sim.faults.fail_next(
        LIST_PATH[vendor], 200 if vendor == "yeastar" else 422, body=rejected, query={"page": "7"}
    )
    seen: list[int] = []
    with pytest.raises(PbxApiError) as caught:
        for page in window.fetch_pass():
            seen.append(page.number)
    assert seen == [1, 2, 3, 4]
    error = caught.value
    assert error.endpoint == LIST_PATH[vendor] and LIST_PATH[vendor] in str(error)
    assert any("page 5" in note for note in error.__notes__)
    if fault == "http_500":
        assert error.http_status == 500
    else:
        assert isinstance(error, PbxBodyError) and f"{BAD_BODY_REPEATS + 1} answers" in str(error)
    assert pager_threads() == []  # the requests in flight were waited for, none keeps running
    resource.close()


@pytest.mark.parametrize("server_style", ["default"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_consumer_that_stops_early_leaves_no_thread_and_no_request_running(
    day_sim, vendor: str
) -> None:
    sim = day_sim(latency_ms=20)
    resource = client(vendor, sim, 4)
    pages = the_window(resource).fetch_pass()
    assert [next(pages).number for _ in range(3)] == [1, 2, 3]
    pages.close()
    assert pager_threads() == []
    answered = settled_count(sim, LIST_ENDPOINT[vendor])
    assert sim.stats.count(LIST_ENDPOINT[vendor]) == answered  # nothing went out after close
    resource.close()


# --------------------------------------------------------------------------- back-off


@pytest.mark.parametrize("server_style", ["default"])
@pytest.mark.parametrize(
    ("vendor", "inflight", "throttled_pages"),
    [
        ("zorio", 8, ("10", "11")),
        ("yeastar", 4, ("6",)),
    ],
)
def test_a_429_burst_lowers_the_requests_in_flight_and_waits_out_retry_after(
    day_sim, vendor: str, inflight: int, throttled_pages: tuple[str, ...]
) -> None:
    sim = day_sim(latency_ms=20)
    expected = one_pass(vendor, sim, 1)
    resource = client(vendor, sim, inflight)
    window = the_window(resource)
    for page in throttled_pages:
        sim.faults.fail_next(LIST_PATH[vendor], 429, retry_after="1", query={"page": page})
    sim.stats.reset()
    # page 1, then the first `inflight` pages after it held together at the server, so they are
    # all in flight at once however slowly a loaded machine starts the client's threads
    sim.faults.delay_next(LIST_PATH[vendor], 0.3, times=inflight + 1)
    pages = as_pass(window.fetch_pass())
    totals = window.last_pass
    assert (pages, (totals.first_total, totals.last_total, totals.stable, totals.records)) == (
        expected
    )
    arrivals = sim.stats.arrivals
    gaps = [i for i in range(1, len(arrivals)) if arrivals[i][0] - arrivals[i - 1][0] >= 0.9]
    assert len(gaps) == 1, "no request starts until Retry-After has passed"
    before, after = arrivals[: gaps[0]], arrivals[gaps[0] :]
    assert max(n for _, n in before) == inflight
    assert len(after) > 5 and max(n for _, n in after) <= inflight // 2
    resource.close()


# --------------------------------------------------------------------------- Yeastar tokens


@pytest.mark.parametrize("server_style", ["default"])
def test_a_token_expired_under_several_requests_is_renewed_once(day_sim) -> None:
    sim = day_sim()
    expected, _ = one_pass("yeastar", sim, 1)
    resource = client("yeastar", sim, 4)
    window = the_window(resource)
    sim.stats.reset()
    sim.faults.delay_next(LIST_PATH["yeastar"], 0.3, times=5)  # page 1, then pages 2..5 at once
    pages = window.fetch_pass()
    got = as_pass(iter([next(pages)]))
    sim.faults.expire_tokens()  # before pages 2..5 (in flight, held) reach the token check
    got += as_pass(pages)
    assert got == expected
    assert settled_count(sim, "refresh_token") == 1 and sim.stats.count("get_token") == 0
    # Every page once, plus a repeat for each that met the expired token: several did.
    assert settled_count(sim, "cdr/search") - len(expected) == 4
    resource.close()


@pytest.mark.parametrize("server_style", ["default"])
def test_a_credential_refused_under_several_requests_is_tried_once(day_sim) -> None:
    sim = day_sim()
    resource = client("yeastar", sim, 4)
    window = the_window(resource)
    sim.stats.reset()
    sim.faults.delay_next(LIST_PATH["yeastar"], 0.3, times=5)  # page 1, then pages 2..5 at once
    pages = window.fetch_pass()
    assert next(pages).number == 1
    sim.faults.expire_tokens()
    refused = b'{"errcode":-1,"errmsg":"FAILURE"}'
    sim.faults.fail_next("/openapi/v1.0/refresh_token", 200, times=10, body=refused)
    sim.faults.fail_next("/openapi/v1.0/get_token", 200, times=10, body=refused)
    with pytest.raises(PbxAuthError):
        list(pages)
    assert settled_count(sim, "refresh_token") == 1 and settled_count(sim, "get_token") == 1
    assert [state.pbx for state in PROCESS_STORE.states()] == ["hq"]  # one attempt, refused
    assert pager_threads() == []
    resource.close()
