"""What both simulated vendor APIs share: calls, faults, JSON style, list pages and the cache.

Owns the vendor-independent part of serving records: a call as listed now (drift-inserted
calls, undocumented extra keys, record overrides), list pages of a window (the cached text
path for plain pages, the dict path when faults change records, drift and repeated records
applied on the way), and how replies are written (JSON style, content types). Each vendor
module adds its endpoints, auth, envelopes and record quirks. It must not know HTTP routing
(server.py does).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any, ClassVar, Protocol

from .audio import CONTENT_TYPES
from .config import SimulatorConfig
from .data import Generated
from .faults import DriftEvent, DriftRule, Faults, Override, Stats
from .jsontext import JsonStyle, Raw
from .listing import Listing, Ref, plan_drift
from .pagecache import PageCache
from .protocol import Reply

RecordFilter = Callable[[dict], bool]


def extra_record_keys() -> dict[str, object]:
    """Keys no vendor page documents, as `extra_keys` adds them to every record."""
    return {
        "tags": [{"id": 3, "name": "vip"}, {"id": 5, "name": "callback"}],
        "crm": {"contact": {"id": "A-17", "name": "Nguyễn Văn An"}},
        "note": None,
        "score": 4,
    }


def request_id() -> str:
    return str(uuid.uuid4())


class _Calls(Protocol):
    """The vendor call generators' common face (data.YeastarCalls, data.ZorioCalls)."""

    index: Any

    def decode_ref(self, ref: str) -> tuple[date, int] | None: ...

    def generate(self, d: date, i: int, start: int | None = None) -> Generated: ...

    def record_json(self, d: date, i: int, withheld: frozenset[str]) -> str: ...


class VendorApi:
    """Base of YeastarApi and ZorioApi."""

    vendor: ClassVar[str]
    id_field: ClassVar[str]  # the record's id key: Yeastar "uid", Zorio "uuid"
    calls: _Calls

    def __init__(
        self,
        config: SimulatorConfig,
        faults: Faults,
        stats: Stats,
        cache: PageCache | None,
        *,
        php_json: bool = False,
    ) -> None:
        self.cache = cache if cache is not None else PageCache(config.page_cache_mb * 2**20)
        self.seed = config.seed
        self.faults = faults
        self.stats = stats
        self.style = JsonStyle(php=php_json, pretty=config.pretty)
        self.json_type = config.json_content_type
        self.audio_content_type = config.audio_content_type
        self.extra_keys = config.extra_keys

    # ------------------------------------------------------------------ replies

    def reply(
        self, status: int, obj: object, headers: list[tuple[str, str]] | None = None
    ) -> Reply:
        """A JSON reply written in this server's style."""
        return Reply(status, self.style.dumps(obj), self.json_type, headers or [])

    def body_reply(self, entries: Iterable[tuple[str, object]], status: int = 200) -> Reply:
        """A JSON object reply from (key, value) pairs; `Raw` values are spliced as text."""
        return Reply(status, self.style.body(entries), self.json_type)

    def audio_type(self, fmt: str) -> str | None:
        """Content-Type of an audio reply (None: the header is left out)."""
        if self.audio_content_type == "octet-stream":
            return "application/octet-stream"
        return None if self.audio_content_type == "none" else CONTENT_TYPES[fmt]

    # ------------------------------------------------------------------ records

    def generate(self, d: date, i: int) -> Generated:
        """Call (d, i), including calls drift inserted (indices >= calls_per_day)."""
        if i < self.calls.index.n:
            return self.calls.generate(d, i)
        change = self.faults.day_changes(self.vendor).get(d)
        if change is None or i not in change.inserted:
            raise KeyError(f"no {self.vendor} call {i} on {d}")
        gen = self.calls.generate(d, i, start=change.inserted[i][1])
        return Generated(self.without_recording(gen.record), 0, gen.answer_ts)

    def without_recording(self, record: dict) -> dict:
        """The record of a call that has no recording (drift-inserted calls have none)."""
        raise NotImplementedError

    def exists(self, d: date, i: int) -> bool:
        """Whether call (d, i) is still served (drift may have deleted or inserted it)."""
        change = self.faults.day_changes(self.vendor).get(d)
        if change is not None and i in change.deleted:
            return False
        return i < self.calls.index.n or (change is not None and i in change.inserted)

    def render(self, d: date, i: int) -> dict:
        """Record (d, i) as the API serves it now (faults applied), without extra keys."""
        raise NotImplementedError

    def decorate(self, record: dict) -> dict:
        """The record with the undocumented extra keys when `extra_keys` is on."""
        if not self.extra_keys:
            return record
        items = list(record.items())
        return dict(items[:2] + list(extra_record_keys().items()) + items[2:])

    def listed(self, d: date, i: int, overrides: Mapping[str, Override]) -> object:
        """Record (d, i) as list pages show it: decorated, then overridden."""
        rec = self.decorate(self.render(d, i))
        override = overrides.get(rec[self.id_field]) if overrides else None
        return rec if override is None else override.apply(rec)

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

    def day_records(self, d: date) -> list[object]:
        """Every record of a PBX-local day in time order, as list pages show them now."""
        ld = self.calls.index.day(d)
        listing = self.listing([(ld.start, ld.end)])
        overrides = self.faults.overrides(self.vendor)
        return [self.listed(d, i, overrides) for d, i in listing.refs()]

    # ------------------------------------------------------------------ list pages

    def listing(self, intervals: list[tuple[int, int]], descending: bool = False) -> Listing:
        return Listing(
            self.calls.index, intervals, descending, self.faults.day_changes(self.vendor)
        )

    def list_page(
        self,
        intervals: list[tuple[int, int]],
        page: int,
        size: int,
        *,
        descending: bool = False,
        record_filter: RecordFilter | None = None,
    ) -> tuple[int, int, bytes]:
        """(total, record count, records as comma-joined JSON text) of one list request.

        Unfiltered requests fire armed drift and repeats; plain pages (no record faults
        or extra keys, no changed day) come from the page cache's text path.
        """
        offset = (page - 1) * size
        listing = self.listing(intervals, descending)
        if record_filter is not None:
            return self._filtered_page(listing, offset, size, record_filter)
        rule = self.faults.take_drift(self.vendor, page, listing.days)
        if rule is not None:
            self._drift(rule, listing, offset, size)
            listing = self.listing(intervals, descending)
        if self.faults.take_repeat(self.vendor, page, listing.days) and offset < listing.total:
            refs = listing.page(offset - 1, 1) + listing.page(offset + 1, size - 1)
            return listing.total, len(refs), self.records_text(refs)
        if (
            listing.key is not None
            and not self.extra_keys
            and not self.faults.overrides(self.vendor)
        ):
            count, text = self.page_text(listing, offset, size)
            return listing.total, count, text
        refs = listing.page(offset, size)
        return listing.total, len(refs), self.records_text(refs)

    def _filtered_page(
        self, listing: Listing, offset: int, size: int, record_filter: RecordFilter
    ) -> tuple[int, int, bytes]:
        total, refs = 0, []
        for ref in listing.refs():
            if record_filter(self.render(*ref)):
                if offset <= total < offset + size:
                    refs.append(ref)
                total += 1
        return total, len(refs), self.records_text(refs)

    def records_text(self, refs: list[Ref]) -> bytes:
        """The records of `refs` as listed, comma-joined compact JSON in this style."""
        overrides = self.faults.overrides(self.vendor)
        compact = self.style.compact
        return b",".join(compact(self.listed(d, i, overrides)) for d, i in refs)

    def page_text(self, listing: Listing, offset: int, limit: int) -> tuple[int, bytes]:
        """(count, JSON text of the records, comma-separated) of a plain list page.

        Byte-equal to dumping `render()` dicts (in this server's escaping); served from the
        page cache when the same window, order, slice and withheld set were rendered before.
        """
        withheld = frozenset(self.faults.withheld_recordings)
        key = (self.vendor, listing.key, offset, limit, withheld, self.style.php)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        items = listing.page(offset, limit)
        record_json = self.calls.record_json
        text = self.style.escape(",".join([record_json(d, i, withheld) for d, i in items]).encode())
        self.cache.put(key, len(items), text)
        return len(items), text

    def _drift(self, rule: DriftRule, listing: Listing, offset: int, size: int) -> None:
        """Change the rule's day as it says, relative to this request's page, and log it."""
        change = self.faults.day_changes(self.vendor).get(rule.day)
        first_new = self.calls.index.n + (len(change.inserted) if change else 0)
        plan = plan_drift(
            listing, rule.day, rule.action, rule.where, rule.count, offset, size, first_new
        )
        ids = [self.render(*ref)[self.id_field] for ref in plan.deleted]
        self.faults.change_day(
            self.vendor, rule.day, deleted=[i for _, i in plan.deleted], inserted=plan.inserted
        )
        ids += [self.render(rule.day, i)[self.id_field] for i, _, _ in plan.inserted]
        after = self.listing(listing.intervals, listing.descending).total
        self.faults.log_drift(
            DriftEvent(
                self.vendor,
                rule.day,
                rule.at_page,
                rule.action,
                rule.where,
                tuple(ids),
                plan.positions,
                listing.total,
                after,
            )
        )

    @staticmethod
    def data(text: bytes) -> Raw:
        """A JSON array of already-written records, for `body_reply`."""
        return Raw((b"[", text, b"]"))
