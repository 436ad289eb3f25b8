"""One pass over a window's pages with bounded concurrency, yielded strictly in page order.

This module owns how a vendor's pages are requested: page 1 alone (it gives the total), then
the pages the latest total calls for, up to `max_inflight` requests at once, handed on in page
order exactly as the one-at-a-time pager would. It knows no vendor, endpoint or envelope: each
vendor passes a function that fetches one page and says what that page implies (`PageAnswer`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg

from cdr_assets.records import CdrPage, JsonRecords
from cdr_assets.vendors.base import FetchedPage, PassTotals
from cdr_assets.vendors.transport import hearing_throttling

logger = dg.get_dagster_logger(__name__)


@dataclass(frozen=True)
class PageAnswer:
    """One fetched page and what it implies for the pass.

    `total` is the total the page announced (for `PassTotals.see`), `last_page` the last page
    number that total calls for (how far to request ahead), `final` whether the one-at-a-time
    pager stops after this page (its last page, or an empty one).
    """

    number: int
    records: CdrPage | JsonRecords
    total: int
    last_page: int
    final: bool


def fetch_pages_in_order(
    fetch_page: Callable[[int], PageAnswer],
    totals: PassTotals,
    *,
    max_inflight: int,
    pbx: str,
    endpoint: str,
) -> Iterator[FetchedPage]:
    """One pass from page 1: each page goes through `totals.see` and, unless empty, is
    yielded, in page order, until a `final` page.

    `max_inflight` 1 is the plain loop (each page requested once the previous one has been
    consumed, in the caller's thread). Above 1, page 1 is fetched alone, then worker threads
    fetch the pages up to the latest known `last_page` ahead of the consumer, also while it
    works on the page last yielded, so that pages in flight plus pages fetched but not yet
    yielded never exceed `max_inflight` (memory: that many pages besides the consumer's).

    A page's error is raised when its turn comes: nothing after it is yielded, and no page
    after it is requested once it is known. Leaving the generator (an error, or a consumer that
    stops early) cancels the requests not started and waits for those in flight, so no thread
    outlives the pass.

    Back-off, kept simple: every 429/503 a request of the pass meets (the transport retries
    it, waiting out its Retry-After, and tells this pager through `hearing_throttling`)
    halves the requests allowed in flight for the rest of the pass (at least 1), and no new
    request starts before that Retry-After has passed.
    """
    if max_inflight < 1:
        raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
    pager = _OrderedPager(fetch_page, max_inflight, pbx=pbx, endpoint=endpoint)
    try:
        answer = pager.fetch(1)
        while True:
            totals.see(answer.total, len(answer.records))
            if not answer.final:  # the next pages load while the consumer works on this one
                pager.request_ahead(answer.number + 1, last_page=answer.last_page)
            if answer.records:
                yield FetchedPage(answer.number, answer.records)
            if answer.final:
                return
            answer = pager.answer(answer.number + 1)
    finally:
        pager.close()


class _OrderedPager:
    """The requests of one pass: which pages are out, how many may be, and when."""

    def __init__(
        self,
        fetch_page: Callable[[int], PageAnswer],
        capacity: int,
        *,
        pbx: str,
        endpoint: str,
    ) -> None:
        self._fetch_page = fetch_page
        self._capacity = capacity
        self._pbx = pbx
        self._endpoint = endpoint
        self._limit = capacity  # requests allowed in flight now (lowered on 429/503)
        self._resume_at = 0.0  # monotonic; no request starts before it (Retry-After)
        self._wake = threading.Condition()  # an RLock: done-callbacks may run in this thread
        self._outstanding: dict[int, Future[PageAnswer]] = {}  # requested, not yet handed on
        self._next_request = 2
        self._horizon = 1  # the last page the latest total calls for
        self._stop_after: int | None = None  # the earliest page known to have failed
        self._executor: ThreadPoolExecutor | None = None

    def fetch(self, number: int) -> PageAnswer:
        """Fetch page `number` in this thread, hearing 429/503 for the whole pass."""
        with hearing_throttling(self._throttled):
            try:
                return self._fetch_page(number)
            except Exception as exc:
                _name_page(exc, number)
                raise

    def request_ahead(self, number: int, *, last_page: int) -> None:
        """Page `number` is the next one wanted and its predecessor announced `last_page`:
        request pages ahead, up to that one, as far as the bounds allow (none at capacity 1)."""
        if self._capacity == 1:
            return
        with self._wake:
            self._horizon = max(self._horizon, last_page, number)
            self._request_more()

    def answer(self, number: int) -> PageAnswer:
        """Page `number` (the next one wanted, announced to `request_ahead`); requests more
        pages ahead while waiting for it."""
        if self._capacity == 1:
            return self.fetch(number)
        with self._wake:
            while True:
                self._request_more()
                future = self._outstanding.get(number)
                if future is not None and future.done():
                    del self._outstanding[number]
                    return future.result()
                self._wake.wait(timeout=self._pause())

    def _request_more(self) -> None:
        """Start pages up to the horizon while the bounds allow (called holding `_wake`)."""
        for page, future in self._outstanding.items():
            if future.done() and future.exception() is not None:
                self._stop_after = min(page, self._stop_after or page)
        running = sum(not future.done() for future in self._outstanding.values())
        while (
            self._next_request <= self._horizon
            and (self._stop_after is None or self._next_request <= self._stop_after)
            and len(self._outstanding) < self._capacity
            and running < self._limit
            and time.monotonic() >= self._resume_at
        ):
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self._capacity, thread_name_prefix=f"cdr-pages-{self._pbx}"
                )
            future = self._executor.submit(self.fetch, self._next_request)
            self._outstanding[self._next_request] = future
            future.add_done_callback(self._notify)
            self._next_request += 1
            running += 1

    def _pause(self) -> float | None:
        """How long to wait for a page before looking again: until Retry-After has passed if
        the next request waits for it, else until a request finishes."""
        delay = self._resume_at - time.monotonic()
        return delay if delay > 0 else None

    def _notify(self, _future: Future[PageAnswer]) -> None:
        with self._wake:
            self._wake.notify_all()

    def _throttled(self, status: int, retry_after_s: float | None) -> None:
        """A request of this pass was answered 429/503: fewer in flight from now on, and none
        new before the Retry-After time."""
        with self._wake:
            self._limit = max(1, self._limit // 2)
            if retry_after_s:
                self._resume_at = max(self._resume_at, time.monotonic() + retry_after_s)
            limit = self._limit
            self._wake.notify_all()
        logger.warning(
            "PBX %r: %s answered HTTP %d%s; at most %d request(s) in flight for the rest of "
            "this pass",
            self._pbx,
            self._endpoint,
            status,
            f" (Retry-After {retry_after_s:g} s)" if retry_after_s else "",
            limit,
        )

    def close(self) -> None:
        """Cancel the requests not started, wait for those in flight, drop what they bring."""
        with self._wake:
            futures = list(self._outstanding.values())
            self._outstanding.clear()
        for future in futures:
            future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _name_page(exc: Exception, number: int) -> None:
    """Add the page to an error's traceback unless its message names it already."""
    if f"page {number}" not in str(exc):
        exc.add_note(f"while fetching page {number} of a pass over a CDR window")
