"""Switchable faults and request statistics of a running simulator (both thread-safe).

Owns the switches tests flip (`sim.faults`), the day changes drift has made so far, what the
simulator did because of them (`drift_log`), and the counters tests assert on (`sim.stats`).
Vendor handlers and the server read them; nothing here knows HTTP or record contents: a drift
change is kept as indices, sort positions and start instants, rendered by the vendor modules.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

YEASTAR_API_PREFIX = "/openapi/v1.0/"
VENDORS = ("yeastar", "zorio")
DRIFT_ACTIONS = ("insert", "delete")
DRIFT_PLACES = ("ahead", "behind")


class Sentinel(enum.Enum):
    DELETE = "DELETE"


DELETE = Sentinel.DELETE  # `override_record(..., field=DELETE)` removes the field
_UNSET: Any = object()


@dataclass
class FailRule:
    path_prefix: str
    status: int
    times: int
    retry_after: str | None
    body: bytes | None
    content_type: str
    query: Mapping[str, str] | None = None  # only requests with these parameters


@dataclass
class TransportRule:
    """reset / delay / truncate_body of the next `times` requests under `path_prefix`."""

    kind: str
    path_prefix: str
    times: int
    amount: float = 0  # reset: body bytes sent before the RST; delay: seconds


@dataclass(frozen=True)
class DriftRule:
    vendor: str
    day: date
    at_page: int
    action: str
    where: str
    count: int


@dataclass(frozen=True)
class DriftEvent:
    """What one drift did: ids are Yeastar `uid` / Zorio `uuid` values as first served."""

    vendor: str
    day: date
    page: int
    action: str
    where: str
    ids: tuple[str, ...]
    positions: tuple[int, ...]  # in that request's list order (before a delete, after an insert)
    total_before: int
    total_after: int


@dataclass(frozen=True)
class DayChanges:
    """A PBX-local day as drift left it: deleted call indices and inserted calls."""

    deleted: frozenset[int] = frozenset()
    # call index (>= calls_per_day) -> (sort position among the day's indices, start instant)
    inserted: Mapping[int, tuple[float, int]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Override:
    fields: Mapping[str, object]
    replace_with: object = _UNSET

    @property
    def replaces(self) -> bool:
        return self.replace_with is not _UNSET

    def apply(self, record: dict) -> object:
        """The record as listed: replaced whole, or with fields set / removed (DELETE)."""
        if self.replaces:
            return self.replace_with
        out = dict(record)
        for key, value in self.fields.items():
            if value is DELETE:
                out.pop(key, None)
            else:
                out[key] = value
        return out


def _vendor(vendor: str) -> str:
    if vendor not in VENDORS:
        raise ValueError(f"vendor must be one of {VENDORS}, not {vendor!r}")
    return vendor


def _day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _times(times: int) -> int:
    if times < 1:
        raise ValueError(f"times must be >= 1, not {times}")
    return times


class Faults:
    """Fault switches; all off by default. Plain attributes may be assigned directly.

    Recordings and tokens:
    - ``expire_tokens()``: every Yeastar access token issued so far expires now.
    - ``throttle_bytes_per_s``: cap on audio download speed.
    - ``truncate_next_recordings``: next N audio bodies stop after about half (full
      Content-Length sent, connection closed).
    - ``corrupt_next_recordings``: next N audio bodies get a garbage header (same length).
    - ``missing_recordings``: refs the CDR lists with a recording that cannot be downloaded.
    - ``withheld_recordings``: refs whose CDR shows no recording yet (remove to "appear late").
    - ``recording_seconds``: ref -> length in seconds overriding the talk time.

    Lists:
    - ``total_offset``: added to the reported totals (count mismatch).
    - ``drift(vendor, day, at_page=, action=, where=, count=)``: once, the first list request
      for page ``at_page`` whose window covers the PBX-local ``day`` first inserts or deletes
      ``count`` calls of that day, "ahead" of the page (in the part already paged: later pages
      shift) or "behind" it, then answers. The change persists (``sim.calls`` shows it); what
      was done is appended to ``drift_log``. Unfiltered list requests only. A placement the
      window cannot hold (the day has no records on that side) is clamped to the day's part
      of the window; ``drift_log`` says where it landed.
    - ``repeat_across_pages(vendor, day, page=)``: once, page ``page`` of a window covering
      ``day`` starts with the last record of page ``page - 1`` instead of its own first one
      (the first such request spends it; an empty page is served as it is).
    - ``override_record(vendor, cdr_id, **fields)``: the record with that Yeastar ``uid`` /
      Zorio ``uuid`` is listed with fields replaced (``DELETE`` removes one), or replaced
      whole by ``replace_with=`` (any JSON value, e.g. 42 or None); also in ``sim.calls``.

    Transport, by path prefix (the next ``times`` matching requests):
    - ``fail_next(prefix, status, ...)``: that response instead (before any auth check).
    - ``reset_next(prefix, after_bytes=)``: headers with the full Content-Length and
      ``after_bytes`` of the body, then a TCP reset.
    - ``delay_next(prefix, seconds)``: wait before answering.
    - ``truncate_body_next(prefix)``: a complete response (its Content-Length matches) whose
      body is the first half of the real one.

    ``clear()`` switches all of it off and undoes drift.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FailRule] = []
        self._transport: list[TransportRule] = []
        self._drifts: list[DriftRule] = []
        self._repeats: list[tuple[str, date, int]] = []
        self._overrides: dict[str, dict[str, Override]] = {v: {} for v in VENDORS}
        self._changes: dict[str, dict[date, DayChanges]] = {v: {} for v in VENDORS}
        self._drift_log: list[DriftEvent] = []
        self.throttle_bytes_per_s: int | None = None
        self.truncate_next_recordings = 0
        self.corrupt_next_recordings = 0
        self.missing_recordings: set[str] = set()
        self.withheld_recordings: set[str] = set()
        self.recording_seconds: dict[str, int] = {}
        self.total_offset = 0
        self.token_generation = 0  # bumped by expire_tokens()

    # ------------------------------------------------------------------ transport

    def fail_next(
        self,
        path_prefix: str,
        status: int,
        times: int = 1,
        retry_after: str | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests whose path starts with `path_prefix` (and whose
        query has the parameters in `query`, e.g. one day's window) with `status`."""
        if body is None:
            body = b'{"message":"Simulated failure."}'
        with self._lock:
            self._rules.append(
                FailRule(
                    path_prefix,
                    status,
                    times,
                    retry_after,
                    body,
                    content_type,
                    dict(query) if query else None,
                )
            )

    def take_failure(self, path: str, query: Mapping[str, str] | None = None) -> FailRule | None:
        """Consume one pending failure matching `path` (and `query`), if any."""
        given = query or {}
        with self._lock:
            for rule in self._rules:
                wanted = rule.query or {}
                if any(given.get(k) != v for k, v in wanted.items()):
                    continue
                if path.startswith(rule.path_prefix) and rule.times > 0:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def reset_next(self, path_prefix: str, times: int = 1, after_bytes: int = 64) -> None:
        """Send headers and `after_bytes` of the body, then reset the connection (RST)."""
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        self._add_transport(TransportRule("reset", path_prefix, _times(times), after_bytes))

    def delay_next(self, path_prefix: str, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before answering (longer than a client's read timeout, say)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._add_transport(TransportRule("delay", path_prefix, _times(times), seconds))

    def truncate_body_next(self, path_prefix: str, times: int = 1) -> None:
        """Answer with the first half of the body and a Content-Length saying so."""
        self._add_transport(TransportRule("truncate_body", path_prefix, _times(times)))

    def _add_transport(self, rule: TransportRule) -> None:
        with self._lock:
            self._transport.append(rule)

    def take_transport(self, kind: str, path: str) -> TransportRule | None:
        """Consume one pending `kind` rule matching `path`, if any."""
        with self._lock:
            for rule in self._transport:
                if rule.kind == kind and path.startswith(rule.path_prefix):
                    rule.times -= 1
                    if rule.times == 0:
                        self._transport.remove(rule)
                    return rule
        return None

    # ------------------------------------------------------------------ tokens, recordings

    def expire_tokens(self) -> None:
        """All Yeastar access tokens issued until now are expired (refresh tokens still work)."""
        with self._lock:
            self.token_generation += 1

    def take_truncate(self) -> bool:
        with self._lock:
            if self.truncate_next_recordings > 0:
                self.truncate_next_recordings -= 1
                return True
            return False

    def take_corrupt(self) -> bool:
        with self._lock:
            if self.corrupt_next_recordings > 0:
                self.corrupt_next_recordings -= 1
                return True
            return False

    # ------------------------------------------------------------------ drift while paging

    def drift(
        self,
        vendor: str,
        day: date | str,
        *,
        at_page: int,
        action: str,
        where: str = "ahead",
        count: int = 1,
    ) -> None:
        """Arm one change of `day` at the first list request for page `at_page` covering it."""
        if action not in DRIFT_ACTIONS:
            raise ValueError(f"action must be one of {DRIFT_ACTIONS}, not {action!r}")
        if where not in DRIFT_PLACES:
            raise ValueError(f"where must be one of {DRIFT_PLACES}, not {where!r}")
        if at_page < 1 or (where == "ahead" and at_page < 2):
            raise ValueError(f"at_page {at_page}: 'ahead' needs a page >= 2, 'behind' >= 1")
        if count < 1:
            raise ValueError("count must be >= 1")
        rule = DriftRule(_vendor(vendor), _day(day), at_page, action, where, count)
        with self._lock:
            self._drifts.append(rule)

    def take_drift(self, vendor: str, page: int, days: Collection[date]) -> DriftRule | None:
        """Consume the armed drift this request (page `page`, window covering `days`) fires."""
        with self._lock:
            for rule in self._drifts:
                if rule.vendor == vendor and rule.at_page == page and rule.day in days:
                    self._drifts.remove(rule)
                    return rule
        return None

    def repeat_across_pages(self, vendor: str, day: date | str, *, page: int) -> None:
        """Once, page `page` starts with the last record of page `page - 1` (unstable sort)."""
        if page < 2:
            raise ValueError("page must be >= 2: it repeats the previous page's last record")
        with self._lock:
            self._repeats.append((_vendor(vendor), _day(day), page))

    def take_repeat(self, vendor: str, page: int, days: Collection[date]) -> bool:
        with self._lock:
            for item in self._repeats:
                if item[0] == vendor and item[2] == page and item[1] in days:
                    self._repeats.remove(item)
                    return True
        return False

    def day_changes(self, vendor: str) -> dict[date, DayChanges]:
        """The days drift has changed so far (a snapshot; values are immutable)."""
        with self._lock:
            return dict(self._changes[vendor])

    def change_day(
        self,
        vendor: str,
        day: date,
        *,
        deleted: Iterable[int] = (),
        inserted: Iterable[tuple[int, float, int]] = (),
    ) -> DayChanges:
        """Record more changes of a day: deleted indices, inserted (index, position, start)."""
        with self._lock:
            old = self._changes[vendor].get(day, DayChanges())
            added = dict(old.inserted)
            added.update((i, (pos, start)) for i, pos, start in inserted)
            new = DayChanges(old.deleted | frozenset(deleted), MappingProxyType(added))
            self._changes[vendor][day] = new
            return new

    def log_drift(self, event: DriftEvent) -> None:
        with self._lock:
            self._drift_log.append(event)

    @property
    def drift_log(self) -> list[DriftEvent]:
        """Every drift that fired, oldest first."""
        with self._lock:
            return list(self._drift_log)

    # ------------------------------------------------------------------ records unlike the docs

    def override_record(
        self, vendor: str, cdr_id: str, *, replace_with: object = _UNSET, **fields: object
    ) -> None:
        """List record `cdr_id` with `fields` set (DELETE: removed), or as `replace_with`."""
        if replace_with is _UNSET and not fields:
            raise ValueError("override_record needs fields or replace_with")
        if replace_with is not _UNSET and fields:
            raise ValueError("override_record takes fields or replace_with, not both")
        with self._lock:
            table = self._overrides[_vendor(vendor)]
            old = table.get(cdr_id)
            if fields and old is not None and not old.replaces:
                fields = {**old.fields, **fields}
            table[cdr_id] = Override(MappingProxyType(dict(fields)), replace_with)

    def overrides(self, vendor: str) -> Mapping[str, Override]:
        """cdr_id -> Override of a vendor (a snapshot; empty when none is set)."""
        with self._lock:
            table = self._overrides[vendor]
            return MappingProxyType(dict(table)) if table else MappingProxyType({})

    # ------------------------------------------------------------------ all

    def clear(self) -> None:
        """Switch every fault off and undo drift (token generation is kept: expired tokens
        stay expired; `drift_log` is emptied)."""
        with self._lock:
            self._rules.clear()
            self._transport.clear()
            self._drifts.clear()
            self._repeats.clear()
            for vendor in VENDORS:
                self._overrides[vendor] = {}
                self._changes[vendor] = {}
            self._drift_log.clear()
            self.throttle_bytes_per_s = None
            self.truncate_next_recordings = 0
            self.corrupt_next_recordings = 0
            self.missing_recordings = set()
            self.withheld_recordings = set()
            self.recording_seconds = {}
            self.total_offset = 0


class Stats:
    """Request counters. Paths are recorded without query strings (no secrets)."""

    def __init__(self, keep_requests: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._requests: deque[tuple[str, str, int]] = deque(maxlen=keep_requests)
        self._in_flight = 0
        # (monotonic time, requests in flight then, this one included) of each request's arrival
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=keep_requests)
        self._mp3_in_flight = 0
        self.max_in_flight = 0
        self.max_concurrent_mp3 = 0
        self.audio_bytes_sent = 0

    def count(self, endpoint: str) -> int:
        """Requests to an endpoint: Yeastar by name ("get_token", "cdr/search"; the full
        "/openapi/v1.0/..." path works too, downloads are "/api/download"), Zorio by path
        template ("/api/pbx/cdr", "/api/pbx/cdr/{uuid}", "/api/pbx/cdr/{uuid}/recording",
        "/api/public/recordings/{id}/audio")."""
        endpoint = endpoint.removeprefix(YEASTAR_API_PREFIX)
        with self._lock:
            return self._counts[endpoint]

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path without query, status) of recent requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def record(self, method: str, path: str, endpoint: str, status: int) -> None:
        with self._lock:
            self._counts[endpoint] += 1
            self._requests.append((method, path, status))

    @property
    def arrivals(self) -> list[tuple[float, int]]:
        """(`time.monotonic()`, requests in flight counting this one) as each request arrived,
        oldest first: how the concurrency a client uses changes over a run."""
        with self._lock:
            return list(self._arrivals)

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._arrivals.append((time.monotonic(), self._in_flight))

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def mp3_enter(self) -> int:
        """Register an mp3 download; returns how many are now running (including this one)."""
        with self._lock:
            self._mp3_in_flight += 1
            self.max_concurrent_mp3 = max(self.max_concurrent_mp3, self._mp3_in_flight)
            return self._mp3_in_flight

    def mp3_leave(self) -> None:
        with self._lock:
            self._mp3_in_flight -= 1

    def add_audio_bytes(self, n: int) -> None:
        with self._lock:
            self.audio_bytes_sent += n

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._requests.clear()
            self._arrivals.clear()
            self.max_in_flight = self._in_flight
            self.max_concurrent_mp3 = self._mp3_in_flight
            self.audio_bytes_sent = 0
