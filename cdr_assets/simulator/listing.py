"""What a list request's window holds now, in the order the server lists it.

Owns the mapping from a window (instant intervals) to record references `(day, index)` in list
order, ascending or descending by start instant: arithmetic over `CallIndex` segments while no
day of the window has drift changes (any page of a million-call day in O(page)), a materialized
list once one has (drift is for small test days). Also where a drift change lands in that
order (`plan_drift`). It must not render records, apply faults by itself or know HTTP.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from .data import CallIndex, page_of_segments
from .faults import DayChanges

Ref = tuple[date, int]


class Listing:
    """The records of a window as a list request sees them (a snapshot of the day changes)."""

    def __init__(
        self,
        index: CallIndex,
        intervals: list[tuple[int, int]],
        descending: bool,
        changes: Mapping[date, DayChanges],
    ) -> None:
        self.index = index
        self.intervals = intervals
        self.descending = descending
        self.segments = [seg for a, b in intervals for seg in index.segments(a, b)]
        self.days = self._covered_days()
        self.changes = {d: changes[d] for d in self.days if d in changes}
        self._refs: list[Ref] | None = None
        if self.changes:
            refs = self._materialize()
            self._refs = refs[::-1] if descending else refs
            self.total = len(refs)
        else:
            self.total = sum(hi - lo for _, lo, hi in self.segments)

    def _covered_days(self) -> list[date]:
        days: list[date] = []
        for a, b in self.intervals:
            if b <= a:
                continue
            d, last = self.index.day_of(a), self.index.day_of(b - 1)
            while d <= last:
                if not days or days[-1] < d:
                    days.append(d)
                d += timedelta(days=1)
        return days

    def _materialize(self) -> list[Ref]:
        refs: list[Ref] = []
        idx = self.index
        for a, b in self.intervals:
            if b <= a:
                continue
            d, last = idx.day_of(a), idx.day_of(b - 1)
            while d <= last:
                lo, hi = idx.first_at_or_after(d, a), idx.first_at_or_after(d, b)
                ch = self.changes.get(d)
                if ch is None:
                    refs.extend((d, i) for i in range(lo, hi))
                else:
                    keyed = [(float(i), i) for i in range(lo, hi) if i not in ch.deleted]
                    keyed += [
                        (pos, i)
                        for i, (pos, start) in ch.inserted.items()
                        if a <= start < b and i not in ch.deleted
                    ]
                    keyed.sort()
                    refs.extend((d, i) for _, i in keyed)
                d += timedelta(days=1)
        return refs

    @property
    def key(self) -> Hashable | None:
        """What the page cache may key this window's pages by (None: not cacheable)."""
        return None if self._refs is not None else (tuple(self.segments), self.descending)

    def page(self, offset: int, limit: int) -> list[Ref]:
        """The refs at list positions [offset, offset + limit)."""
        if limit <= 0 or offset >= self.total:
            return []
        if self._refs is not None:
            return self._refs[offset : offset + limit]
        if not self.descending:
            return page_of_segments(self.segments, offset, limit)
        lo = max(0, self.total - offset - limit)
        return page_of_segments(self.segments, lo, self.total - offset - lo)[::-1]

    def refs(self) -> Iterator[Ref]:
        """Every ref in list order."""
        if self._refs is not None:
            yield from self._refs
            return
        segments = reversed(self.segments) if self.descending else self.segments
        for d, lo, hi in segments:
            indices = range(hi - 1, lo - 1, -1) if self.descending else range(lo, hi)
            for i in indices:
                yield d, i

    def start_of(self, ref: Ref) -> int:
        d, i = ref
        ch = self.changes.get(d)
        if ch is not None and i in ch.inserted:
            return ch.inserted[i][1]
        return self.index.start_of(d, i)

    def position_key(self, ref: Ref) -> float:
        """Sort position of a ref among its day's calls (a generated call's is its index)."""
        d, i = ref
        ch = self.changes.get(d)
        return ch.inserted[i][0] if ch is not None and i in ch.inserted else float(i)

    def interval_of(self, ts: int) -> tuple[int, int]:
        return next((a, b) for a, b in self.intervals if a <= ts < b)


@dataclass(frozen=True)
class DriftPlan:
    """Where one drift change lands: refs to delete, or (index, position, start) to insert."""

    deleted: tuple[Ref, ...]
    inserted: tuple[tuple[int, float, int], ...]
    positions: tuple[int, ...]  # list positions: of the deleted (before), of the inserted (after)


def plan_drift(
    listing: Listing,
    day: date,
    action: str,
    where: str,
    count: int,
    offset: int,
    limit: int,
    first_new_index: int,
) -> DriftPlan:
    """Place `count` deletions or insertions of `day` ahead of / behind the page [offset, +limit).

    Ahead = at list positions before `offset` (already paged: every later page shifts by
    `count`); behind = at or after `offset + limit` (not paged yet). Placements are clamped to
    the day's part of the window; a day with no records in the window gets no change.
    """
    refs = list(listing.refs())
    mine = [j for j, (d, _) in enumerate(refs) if d == day]
    if not mine:
        return DriftPlan((), (), ())
    if action == "delete":
        if where == "ahead":
            chosen = [j for j in mine if j < offset][-count:]
        else:
            chosen = [j for j in mine if j >= offset + limit][:count]
        return DriftPlan(tuple(refs[j] for j in chosen), (), tuple(chosen))
    if where == "ahead":
        q = max(min(offset - 1, mine[-1] + 1), mine[0])
    else:
        q = min(max(offset + limit, mine[0]), mine[-1] + 1)
    before = refs[q - 1] if q > 0 and refs[q - 1][0] == day else None
    after = refs[q] if q < len(refs) and refs[q][0] == day else None
    earlier, later = (after, before) if listing.descending else (before, after)
    lo_pos, lo_ts, hi_pos, hi_ts = _insert_bounds(listing, day, earlier, later)
    inserted = []
    for k in range(count):
        f = (k + 1) / (count + 1)
        inserted.append(
            (first_new_index + k, lo_pos + f * (hi_pos - lo_pos), lo_ts + int(f * (hi_ts - lo_ts)))
        )
    return DriftPlan((), tuple(inserted), tuple(range(q, q + count)))


def _insert_bounds(
    listing: Listing, day: date, earlier: Ref | None, later: Ref | None
) -> tuple[float, int, float, int]:
    """(position, start) just before and just after the insertion point, in time order.

    A missing neighbour (the point is at the edge of the day's part of the window) is replaced
    by the edge of the window's interval within the day, one position away from the other.
    """
    ld = listing.index.day(day)
    if earlier is not None and later is not None:
        return (
            listing.position_key(earlier),
            listing.start_of(earlier),
            listing.position_key(later),
            listing.start_of(later),
        )
    if later is not None:
        pos, ts = listing.position_key(later), listing.start_of(later)
        return pos - 1, max(listing.interval_of(ts)[0], ld.start), pos, ts
    assert earlier is not None  # the day has records in the window
    pos, ts = listing.position_key(earlier), listing.start_of(earlier)
    return pos, ts, pos + 1, min(listing.interval_of(ts)[1], ld.end) - 1
