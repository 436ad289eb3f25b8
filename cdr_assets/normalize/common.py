"""Vectorised building blocks shared by the vendor normalizers.

Owns the page-level mechanics every vendor needs: pulling typed columns out of a list of dicts
in one pass, the slow scan that names the bad record when the fast path is refused, the `raw`
JSON column, enum mapping, blank-to-null, local dates, and the final CDR_SCHEMA table.
It must not know any vendor's field names or meanings (those live in `yeastar.py`/`zorio.py`),
and must not do per-record Python work on the fast path beyond what pyarrow does in C++.

Lenient input types, applied only when the strict fast path is refused (documented choice):
- integer fields accept ints, decimal integer strings ("7", " 7 ") and finite floats, which are
  truncated toward zero (7.5 -> 7: pyarrow's fast path does this and the slow path matches it).
  A blank string counts as absent. Anything else ("abc", "7.5", true, NaN, a list, an object)
  is a `RecordFormatError`.
- text fields accept strings, and integers (turned into their decimal text, e.g. a SIP code
  486). Floats, booleans, lists and objects are a `RecordFormatError`.
- boolean fields accept true/false, 0/1 and the strings "true"/"false"/"1"/"0".
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from cdr_assets.errors import RecordFormatError
from cdr_assets.records import JsonRecords
from cdr_assets.schema import CDR_SCHEMA, UTC_TIMESTAMP

US_PER_S = 1_000_000
_INT_TEXT = re.compile(r"[+-]?\d+")
_TRUE_TEXT = frozenset({"true", "1"})
_FALSE_TEXT = frozenset({"false", "0", ""})
# No lazy quantifiers: RE2 runs this ~5x faster than `(?P<name>.*?)\s*<...`; the parts are
# trimmed afterwards.
_NAME_NUMBER = r"^(?P<name>[^<]*)<(?P<number>[^<>]*)>$"
# 1 MiB blocks: a 10,000-record batch is parsed on every core; bigger blocks parse serially.
_JSON_READ = pj.ReadOptions(block_size=1 << 20)

#: `RecordFormatError.field` when the record as a whole is wrong (not an object, not JSON).
RECORD_FIELD = "<record>"


def record_id_of(record: Any, id_field: str) -> str | None:
    """The record's id as the `cdr_id` column would hold it (trimmed text, or an integer's
    decimal text); None when the record has none or its id is of no usable type."""
    if not isinstance(record, dict):
        return None
    value = record.get(id_field)
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def not_an_object(record: Any) -> str:
    """What is wrong with a record that is not a JSON object."""
    return f"must be a JSON object, got {type(record).__name__} {_short(record)}"


class PageReader:
    """One page of one vendor's records, with the context a `RecordFormatError` needs.

    The records come as dicts or as unparsed `JsonRecords`; the latter are parsed straight into
    Arrow by `columns` and become dicts only if that is refused (or an error must name one).
    """

    def __init__(self, records: Sequence[Any] | JsonRecords, *, vendor: str, id_field: str) -> None:
        self.vendor = vendor
        self.id_field = id_field
        self._json: JsonRecords | None = None
        self._raw: pa.Array | None = None
        self._records: Sequence[Any] | None = None
        if isinstance(records, JsonRecords):
            self._json = records
        else:
            self._set_records(records)

    def _set_records(self, records: Sequence[Any]) -> None:
        if set(map(type, records)) - {dict}:  # C-speed scan; the loop below runs only on error
            for i, record in enumerate(records):
                if not isinstance(record, dict):
                    raise RecordFormatError(
                        self.vendor, RECORD_FIELD, None, not_an_object(record), index=i
                    )
        self._records = records

    @property
    def records(self) -> Sequence[Any]:
        """The records as dicts (parsed from the JSON text on first use)."""
        if self._records is None:
            assert self._json is not None
            try:
                self._set_records(self._json.dicts())
            except orjson.JSONDecodeError as exc:
                raise RecordFormatError(
                    self.vendor, RECORD_FIELD, None, f"is not valid JSON ({exc})"
                ) from None
        assert self._records is not None
        return self._records

    def __len__(self) -> int:
        if self._records is None and self._json is not None:
            return len(self._json)
        return len(self.records)

    def error(self, field: str, index: int, detail: str) -> RecordFormatError:
        """A RecordFormatError naming the field and the record's id, carrying its index."""
        record_id = record_id_of(self.records[index], self.id_field)
        return RecordFormatError(self.vendor, field, record_id, detail, index=index)

    # -- extraction ------------------------------------------------------------------------

    def columns(self, fields: pa.StructType) -> dict[str, pa.Array]:
        """Typed arrays for the struct's fields (absent keys become nulls; others are ignored).

        Fast path: one `pa.array(records, struct)` call, all in C++. If pyarrow refuses the page
        (a numeric string, an int where text belongs, a bad value), each field is retried on its
        own and only a refused field pays for a Python scan, which either coerces the value
        leniently or raises a RecordFormatError naming the field and record.
        """
        names = [fields.field(i).name for i in range(fields.num_fields)]
        if self._records is None:
            parsed = self._parse_json(fields)
            if parsed is not None:
                return {name: parsed.column(name).combine_chunks() for name in names}
        try:
            struct = pa.array(self.records, type=fields)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            return {name: self._column(name, fields.field(i).type) for i, name in enumerate(names)}
        return {name: struct.field(i) for i, name in enumerate(names)}

    def _parse_json(self, fields: pa.StructType) -> pa.Table | None:
        """The JSON lines parsed by pyarrow (C++, on all cores, without the GIL) into `fields`,
        or None when it refuses them or a line is not exactly one object; the raw column is
        cut from the same text.

        Its strictness matches `pa.array`'s fast path (no number for text, no text for a number,
        no float for an integer; unknown fields ignored), so whatever it refuses takes the dict
        path, with its lenient conversions and its errors naming field and record.
        """
        assert self._json is not None
        lines = self._json.lines
        options = pj.ParseOptions(
            explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore"
        )
        try:
            table = pj.read_json(
                pa.BufferReader(lines), read_options=_JSON_READ, parse_options=options
            )
            raw = _split_lines(lines)
            raw.validate(full=True)  # UTF-8, also in fields the parse ignored
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        if table.num_rows != len(self._json) or len(raw) != len(self._json):
            return None  # a line held more than one object, or a blank line
        self._raw = raw
        return table

    def _column(self, name: str, typ: pa.DataType) -> pa.Array:
        values = [record.get(name) for record in self.records]
        try:
            return pa.array(values, type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            pass
        convert = _CONVERTERS[typ]
        out: list[Any] = []
        for i, value in enumerate(values):
            try:
                out.append(convert(value))
            except (TypeError, ValueError) as exc:
                raise self.error(name, i, str(exc)) from None
        try:
            return pa.array(out, type=typ)
        except (pa.ArrowInvalid, OverflowError) as exc:  # e.g. an integer beyond int64
            index = _first_out_of_range(out)
            raise self.error(name, index, f"is out of range: {exc}") from None

    # -- checks ----------------------------------------------------------------------------

    def require_text(self, name: str, values: pa.Array) -> pa.Array:
        """`values` trimmed, raising if any record lacks the field or has it blank."""
        trimmed = pc.utf8_trim_whitespace(values)
        bad = pc.or_kleene(pc.is_null(trimmed), pc.equal(trimmed, ""))
        self._raise_first(name, bad, "is missing or blank")
        return trimmed

    def require_present(self, name: str, values: pa.Array) -> pa.Array:
        """`values`, raising if any record lacks the field or has it null."""
        self._raise_first(name, pc.is_null(values), "is missing or null")
        return values

    def to_int32(self, name: str, values: pa.Array) -> pa.Array:
        """`values` as int32, naming the record whose value does not fit."""
        try:
            return values.cast(pa.int32())
        except pa.ArrowInvalid:
            big = pc.or_kleene(pc.greater(values, 2**31 - 1), pc.less(values, -(2**31))).fill_null(
                False
            )
            self._raise_first(name, big, "does not fit a 32-bit integer")
            raise

    def seconds_to_us(self, name: str, values: pa.Array) -> pa.Array:
        """Whole seconds (int64) as microseconds (int64), naming the record that overflows."""
        try:
            return pc.multiply_checked(values, US_PER_S)
        except pa.ArrowInvalid:
            limit = (2**63 - 1) // US_PER_S
            big = pc.greater(pc.abs(values), limit).fill_null(False)
            self._raise_first(name, big, "is out of range")
            raise

    def iso_instants(self, columns: Mapping[str, pa.Array]) -> list[pa.Array]:
        """ISO 8601 text columns -> UTC timestamps (us), parsed in one pass; nulls stay null.

        Accepts `Z`, `+hh:mm`, `+hhmm`, a space instead of `T`, and up to 9 fractional digits
        (truncated to microseconds). Blank text counts as null. A string without an offset is
        taken as UTC, because Zorio's own naive `created_at` equals its `end_time` in UTC on the
        vendor page.
        """
        names = list(columns)
        n = len(self)
        text = blank_to_null(pa.concat_arrays([columns[name] for name in names]))
        try:
            parsed = _cast_iso(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            has_offset = pc.match_substring_regex(text, r"(Z|z|[+-]\d{2}(:?\d{2})?)$")
            text = pc.if_else(has_offset, text, pc.binary_join_element_wise(text, "Z", ""))
            try:
                parsed = _cast_iso(text)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                index = _first_unparseable(text)
                name, row = names[index // n], index % n
                raise self.error(
                    name, row, f"is not an ISO 8601 date-time: {columns[name][row].as_py()!r}"
                ) from None
        return [parsed.slice(i * n, n) for i in range(len(names))]

    def _raise_first(self, name: str, mask: pa.Array, detail: str) -> None:
        if pc.any(mask).as_py():
            index = pc.index(mask, True).as_py()
            raise self.error(name, index, detail)

    # -- raw -------------------------------------------------------------------------------

    def raw_json(self) -> pa.Array:
        """Each record as compact JSON text, keys in the order received.

        One `orjson.dumps` of the whole page (per-record calls cost ~10x more), split on the
        `},{` between records. A `},{` inside a value would add pieces, so the count check
        proves the split exact; otherwise each record is serialized on its own.
        """
        if self._raw is not None:
            return self._raw
        n = len(self.records)
        try:
            blob = orjson.dumps(self.records)
        except (orjson.JSONEncodeError, TypeError):
            return pa.array([compact_json(r) for r in self.records], type=pa.string())
        # Built over the blob's own buffer: `pa.array([memoryview(...)])` never released the
        # memoryview on pyarrow 26, which kept every page's blob alive (memory grew per page).
        body = pa.py_buffer(blob).slice(2, max(len(blob) - 4, 0))
        offsets = pa.array([0, body.size], pa.int32()).buffers()[1]
        inner = pa.Array.from_buffers(pa.string(), 1, [None, offsets, body])
        pieces = pc.split_pattern(inner, "},{").flatten()
        if len(pieces) != n:
            return pa.array([compact_json(r) for r in self.records], type=pa.string())
        return pc.binary_join_element_wise("{", pieces, "}", "")


def _split_lines(lines: bytes) -> pa.Array:
    """Each line of `lines` as a string, over the bytes' own buffer (no copy until the split)."""
    body = pa.py_buffer(lines)
    offsets = pa.array([0, body.size], pa.int32()).buffers()[1]
    whole = pa.Array.from_buffers(pa.string(), 1, [None, offsets, body])
    return pc.split_pattern(whole, "\n").flatten()


def _cast_iso(text: pa.Array) -> pa.Array:
    return text.cast(pa.timestamp("ns", tz="UTC")).cast(UTC_TIMESTAMP, safe=False)


def parse_iso_instant(text: str) -> datetime | None:
    """One ISO 8601 date-time as `iso_instants` reads it (no offset = UTC), or None if it is not.

    For one record's start when the batch could not be normalized: the same parser, so a
    rejected record is assigned to the day its row would have had.
    """
    value = pa.array([text.strip() or None], pa.string())
    for candidate in (value, pc.binary_join_element_wise(value, "Z", "")):
        try:
            return _cast_iso(candidate)[0].as_py()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OverflowError):
            continue
    return None


def _first_unparseable(text: pa.Array) -> int:
    """Index of the first value the ISO cast refuses (slow path: one cast per value)."""
    for i, value in enumerate(text.to_pylist()):
        if value is None:
            continue
        try:
            _cast_iso(pa.array([value], pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return i
    return 0


def compact_json(value: Any) -> str:
    """`value` as compact JSON text (orjson; the stdlib for what orjson refuses, e.g. int keys)."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _first_out_of_range(values: list[Any]) -> int:
    for i, value in enumerate(values):
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return i
    return 0


# -- lenient converters (slow path only) ------------------------------------------------------


def as_int(value: Any) -> int | None:
    """An integer field's value under the lenient rules above; raises TypeError/ValueError."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"must be an integer, got boolean {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return int(value)  # truncates toward zero, as pyarrow's fast path does
        raise ValueError(f"must be an integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _INT_TEXT.fullmatch(text):
            return int(text)
        raise ValueError(f"must be an integer, got {value!r}")
    raise TypeError(f"must be an integer, got {type(value).__name__}")


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"must be a string, got {type(value).__name__} {_short(value)}")


def _as_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
    raise ValueError(f"must be a boolean, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_CONVERTERS: dict[pa.DataType, Callable[[Any], Any]] = {
    pa.int64(): as_int,
    pa.string(): _as_text,
    pa.bool_(): _as_bool,
}


# -- column transforms ------------------------------------------------------------------------


def blank_to_null(values: pa.Array) -> pa.Array:
    """Text trimmed of surrounding whitespace; empty or whitespace-only text becomes null."""
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def blank_to_null_many(*columns: pa.Array) -> list[pa.Array]:
    """`blank_to_null` of several equal-length columns in one pass.

    Each compute call costs microseconds however short the array, so small pages are dominated
    by call count: concatenating first turns 3 calls per column into 3 calls in all.
    """
    n = len(columns[0])
    cleaned = blank_to_null(pa.concat_arrays(list(columns)))
    return [cleaned.slice(i * n, n) for i in range(len(columns))]


def enum_token(value: str) -> str:
    """Spelling-tolerant key: upper-case letters only ("No answer", "NO_ANSWER" -> NOANSWER)."""
    return re.sub(r"[^A-Z]", "", value.upper())


def map_enum(values: pa.Array, table: Mapping[str, str], default: str = "unknown") -> pa.Array:
    """Map vendor enum text through `table` (keyed by `enum_token`); unmapped/null -> default.

    Dictionary-encodes first, so the Python mapping runs once per distinct value, not per row.
    """
    encoded = pc.dictionary_encode(values)
    mapped = pa.array(
        [table.get(enum_token(v), default) for v in encoded.dictionary.to_pylist()],
        type=pa.string(),
    )
    return mapped.take(encoded.indices).fill_null(default)


def split_name_number(party: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Parse "Name<2005>" into (number, name); plain "1000" is a number with no name.

    `party` must already be blank-cleaned (`blank_to_null`); blank parts come back null.
    """
    parsed = pc.extract_regex(party, _NAME_NUMBER)
    matched = pc.is_valid(parsed)
    number = pc.if_else(matched, pc.struct_field(parsed, "number"), party)
    name = pc.if_else(matched, pc.struct_field(parsed, "name"), pa.scalar(None, pa.string()))
    number, name = blank_to_null_many(number, name)
    return number, name


def us_to_timestamps(us: pa.Array) -> pa.Array:
    """int64 microseconds since the epoch -> timestamp[us, UTC]."""
    return us.cast(UTC_TIMESTAMP)


def zone_key(timezone: ZoneInfo | str) -> str:
    """The IANA name of `timezone`, checked, for pyarrow's tz-aware kernels."""
    key = timezone.key if isinstance(timezone, ZoneInfo) else timezone
    if not isinstance(key, str) or not key:
        raise ValueError(f"timezone must be an IANA zone name or ZoneInfo, got {timezone!r}")
    return _checked_zone(key)


@functools.lru_cache(maxsize=64)
def _checked_zone(key: str) -> str:
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {key!r}") from None
    return key


def local_dates(instants: pa.Array, zone: str) -> pa.Array:
    """The wall-clock date in `zone` of each UTC instant (DST-correct; Arrow's tz database)."""
    local = pc.local_timestamp(instants.cast(pa.timestamp("us", tz=zone)))
    return local.cast(pa.date32())


def constant(value: str, n: int) -> pa.Array:
    """A string column of `n` copies of `value`."""
    return pa.repeat(pa.scalar(value, pa.string()), n)


def ingested_column(ingested_at: datetime, n: int) -> pa.Array:
    """`ingested_at` repeated; it must be timezone-aware so the instant is unambiguous."""
    offset = ingested_at.utcoffset() if isinstance(ingested_at, datetime) else None
    if offset is None:
        raise ValueError(f"ingested_at must be a timezone-aware datetime, got {ingested_at!r}")
    return pa.repeat(pa.scalar(ingested_at, UTC_TIMESTAMP), n)


def batch_pages(
    pages: Iterable[Sequence[dict[str, Any]] | JsonRecords], min_records: int = 10_000
) -> Iterator[list[dict[str, Any]] | JsonRecords]:
    """Join small API pages into batches of at least `min_records` (the last may be smaller).

    Normalizing costs a fixed ~1-3 ms per call plus ~2-4 us per record, so 200-record pages
    (Zorio's maximum) cost more to convert than to decode; 10,000-record batches cost less.
    A batch with unparsed `JsonRecords` pages stays unparsed (one text, parsed at once; a dict
    page among them is serialized into it). Memory stays flat: one batch is held at a time.
    """
    batch: list[Sequence[dict[str, Any]] | JsonRecords] = []
    size = 0
    for page in pages:
        batch.append(page)
        size += len(page)
        if size >= min_records:
            yield _join(batch)
            batch, size = [], 0
    if batch:
        yield _join(batch)


def _join(
    pages: list[Sequence[dict[str, Any]] | JsonRecords],
) -> list[dict[str, Any]] | JsonRecords:
    texts = [page for page in pages if isinstance(page, JsonRecords)]
    if not texts:
        return [record for page in pages for record in page]
    return JsonRecords.join(
        [p if isinstance(p, JsonRecords) else JsonRecords.from_dicts(p) for p in pages]
    )


def cdr_table(columns: Mapping[str, pa.Array]) -> pa.Table:
    """Assemble the CDR_SCHEMA table; a missing or mistyped column is a programming error."""
    return pa.Table.from_arrays([columns[f.name] for f in CDR_SCHEMA], schema=CDR_SCHEMA)
