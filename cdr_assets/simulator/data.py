"""Deterministic synthetic calls: PBX-local days, per-call draws, and both vendors' records.

Owns what a record *is*: record ``i`` of PBX-local day ``D`` is a pure function of
``(seed, vendor, D, i)`` computed in O(1), and start instants are monotonic in ``i`` and spread
over the real length of the local day (23/24/25 h on DST days), so any instant window maps to
index ranges by binary search and page ``k`` maps to ``(day, index)`` arithmetically. IDs decode
back to ``(day, index)`` without state. This module knows nothing about HTTP or tokens.

Per-call randomness comes from ``blake2b(f"{seed}:{vendor}:{D}:{i}")`` (32 16-bit draws) rather
than ``random.Random(key)``: seeding a Mersenne Twister costs ~5 us per record, i.e. seconds per
million-call day, which would make the simulator, not the client, the benchmark's bottleneck.

A call is computed once as a tuple of field values (`values`), then either built into the dict
(`generate`, what tests and filters use) or written straight to its JSON text (`record_json`,
what list pages use): equal to `protocol.dumps` of the dict byte for byte, at half the cost.
Faults reach this module only as the `withheld` set the text renderers are handed.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from hashlib import blake2b
from typing import NamedTuple
from zoneinfo import ZoneInfo

from .config import MAX_CALLS_PER_DAY

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_UNPACK32 = struct.Struct("<32H").unpack


def draw_values(key: bytes) -> tuple[int, ...]:
    """32 deterministic 16-bit draws for one call; generators use fixed slots of this tuple."""
    return _UNPACK32(blake2b(key, digest_size=64).digest())


def frac(v: int) -> float:
    """A 16-bit draw as a float in [0, 1)."""
    return v / 65536.0


def pick(seq, v: int):  # noqa: ANN001, ANN201 - generic
    return seq[(v * len(seq)) >> 16]


def between(lo: int, hi: int, v: int) -> int:
    """Uniform int in [lo, hi] from one 16-bit draw."""
    return lo + (((hi - lo + 1) * v) >> 16)


def weighted_table(pairs: tuple[tuple[object, int], ...]) -> tuple:
    """A 1024-slot lookup for ((value, weight), ...) with weights summing to 1000: t[v >> 6]."""
    table: list = []
    acc = 0
    for value, weight in pairs:
        acc += weight
        table.extend([value] * (round(acc * 1024 / 1000) - len(table)))
    return tuple(table)


@dataclass(frozen=True)
class LocalDay:
    """One PBX-local calendar day: [start, end) as epoch seconds, with at most one offset change."""

    day: date
    start: int
    end: int
    wall_base: int  # the day's midnight as naive wall seconds since 1970-01-01
    transition: int | None  # first instant using offset_after (None: constant offset)
    offset_before: int
    offset_after: int

    @property
    def seconds(self) -> int:
        return self.end - self.start

    def wall_seconds(self, ts: int) -> int:
        """Seconds since local midnight shown by the wall clock at instant ts (in this day)."""
        off = self.offset_before
        if self.transition is not None and ts >= self.transition:
            off = self.offset_after
        return ts + off - self.wall_base


def _offset(tz: ZoneInfo, ts: int) -> int:
    return int(datetime.fromtimestamp(ts, tz).utcoffset().total_seconds())  # type: ignore[union-attr]


def local_midnight(tz: ZoneInfo, d: date) -> int:
    """Epoch seconds of local midnight starting day d (a skipped midnight maps to the jump)."""
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())


def make_local_day(tz: ZoneInfo, d: date) -> LocalDay:
    start = local_midnight(tz, d)
    end = local_midnight(tz, d + timedelta(days=1))
    off0, off1 = _offset(tz, start), _offset(tz, end - 1)
    transition = None
    if off0 != off1:
        lo, hi = start, end - 1  # offset(lo) == off0, offset(hi) == off1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _offset(tz, mid) == off0:
                lo = mid
            else:
                hi = mid
        transition = hi
    return LocalDay(d, start, end, (d.toordinal() - _EPOCH_ORDINAL) * 86400, transition, off0, off1)


_PIECE_PROBE = 6 * 3600  # offsets never change twice within 6 h in tzdata
_MAX_OFFSET = 26 * 3600  # beyond any UTC offset


def _offset_pieces(tz: ZoneInfo, t0: int, t1: int) -> list[tuple[int, int, int]]:
    """[(start, end, offset)] of constant UTC offset covering the instants [t0, t1)."""
    pieces: list[tuple[int, int, int]] = []
    t = t0
    while t < t1:
        off = _offset(tz, t)
        end = t1
        probe = t
        while probe < t1:
            nxt = min(probe + _PIECE_PROBE, t1)
            if _offset(tz, nxt - 1) != off:
                lo, hi = probe, nxt - 1  # offset(lo) == off, offset(hi) != off
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if _offset(tz, mid) == off:
                        lo = mid
                    else:
                        hi = mid
                end = hi
                break
            probe = nxt
        pieces.append((t, end, off))
        t = end
    return pieces


def wall_range_instants(tz: ZoneInfo, lo: datetime, hi: datetime) -> list[tuple[int, int]]:
    """Instant intervals [start, end) whose local wall clock in `tz` shows [lo, hi) (naive).

    This is how a PBX that stores and compares local wall times (the CDR `time`) selects a
    window: a bound inside a spring-forward gap selects from / up to the jump; a window over
    a fall-back fold takes both passes of the wall times it covers, so a window bound inside
    a fold can give two intervals (e.g. 01:30-01:45 in New York's repeated hour). Wall-hour
    windows therefore partition the calls: every call shows exactly one wall time.
    """
    w0 = (
        (lo.date().toordinal() - _EPOCH_ORDINAL) * 86400
        + lo.hour * 3600
        + lo.minute * 60
        + lo.second
    )
    w1 = (
        (hi.date().toordinal() - _EPOCH_ORDINAL) * 86400
        + hi.hour * 3600
        + hi.minute * 60
        + hi.second
    )
    out: list[tuple[int, int]] = []
    if w1 <= w0:
        return out
    for start, end, off in _offset_pieces(tz, w0 - _MAX_OFFSET, w1 + _MAX_OFFSET):
        a, b = max(start, w0 - off), min(end, w1 - off)
        if a >= b:
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


@lru_cache(maxsize=4096)
def _utc_date(days: int) -> str:
    return date.fromordinal(days + _EPOCH_ORDINAL).isoformat()


@lru_cache(maxsize=1)
def clock() -> tuple[str, ...]:
    """ "HH:MM:SS" for each second of a day (built once: formatting per record is slower)."""
    return tuple(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400))


@lru_cache(maxsize=1)
def compact_clock() -> tuple[str, ...]:
    """ "HHMMSS" for each second of a day."""
    return tuple(t.replace(":", "") for t in clock())


def iso_utc(ts: int) -> str:
    """2026-06-27T08:15:42+00:00"""
    d, s = divmod(ts, 86400)
    return f"{_utc_date(d)}T{clock()[s]}+00:00"


def sql_utc(ts: int) -> str:
    """2026-06-27 08:15:56"""
    d, s = divmod(ts, 86400)
    return f"{_utc_date(d)} {clock()[s]}"


def parse_day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


class CallIndex:
    """Per-vendor day/instant arithmetic shared by both record generators."""

    def __init__(self, seed: int, vendor: str, timezone: str, calls_per_day: int) -> None:
        self.seed = seed
        self.vendor = vendor
        self.tz = ZoneInfo(timezone)
        self.n = calls_per_day
        self._day = lru_cache(maxsize=1024)(self._make_day)
        self._prefix = lru_cache(maxsize=1024)(
            lambda d: f"{seed}:{vendor}:{d.isoformat()}:".encode()
        )

    def _make_day(self, d: date) -> LocalDay:
        return make_local_day(self.tz, d)

    def day(self, d: date) -> LocalDay:
        return self._day(d)

    def day_of(self, ts: int) -> date:
        """The PBX-local date of instant ts."""
        return datetime.fromtimestamp(ts, self.tz).date()

    def today(self) -> date:
        return datetime.now(self.tz).date()

    def draws(self, d: date, i: int) -> tuple[int, ...]:
        return draw_values(self._prefix(d) + str(i).encode())

    def start_from(self, ld: LocalDay, i: int, v: tuple[int, ...]) -> int:
        """Start instant of call i: slots 0-1 are its jitter within its 1/n of the day."""
        jitter = (v[0] << 16) | v[1]
        return ld.start + (((i << 32) + jitter) * ld.seconds) // (self.n << 32)

    def start_of(self, d: date, i: int) -> int:
        return self.start_from(self.day(d), i, self.draws(d, i))

    def first_at_or_after(self, d: date, ts: int) -> int:
        """Smallest index whose start instant is >= ts (n if none)."""
        ld = self.day(d)
        if ts <= ld.start:
            return 0
        if ts >= ld.end:
            return self.n
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) // 2
            if self.start_of(d, mid) < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def segments(self, t0: int, t1: int) -> list[tuple[date, int, int]]:
        """[(day, lo, hi)] covering calls starting in [t0, t1), in time order."""
        out: list[tuple[date, int, int]] = []
        if t1 <= t0 or self.n == 0:
            return out
        d = self.day_of(t0)
        while True:
            ld = self.day(d)
            if ld.start >= t1:
                break
            lo = self.first_at_or_after(d, t0)
            hi = self.first_at_or_after(d, t1)
            if hi > lo:
                out.append((d, lo, hi))
            d += timedelta(days=1)
        return out

    def numeric_id(self, d: date, i: int) -> int:
        return d.toordinal() * MAX_CALLS_PER_DAY + i

    def decode_numeric_id(self, value: int) -> tuple[date, int] | None:
        q, i = divmod(value, MAX_CALLS_PER_DAY)
        if not 1 <= q <= date.max.toordinal() or i >= self.n:
            return None
        return date.fromordinal(q), i


def page_of_segments(
    segments: list[tuple[date, int, int]], offset: int, limit: int
) -> list[tuple[date, int]]:
    """(day, index) pairs of the slice [offset, offset + limit) of the concatenated segments."""
    out: list[tuple[date, int]] = []
    for d, lo, hi in segments:
        size = hi - lo
        if offset >= size:
            offset -= size
            continue
        take = min(size - offset, limit - len(out))
        out.extend((d, i) for i in range(lo + offset, lo + offset + take))
        offset = 0
        if len(out) >= limit:
            break
    return out


def talk_seconds(v: int) -> int:
    """Talk time from one draw: mostly short, long tail capped at 10 minutes."""
    return min(600, 1 + int(-math.log(1.0 - v / 65536.0) * 75))


# ---------------------------------------------------------------- Yeastar P-Series records

_FIRST = (
    "Kristin",
    "Liam",
    "Mei",
    "Arjun",
    "Siti",
    "Daniel",
    "Hana",
    "Rafael",
    "Nora",
    "Wei",
    "Amir",
    "Julia",
    "Tomas",
    "Priya",
    "Ken",
    "Lucia",
    "Omar",
    "Grace",
    "Ivan",
    "Aisha",
)
_LAST = (
    "Hale",
    "Tan",
    "Lim",
    "Nair",
    "Rahman",
    "Ng",
    "Okafor",
    "Silva",
    "Berg",
    "Chen",
    "Wong",
    "Koh",
    "Singh",
    "Park",
    "Ito",
    "Costa",
    "Haddad",
    "Lee",
    "Petrov",
    "Yusuf",
)
YEASTAR_EXTENSIONS = tuple(str(2000 + k) for k in range(40))
YEASTAR_EXT_NAMES = {
    ext: f"{_FIRST[k % 20]} {_LAST[(k * 7 + k // 20) % 20]}"
    for k, ext in enumerate(YEASTAR_EXTENSIONS)
}
YEASTAR_DIDS = ("6531234500", "6531234501", "6531234502")
YEASTAR_SRC_TRUNKS = ("SIP-Singtel", "peer-to-34")
YEASTAR_DST_TRUNKS = ("peer-to-34", "to28.41", "SIP-StarHub")
_Y_CALL_TYPE = weighted_table((("Inbound", 450), ("Outbound", 400), ("Internal", 150)))
_Y_DISPOSITION = weighted_table(
    (
        ("ANSWERED", 640),
        ("NO ANSWER", 165),
        ("BUSY", 70),
        ("FAILED", 40),
        ("VOICEMAIL", 65),
        ("ANSWERD", 10),
        ("NO ANSWERED", 10),
    )
)
_Y_REASONS = {
    "ANSWERED": ("src hangup    ", "dst hangup    "),
    "NO ANSWER": ("dst extension_busy_no_forward    ", "src cancel    ", "dst noanswer    "),
    "BUSY": ("dst busy    ",),
    "FAILED": ("dst unavailable    ", "congestion    "),
    "VOICEMAIL": ("dst voicemail    ",),
}
_Y_REASONS["ANSWERD"] = _Y_REASONS["ANSWERED"]
_Y_REASONS["NO ANSWERED"] = _Y_REASONS["NO ANSWER"]
YEASTAR_ANSWERED = frozenset({"ANSWERED", "ANSWERD"})
# status filter value -> dispositions it matches (the misspellings are the same states)
YEASTAR_STATUS_MATCH = {
    "ANSWERED": frozenset({"ANSWERED", "ANSWERD"}),
    "NO ANSWER": frozenset({"NO ANSWER", "NO ANSWERED"}),
    "BUSY": frozenset({"BUSY"}),
    "FAILED": frozenset({"FAILED"}),
    "VOICEMAIL": frozenset({"VOICEMAIL"}),
}
RECORD_FILE_RE = re.compile(
    r"^(\d{14})-(\d{1,12})\.(\d{1,8})-([0-9A-Za-z+]*)-([0-9A-Za-z+]*)-"
    r"(Inbound|Outbound|Internal)\.(wav|mp3)$"
)


def extension_group(ext: str) -> int:
    """Simulated extension groups: 1 = 2000-2009, 2 = 2010-2019, ... 4 = 2030-2039."""
    return (int(ext) - 2000) // 10 + 1


class DisplayFormat:
    """Format and parse the Yeastar display format (`MM/DD/YYYY` ... with a 24 or 12 h clock)."""

    def __init__(self, date_format: str, clock: int) -> None:
        self.date_format = date_format
        self.clock = clock
        sep = date_format[2] if date_format[2] in "/-" else date_format[4]
        self._order = tuple(date_format.split(sep))  # e.g. ("MM", "DD", "YYYY")
        self._sep = sep
        groups = {"YYYY": r"(?P<Y>\d{4})", "MM": r"(?P<M>\d{2})", "DD": r"(?P<D>\d{2})"}
        date_re = re.escape(sep).join(groups[p] for p in self._order)
        time_re = r"(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})"
        if clock == 12:
            time_re += r" (?P<p>AM|PM)"
        self._re = re.compile(f"^{date_re} {time_re}$")
        self._times: tuple[str, ...] | None = None

    @property
    def time_format(self) -> str:
        """What system/information reports (the doc's own quirk: `hh` also for 24 h)."""
        return "hh:mm:ss" if self.clock == 24 else "hh:mm:ss AM"

    def format_date(self, d: date) -> str:
        parts = {"YYYY": f"{d.year:04d}", "MM": f"{d.month:02d}", "DD": f"{d.day:02d}"}
        return self._sep.join(parts[p] for p in self._order)

    def format_time(self, secs: int) -> str:
        h, rest = divmod(secs, 3600)
        m, s = divmod(rest, 60)
        if self.clock == 24:
            return f"{h:02d}:{m:02d}:{s:02d}"
        return f"{(h % 12) or 12:02d}:{m:02d}:{s:02d} {'AM' if h < 12 else 'PM'}"

    def time_of(self, secs: int) -> str:
        """format_time for 0 <= secs < 86400 from a table built on first use."""
        table = self._times
        if table is None:
            table = self._times = tuple(self.format_time(t) for t in range(86400))
        return table[secs]

    def format(self, wall: datetime) -> str:
        secs = wall.hour * 3600 + wall.minute * 60 + wall.second
        return f"{self.format_date(wall.date())} {self.format_time(secs)}"

    def parse(self, text: str) -> datetime | None:
        """Naive local datetime, or None if text is not exactly in the display format."""
        m = self._re.match(text)
        if not m:
            return None
        hour = int(m["h"])
        if self.clock == 12:
            if not 1 <= hour <= 12:
                return None
            hour = hour % 12 + (12 if m["p"] == "PM" else 0)
        try:
            return datetime(int(m["Y"]), int(m["M"]), int(m["D"]), hour, int(m["m"]), int(m["s"]))
        except ValueError:
            return None


class Generated(NamedTuple):
    """One record as served, plus what the audio endpoints need to know about it."""

    record: dict
    recording_seconds: int  # > 0 iff the call has a recording
    answer_ts: int | None


# JSON text without the dict. Every string value is either from a fixed vocabulary (encoded once
# with json.dumps, so escaping stays right if a vocabulary ever gains a quote or a non-ASCII
# name) or formatted here from integers and ASCII separators (digits, hex, "-:.<>T+ "), which
# JSON never escapes. tests/simulator/test_render.py pins text == dumps(dict) for both vendors.


def json_table(*vocabularies: Iterable[str | None]) -> dict[str | None, str]:
    """value -> its JSON text (as `protocol.dumps` writes it) for every value listed."""
    table: dict[str | None, str] = {None: "null"}
    for vocabulary in vocabularies:
        for value in vocabulary:
            table[value] = json.dumps(value, ensure_ascii=False)
    return table


# (id, time, from_name, from_num, to_name, to_num, timestamp, uid, call_type, trunk,
#  has_durations, ring, talk, disposition, did, record_file | None, reason, split_names, call_id)
YeastarValues = tuple[
    int,
    str,
    str,
    str,
    str,
    str,
    int,
    str,
    str,
    str,
    bool,
    int,
    int,
    str,
    str,
    "str | None",
    str,
    bool,
    str,
]


def yeastar_record(vals: YeastarValues) -> dict:
    """The CDR_Details dict of a call's values (optional keys in the vendor's order)."""
    (
        id_,
        time_s,
        from_name,
        from_num,
        to_name,
        to_num,
        ts,
        uid,
        call_type,
        trunk,
        has_durations,
        ring,
        talk,
        disposition,
        did,
        record_file,
        reason,
        split,
        call_id,
    ) = vals
    rec: dict = {
        "id": id_,
        "time": time_s,
        "call_from": f"{from_name}<{from_num}>" if from_name != " " else from_num,
        "call_to": f"{to_name}<{to_num}>" if to_name != " " else to_num,
        "timestamp": ts,
        "uid": uid,
        "src_addr": "",
    }
    if call_type == "Inbound":
        rec["src_trunk"] = trunk
    elif call_type == "Outbound":
        rec["dst_trunk"] = trunk
    if has_durations:
        rec["duration"] = ring + talk
        if ring:
            rec["ring_duration"] = ring
        rec["talk_duration"] = talk
    rec["disposition"] = disposition
    rec["call_type"] = call_type
    if call_type == "Inbound":
        rec["did_number"] = did
    elif call_type == "Outbound":
        rec["dod_number"] = from_num
    if record_file is not None:
        rec["record_file"] = record_file
    rec["reason"] = reason
    if split:
        rec["call_from_number"] = from_num
        rec["call_from_name"] = from_name
        rec["call_to_number"] = to_num
        rec["call_to_name"] = to_name
    rec["call_id"] = call_id
    return rec


def yeastar_json(vals: YeastarValues, withheld: Collection[str] = ()) -> str:
    """`protocol.dumps(yeastar_record(vals))` as text (minus a withheld record_file)."""
    (
        id_,
        time_s,
        from_name,
        from_num,
        to_name,
        to_num,
        ts,
        uid,
        call_type,
        trunk,
        has_durations,
        ring,
        talk,
        disposition,
        did,
        record_file,
        reason,
        split,
        call_id,
    ) = vals
    j = _YJ
    call_from = f'"{from_num}"' if from_name == " " else f'{_YJ_OPEN[from_name]}<{from_num}>"'
    call_to = f'"{to_num}"' if to_name == " " else f'{_YJ_OPEN[to_name]}<{to_num}>"'
    out = (
        f'{{"id":{id_},"time":"{time_s}","call_from":{call_from},"call_to":{call_to},'
        f'"timestamp":{ts},"uid":"{uid}","src_addr":""'
    )
    if call_type == "Inbound":
        out += f',"src_trunk":{j[trunk]}'
    elif call_type == "Outbound":
        out += f',"dst_trunk":{j[trunk]}'
    if has_durations:
        if ring:
            out += f',"duration":{ring + talk},"ring_duration":{ring},"talk_duration":{talk}'
        else:
            out += f',"duration":{talk},"talk_duration":{talk}'
    out += f',"disposition":{j[disposition]},"call_type":{j[call_type]}'
    if call_type == "Inbound":
        out += f',"did_number":{j[did]}'
    elif call_type == "Outbound":
        out += f',"dod_number":"{from_num}"'
    if record_file is not None and not (withheld and record_file in withheld):
        out += f',"record_file":"{record_file}"'
    out += f',"reason":{j[reason]}'
    if split:
        out += (
            f',"call_from_number":"{from_num}","call_from_name":{j[from_name]},'
            f'"call_to_number":"{to_num}","call_to_name":{j[to_name]}'
        )
    return f'{out},"call_id":"{call_id}"}}'


_YJ = json_table(
    YEASTAR_EXT_NAMES.values(),
    (" ",),
    YEASTAR_SRC_TRUNKS,
    YEASTAR_DST_TRUNKS,
    YEASTAR_DIDS,
    _Y_CALL_TYPE,
    _Y_DISPOSITION,
    *_Y_REASONS.values(),
)
_YJ_OPEN = {name: _YJ[name][:-1] for name in YEASTAR_EXT_NAMES.values()}  # '"Name' of 'Name<n>'


class YeastarCalls:
    """Yeastar P-Series CDR_Details records (the quirks of the vendor page's example)."""

    vendor = "yeastar"

    def __init__(
        self,
        seed: int,
        timezone: str,
        calls_per_day: int,
        recording_ratio: float,
        display: DisplayFormat,
        recording_ext: str,
    ) -> None:
        self.index = CallIndex(seed, "yeastar", timezone, calls_per_day)
        self.ratio = recording_ratio
        self.display = display
        self.ext = recording_ext
        self._dates = lru_cache(maxsize=1024)(self._day_strings)

    def _day_strings(self, d: date) -> tuple[str, str, int]:
        mask = (
            int.from_bytes(
                blake2b(f"{self.index.seed}:yeastar:{d}:uid".encode(), digest_size=4).digest()
            )
            & 0xFFFFF
        )
        return self.display.format_date(d), f"{d:%Y%m%d}", mask

    def _wall(self, ts: int) -> datetime:
        return datetime.fromtimestamp(ts, self.index.tz).replace(tzinfo=None)

    def values(
        self, d: date, i: int, start: int | None = None
    ) -> tuple[YeastarValues, int, int | None]:
        """Call (d, i) as field values, its recording seconds (0: none) and answer instant.

        `start` replaces the call's own start instant (a call drift inserted into the day)."""
        idx = self.index
        ld = idx.day(d)
        v = idx.draws(d, i)
        ts = idx.start_from(ld, i, v) if start is None else start
        wall = ld.wall_seconds(ts)
        disp_date, ymd, mask = self._dates(d)

        call_type = _Y_CALL_TYPE[v[2] >> 6]
        disposition = _Y_DISPOSITION[v[3] >> 6]
        k = (v[4] * 40) >> 16
        ext = YEASTAR_EXTENSIONS[k]
        other_ext = YEASTAR_EXTENSIONS[(k + 1 + ((v[5] * 39) >> 16)) % 40]
        external = f"65{((v[6] << 16) | v[7]) % 10**8:08d}"
        if call_type == "Inbound":
            from_num, from_name, to_num, to_name = external, " ", ext, YEASTAR_EXT_NAMES[ext]
        elif call_type == "Outbound":
            from_num, from_name = ext, YEASTAR_EXT_NAMES[ext]
            to_num, to_name = (external if v[8] < 55705 else external[-5:]), " "
        else:
            from_num, from_name = ext, YEASTAR_EXT_NAMES[ext]
            to_num, to_name = other_ext, YEASTAR_EXT_NAMES[other_ext]
        old_firmware = v[9] < 6554  # ~10%: older firmware without the split name/number fields
        trunk = pick(YEASTAR_SRC_TRUNKS if call_type == "Inbound" else YEASTAR_DST_TRUNKS, v[10])
        did = pick(YEASTAR_DIDS, v[11])
        reason = pick(_Y_REASONS[disposition], v[12])

        answered = disposition in YEASTAR_ANSWERED
        ring = talk = 0
        has_durations = answered or disposition == "VOICEMAIL"
        if answered:
            ring = 0 if v[13] < 7864 else between(1, 25, v[14])
            talk = 0 if v[15] < 1966 else talk_seconds(v[16])
        elif disposition == "VOICEMAIL":
            ring = between(15, 30, v[18])
            talk = between(3, 60, v[19])
        has_rec = answered and talk > 0 and frac(v[17]) < self.ratio
        answer_ts = ts + ring if has_durations else None
        record_file = None
        if has_rec:
            at = ts + ring
            if at < ld.end:  # answered the same local day: no tz lookup needed
                answer_wall = ymd + compact_clock()[ld.wall_seconds(at)]
            else:
                answer_wall = f"{self._wall(at):%Y%m%d%H%M%S}"
            record_file = f"{answer_wall}-{ts}.{i}-{from_num}-{to_num}-{call_type}.{self.ext}"
        vals = (
            idx.numeric_id(d, i),
            f"{disp_date} {self.display.time_of(wall)}",
            from_name,
            from_num,
            to_name,
            to_num,
            ts,
            f"{ymd}{compact_clock()[wall]}{i ^ mask:05X}",
            call_type,
            trunk,
            has_durations,
            ring,
            talk,
            disposition,
            did,
            record_file,
            reason,
            not old_firmware,
            f"{ts}.{i}",
        )
        return vals, talk if has_rec else 0, answer_ts

    def generate(self, d: date, i: int, start: int | None = None) -> Generated:
        vals, seconds, answer_ts = self.values(d, i, start)
        return Generated(yeastar_record(vals), seconds, answer_ts)

    def record_json(self, d: date, i: int, withheld: Collection[str] = ()) -> str:
        """JSON text of record (d, i), equal to `protocol.dumps` of its dict (minus a withheld
        record_file), built without the dict."""
        return yeastar_json(self.values(d, i)[0], withheld)

    def decode_record_file(self, name: str) -> tuple[date, int] | None:
        m = RECORD_FILE_RE.match(name)
        if not m:
            return None
        i = int(m[3])
        if i >= self.index.n:
            return None
        d = self.index.day_of(int(m[2]))
        gen = self.generate(d, i)
        if gen.record.get("record_file") != name:
            return None
        return d, i

    def decode_id(self, value: str | int) -> tuple[date, int] | None:
        try:
            num = int(value)
        except (TypeError, ValueError):
            return None
        decoded = self.index.decode_numeric_id(num)
        if decoded is None or decoded[1] >= self.index.n:
            return None
        return decoded

    def decode_ref(self, ref: str) -> tuple[date, int] | None:
        """A recording_ref (record_file) or numeric recording id -> (day, index)."""
        return self.decode_id(ref) if ref.isdigit() else self.decode_record_file(ref)


# ---------------------------------------------------------------- Zorio records

ZORIO_DIRECTIONS = ("inbound", "outbound", "internal", "local")
_Z_DIRECTION = weighted_table(
    (("inbound", 450), ("outbound", 400), ("internal", 100), ("local", 50))
)
_Z_TRANSFERS = weighted_table(((0, 900), (1, 80), (2, 20)))
_Z_OUT_SOURCES = ("outbound_manual", "outbound_telesales", "outbound_callback", "outbound_webphone")
_Z_RESULT = weighted_table(
    (
        ("answered", 620),
        ("no_answer", 150),
        ("busy", 70),
        ("failed", 40),
        ("cancelled", 60),
        ("rejected", 30),
        ("voicemail", 30),
    )
)
_Z_HANGUP = {
    "answered": ("NORMAL_CLEARING",),
    "no_answer": ("NO_ANSWER", "NO_USER_RESPONSE"),
    "busy": ("USER_BUSY",),
    "failed": ("UNALLOCATED_NUMBER", "NORMAL_TEMPORARY_FAILURE", "RECOVERY_ON_TIMER_EXPIRE"),
    "cancelled": ("ORIGINATOR_CANCEL",),
    "rejected": ("CALL_REJECTED",),
    "voicemail": ("NORMAL_CLEARING",),
}
_Z_SIP = {
    "answered": "200",
    "no_answer": "480",
    "busy": "486",
    "failed": "503",
    "cancelled": "487",
    "rejected": "603",
    "voicemail": "200",
}
ZORIO_EXTENSIONS = tuple(str(1001 + k) for k in range(40))
_Z_QUEUES = ("Sales", "Support", "Billing", "CSKH")
_Z_TRUNKS = ("viettel-sip-01", "vnpt-sip-02", "mobifone-sip-01")
_Z_HOTLINES = ("02873001234", "19006868")
_Z_PREFIXES = ("090", "091", "093", "097", "098", "086", "070", "028")
UUID_RE = re.compile(r"^(\d{8})-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-([0-9a-f]{12})$")

ZORIO_FIELDS = (
    "uuid",
    "direction",
    "source_type",
    "caller_number",
    "destination_number",
    "extension_number",
    "agent_extension",
    "start_time",
    "answer_time",
    "end_time",
    "duration",
    "billsec",
    "queue_name",
    "queue_wait_time",
    "trunk_name",
    "transfer_count",
    "result",
    "hangup_cause",
    "sip_response_code",
    "recording_available",
    "created_at",
)
ZorioValues = tuple[
    str,
    str,
    str,
    str,
    str,
    str,
    "str | None",
    str,
    "str | None",
    str,
    int,
    int,
    "str | None",
    "int | None",
    "str | None",
    int,
    str,
    str,
    "str | None",
    bool,
    str,
]
_ZJ = json_table(
    ZORIO_DIRECTIONS,
    ("inbound", "internal"),
    _Z_OUT_SOURCES,
    _Z_RESULT,
    *_Z_HANGUP.values(),
    _Z_SIP.values(),
    ZORIO_EXTENSIONS,
    _Z_QUEUES,
    _Z_TRUNKS,
    _Z_HOTLINES,
)


def zorio_json(vals: ZorioValues, withheld: Collection[str] = ()) -> str:
    """`protocol.dumps(dict(zip(ZORIO_FIELDS, vals)))` as text; a withheld uuid shows
    `recording_available: false`."""
    (
        uuid,
        direction,
        source_type,
        caller,
        dest,
        extension,
        agent,
        start,
        answer,
        end,
        duration,
        billsec,
        queue_name,
        queue_wait,
        trunk_name,
        transfers,
        result,
        hangup,
        sip,
        has_rec,
        created,
    ) = vals
    j = _ZJ
    answer_j = "null" if answer is None else f'"{answer}"'
    wait_j = "null" if queue_wait is None else queue_wait
    available = "true" if has_rec and not (withheld and uuid in withheld) else "false"
    return (
        f'{{"uuid":"{uuid}","direction":{j[direction]},"source_type":{j[source_type]},'
        f'"caller_number":"{caller}","destination_number":"{dest}",'
        f'"extension_number":"{extension}","agent_extension":{j[agent]},'
        f'"start_time":"{start}","answer_time":{answer_j},"end_time":"{end}",'
        f'"duration":{duration},"billsec":{billsec},"queue_name":{j[queue_name]},'
        f'"queue_wait_time":{wait_j},"trunk_name":{j[trunk_name]},'
        f'"transfer_count":{transfers},"result":{j[result]},"hangup_cause":{j[hangup]},'
        f'"sip_response_code":{j[sip]},"recording_available":{available},'
        f'"created_at":"{created}"}}'
    )


class ZorioCalls:
    """Zorio PBX CDR records (the page's fields, ISO 8601 UTC instants)."""

    vendor = "zorio"

    def __init__(
        self, seed: int, timezone: str, calls_per_day: int, recording_ratio: float
    ) -> None:
        self.index = CallIndex(seed, "zorio", timezone, calls_per_day)
        self.ratio = recording_ratio
        self._ymd = lru_cache(maxsize=1024)(lambda d: f"{d:%Y%m%d}")

    def values(
        self, d: date, i: int, start: int | None = None
    ) -> tuple[ZorioValues, int, int | None]:
        """Call (d, i) as `ZORIO_FIELDS` values, its recording seconds (0: none), answer instant.

        `start` replaces the call's own start instant (a call drift inserted into the day)."""
        idx = self.index
        ld = idx.day(d)
        v = idx.draws(d, i)
        ts = idx.start_from(ld, i, v) if start is None else start
        a, b, c = v[2], v[3] & 0xFFF, 0x8000 | (v[4] & 0x3FFF)

        direction = _Z_DIRECTION[v[5] >> 6]
        result = _Z_RESULT[v[6] >> 6]
        k = (v[7] * 40) >> 16
        ext = ZORIO_EXTENSIONS[k]
        other_ext = ZORIO_EXTENSIONS[(k + 1 + ((v[8] * 39) >> 16)) % 40]
        external = f"{pick(_Z_PREFIXES, v[9])}{((v[10] << 16) | v[11]) % 10**7:07d}"
        via_queue = v[12] < 39322  # 60% of inbound calls go through a queue
        queue = pick(_Z_QUEUES, v[13])
        trunk = pick(_Z_TRUNKS, v[14])
        transfers = _Z_TRANSFERS[v[15] >> 6]
        sip_missing = v[16] < 9830
        hangup = pick(_Z_HANGUP[result], v[17])
        hotline = pick(_Z_HOTLINES, v[18])

        answered = result in ("answered", "voicemail")
        ring = between(0, 25, v[19]) if answered else between(2, 45, v[19])
        if result == "answered":
            billsec = 0 if v[20] < 1966 else talk_seconds(v[21])
        elif result == "voicemail":
            billsec = between(3, 60, v[25])
        else:
            billsec = 0
        has_rec = result == "answered" and billsec > 0 and frac(v[22]) < self.ratio
        wait = between(0, 120, v[23])

        agent = None
        source_type = "internal"
        queue_name = queue_wait = trunk_name = sip = None
        if direction == "inbound":
            source_type = "inbound"
            caller, dest, extension = external, hotline, ext
            if via_queue:
                queue_name, queue_wait = queue, wait
                agent = ext if result == "answered" else None
        elif direction == "outbound":
            source_type = pick(_Z_OUT_SOURCES, v[24])
            caller, dest, extension = ext, external, ext
            trunk_name = trunk
            sip = None if sip_missing else _Z_SIP[result]
        else:
            caller, dest, extension = ext, other_ext, ext
        duration = ring + billsec
        end = ts + duration
        vals = (
            f"{self._ymd(d)}-{a:04x}-4{b:03x}-{c:04x}-{i:012x}",
            direction,
            source_type,
            caller,
            dest,
            extension,
            agent,
            iso_utc(ts),
            iso_utc(ts + ring) if answered else None,
            iso_utc(end),
            duration,
            billsec,
            queue_name,
            queue_wait,
            trunk_name,
            transfers if answered else 0,
            result,
            hangup,
            sip,
            has_rec,
            sql_utc(end),
        )
        return vals, billsec if has_rec else 0, ts + ring if answered else None

    def generate(self, d: date, i: int, start: int | None = None) -> Generated:
        vals, seconds, answer_ts = self.values(d, i, start)
        return Generated(dict(zip(ZORIO_FIELDS, vals, strict=True)), seconds, answer_ts)

    def record_json(self, d: date, i: int, withheld: Collection[str] = ()) -> str:
        """JSON text of record (d, i), equal to `protocol.dumps` of its dict (a withheld
        recording shows as not available), built without the dict."""
        return zorio_json(self.values(d, i)[0], withheld)

    def decode_uuid(self, uuid: str) -> tuple[date, int] | None:
        m = UUID_RE.match(uuid)
        if not m:
            return None
        try:
            d = datetime.strptime(m[1], "%Y%m%d").date()
        except ValueError:
            return None
        i = int(m[2], 16)
        if i >= self.index.n or self.generate(d, i).record["uuid"] != uuid:
            return None
        return d, i

    def decode_rec_id(self, value: str) -> tuple[date, int] | None:
        if not value.isdigit():
            return None
        decoded = self.index.decode_numeric_id(int(value))
        if decoded is None or decoded[1] >= self.index.n:
            return None
        return decoded

    def decode_ref(self, ref: str) -> tuple[date, int] | None:
        """A recording_ref (uuid) or numeric recording id -> (day, index)."""
        return self.decode_rec_id(ref) if ref.isdigit() else self.decode_uuid(ref)
