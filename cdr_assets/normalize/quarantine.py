"""Normalize a batch of records, setting aside the few that cannot be normalized.

Owns the quarantine rule: one record the vendor got wrong (not an object, no id, a wrong type,
an unparseable time, a number out of range) must not fail a whole day, but a changed format
must. A clean batch costs exactly one normalizer call. Otherwise each record a normalizer call
names is removed and the rest normalized again (k bad records: k + 1 calls, plus none for
records that are not objects at all, which are removed at once); more than `max_rejects` in one
batch raises `TooManyRejectedRecords`. A body that is not JSON at all is no bad record: its
`RecordFormatError` (index None) propagates.

It must not know pages (the caller maps `RejectedRecord.index` to page and position), files or
HTTP; the vendor specifics come from the registry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from cdr_assets.errors import RecordFormatError, TooManyRejectedRecords
from cdr_assets.normalize.common import (
    RECORD_FIELD,
    compact_json,
    not_an_object,
    record_id_of,
    zone_key,
)
from cdr_assets.normalize.registry import VendorNormalizer, vendor_normalizer
from cdr_assets.records import JsonRecords

_REASONS_SHOWN = 3
_WHITESPACE = json.decoder.WHITESPACE


@dataclass(frozen=True)
class RejectedRecord:
    """A record that could not be normalized, kept exactly as received."""

    index: int
    """Position among the records given to `normalize_quarantined`."""
    cdr_id: str | None
    field: str
    """The field at fault; `<record>` when the record as a whole is (not a JSON object)."""
    reason: str
    """What is wrong with the field, e.g. `must be an integer, got 'abc'`."""
    raw: str
    """The record as received: its original JSON text, or compact JSON of a parsed record."""
    start: datetime | None
    """Best-effort start instant (UTC); None when the record has no usable one."""
    call_date: date | None
    """Local date of `start` in the PBX's timezone: the day the record belongs to, if known."""

    def describe(self) -> str:
        """One line naming the record and what is wrong, for logs and error messages."""
        where = f"record {self.cdr_id!r}" if self.cdr_id else "a record"
        return f"{where} (index {self.index}): field {self.field!r} {self.reason}"


@dataclass(frozen=True)
class NormalizedBatch:
    """The good records as a CDR_SCHEMA table (input order) and the rejected ones."""

    table: pa.Table
    rejects: list[RejectedRecord]


def normalize_quarantined(
    vendor: str,
    records: Sequence[Any] | JsonRecords,
    *,
    pbx: str,
    timezone: ZoneInfo | str,
    ingested_at: datetime,
    max_rejects: int,
) -> NormalizedBatch:
    """Normalize `records` with `vendor`'s normalizer, quarantining the records it refuses.

    Raises `TooManyRejectedRecords` when more than `max_rejects` records are refused, and the
    normalizer's `RecordFormatError` (index None) when JSON text is not valid JSON as a whole.
    """
    if max_rejects < 0:
        raise ValueError(f"max_rejects must be >= 0, got {max_rejects}")
    entry = vendor_normalizer(vendor)
    try:
        table = entry.normalize(records, pbx=pbx, timezone=timezone, ingested_at=ingested_at)
    except RecordFormatError as exc:
        if exc.index is None:
            raise
        first = exc
    else:
        return NormalizedBatch(table, [])
    quarantine = _Quarantine(entry, records, pbx=pbx, timezone=timezone, ingested_at=ingested_at)
    return quarantine.run(first, max_rejects)


class _Quarantine:
    """The slow path of one batch: its records one by one, as values and (for text) as text."""

    def __init__(
        self,
        entry: VendorNormalizer,
        records: Sequence[Any] | JsonRecords,
        *,
        pbx: str,
        timezone: ZoneInfo | str,
        ingested_at: datetime,
    ) -> None:
        self.entry = entry
        self.pbx = pbx
        self.timezone = timezone
        self.zone = ZoneInfo(zone_key(timezone))
        self.ingested_at = ingested_at
        self.records: Sequence[Any] = ()
        self.texts: list[bytes] | None = None
        if isinstance(records, JsonRecords):
            self.texts = _element_texts(records)
            self.is_object = [text.startswith(b"{") for text in self.texts]
        else:
            self.records = records
            self.is_object = [isinstance(record, dict) for record in records]

    def run(self, first: RecordFormatError, max_rejects: int) -> NormalizedBatch:
        n = len(self.is_object)
        rejected = {
            i: self._reject(i, RECORD_FIELD, not_an_object(self._value(i)))
            for i in range(n)
            if not self.is_object[i]
        }
        assert first.index is not None
        if first.index not in rejected:
            rejected[first.index] = self._reject(first.index, first.field, first.detail)
        kept = [i for i in range(n) if i not in rejected]
        last = first
        while True:
            if len(rejected) > max_rejects:
                shown = [rejected[i].describe() for i in sorted(rejected)[:_REASONS_SHOWN]]
                raise TooManyRejectedRecords(
                    self.pbx, self.entry.vendor, len(rejected), n, max_rejects, shown
                ) from last
            try:
                table = self.entry.normalize(
                    self._subset(kept),
                    pbx=self.pbx,
                    timezone=self.timezone,
                    ingested_at=self.ingested_at,
                )
            except RecordFormatError as exc:
                if exc.index is None:
                    raise
                index = kept.pop(exc.index)
                rejected[index] = self._reject(index, exc.field, exc.detail)
                last = exc
                continue
            return NormalizedBatch(table, [rejected[i] for i in sorted(rejected)])

    def _subset(self, kept: list[int]) -> Sequence[Any] | JsonRecords:
        if self.texts is None:
            return [self.records[i] for i in kept]
        # One object per line (compact texts hold no newline), so each stays exactly as sent.
        return JsonRecords(b"\n".join(self.texts[i] for i in kept), len(kept))

    def _value(self, index: int) -> Any:
        """Record `index` as a value (text is parsed here: only the rejected few ever are)."""
        return self.records[index] if self.texts is None else orjson.loads(self.texts[index])

    def _reject(self, index: int, field: str, reason: str) -> RejectedRecord:
        value = self._value(index)
        start = self.entry.record_start(value)
        return RejectedRecord(
            index=index,
            cdr_id=record_id_of(value, self.entry.id_field),
            field=field,
            reason=reason,
            raw=self.texts[index].decode() if self.texts is not None else compact_json(value),
            start=start,
            call_date=start.astimezone(self.zone).date() if start is not None else None,
        )


def _element_texts(records: JsonRecords) -> list[bytes]:
    """The exact text of each element of the records' JSON array, in order.

    The lines were cut at every `},{`, also at one inside a string or between nested objects,
    so they are re-joined and the array is walked element by element (slow path only). The
    normalizer already parsed this text into records, so it is valid JSON and valid UTF-8.
    """
    text = ("[" + records.lines.replace(b"}\n{", b"},{").decode() + "]") if records.lines else "[]"
    decoder = json.JSONDecoder()
    texts: list[bytes] = []
    pos = _WHITESPACE.match(text, 1).end()
    if text[pos] == "]":
        return texts
    while True:
        _, end = decoder.raw_decode(text, pos)
        texts.append(text[pos:end].encode())
        pos = _WHITESPACE.match(text, end).end()
        if text[pos] == "]":
            return texts
        pos = _WHITESPACE.match(text, pos + 1).end()  # past the comma
