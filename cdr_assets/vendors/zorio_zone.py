"""The zone a Zorio server reads `from`/`to` in, learned from the rows it returns.

The vendor's page does not say in which zone the dates are read, so without `query_timezone` a
local day is fetched with a date of margin on each side. The rows tell the zone: a window of
dates `from..to` read in zone Z holds the calls that started from `from` 00:00 to `to`+1 00:00
in Z. A complete pass *shows* Z when Z's two midnights hold every row and each lies within 15
minutes of the first / last `start_time` (real zone offsets differ by at least 15 minutes, so no
other zone's midnights could hold those rows). Candidates: the PBX's zone, UTC, and the fixed
offset whose midnight is the quarter-hour at or before the first row. Two windows that show the
same zone, with no window in between contradicting it, make it *learned*: it is then used like
`query_timezone`, logged once, and kept in `<state_dir>/zorio_zone/<pbx>.json` (for this
`base_url` only), so a steady-state day costs the server dates it overlaps. A busy PBX shows its
server's midnights; one without calls around them keeps the margins. The safety rule is
`ZorioResource`'s: a row outside the instants a learned zone expects forgets the zone.

It knows no HTTP and no records, only dates, instants and the state file.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import orjson

logger = dg.get_dagster_logger(__name__)

ZONE_SUBDIR = "zorio_zone"
#: The smallest difference between two real zone offsets.
QUARTER_HOUR = timedelta(minutes=15)
#: Windows that must show the same zone before it is used.
SIGHTINGS_TO_LEARN = 2
_OFFSET_RE = re.compile(r"^UTC([+-])(\d{2}):(\d{2})$")
_SAFE_NAME = re.compile(r"^[a-z0-9_]+$")
_MIN_OFFSET, _MAX_OFFSET = timedelta(hours=-12), timedelta(hours=14)


def server_zone(name: str) -> tzinfo:
    """The zone a name denotes: an IANA name, or a fixed offset written `UTC+07:00`."""
    match = _OFFSET_RE.match(name)
    if match is None:
        return ZoneInfo(name)
    sign = -1 if match[1] == "-" else 1
    return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))


def offset_name(offset: timedelta) -> str:
    """`UTC+07:00` for a fixed offset of seven hours (`server_zone` reads it back)."""
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def date_window_instants(
    zone: tzinfo, window_from: date, window_to: date
) -> tuple[datetime, datetime]:
    """The instants a window of dates covers when read in `zone`: [`from` 00:00, `to`+1 00:00).
    A midnight a clock skips (it springs forward at 00:00) is the instant of the jump."""
    start = datetime.combine(window_from, time(0, 0), tzinfo=zone)
    end = datetime.combine(window_to + timedelta(days=1), time(0, 0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def shown_zone(
    window_from: date,
    window_to: date,
    first: datetime,
    last: datetime,
    *,
    pbx_zone: str,
) -> str | None:
    """The candidate zone whose midnights hold the rows `first..last` (start instants of a
    complete pass over `from..to`) and lie within 15 minutes of both; None when none does.
    The PBX's zone comes first, then UTC, then the fixed offset the first row implies."""
    for name in _candidates(window_from, first, pbx_zone):
        start, end = date_window_instants(server_zone(name), window_from, window_to)
        if start <= first < start + QUARTER_HOUR and end - QUARTER_HOUR <= last < end:
            return name
    return None


def rows_fit(
    zone: str, window_from: date, window_to: date, first: datetime, last: datetime
) -> bool:
    """True when `zone`'s midnights hold the rows `first..last` of a window `from..to`."""
    start, end = date_window_instants(server_zone(zone), window_from, window_to)
    return start <= first and last < end


def _candidates(window_from: date, first: datetime, pbx_zone: str) -> list[str]:
    names = [pbx_zone, "UTC"]
    quarter = int(QUARTER_HOUR.total_seconds())
    boundary = int(first.timestamp()) // quarter * quarter
    midnight_utc = datetime.combine(window_from, time(0, 0), tzinfo=UTC).timestamp()
    offset = timedelta(seconds=midnight_utc - boundary)
    if _MIN_OFFSET <= offset <= _MAX_OFFSET:
        names.append(offset_name(offset))
    return names


@dataclass
class ZoneState:
    """What is known about one PBX's server: the learned zone, or a zone seen so far."""

    base_url: str
    learned: str | None = None
    seen: str | None = None
    sightings: int = 0


class ServerZoneMemory:
    """The learned zone of one PBX's server, kept in a file under `state_dir` (None: in this
    object only). Writes are atomic; runs of a PBX are serialised by its `pbx_lock`."""

    def __init__(self, pbx: str, base_url: str, pbx_zone: str, state_dir: str | None) -> None:
        self.pbx = pbx
        self.base_url = base_url
        self.pbx_zone = pbx_zone
        self.path = None if state_dir is None else _state_path(state_dir, pbx)
        self._state: ZoneState | None = None
        self._use_logged = False

    @property
    def state(self) -> ZoneState:
        if self._state is None:
            self._state = self._read()
        return self._state

    def learned(self) -> str | None:
        """The learned zone, if any (logged once per memory when first used from the file)."""
        zone = self.state.learned
        if zone is not None and not self._use_logged:
            self._use_logged = True
            logger.info(
                "PBX %r: fetching with the zone its server was learned to read from/to in: %s",
                self.pbx,
                zone,
            )
        return zone

    def observe(self, window_from: date, window_to: date, first: datetime, last: datetime) -> None:
        """Take a complete pass over a window fetched with margins as evidence."""
        state = self.state
        if state.learned is not None:
            return
        shown = shown_zone(window_from, window_to, first, last, pbx_zone=self.pbx_zone)
        if shown is None:
            if state.seen is not None and not rows_fit(
                state.seen, window_from, window_to, first, last
            ):
                state.seen, state.sightings = None, 0
                self._write()
            return
        if shown == state.seen:
            state.sightings += 1
        else:
            state.seen, state.sightings = shown, 1
        if state.sightings >= SIGHTINGS_TO_LEARN:
            state.learned = shown
            self._use_logged = True
            logger.info(
                "PBX %r: the server reads from/to in %s (shown by %d windows' first and last "
                "calls); each local day is now fetched as the server dates it overlaps",
                self.pbx,
                shown,
                state.sightings,
            )
        self._write()

    def forget(self, why: str) -> None:
        """Drop the learned zone (and any evidence): the next fetches take margins again."""
        zone = self.state.learned
        self._state = ZoneState(self.base_url)
        self._use_logged = False
        self._write()
        logger.warning(
            "PBX %r: forgetting the learned server zone %s: %s; fetching with a date of margin "
            "on each side again",
            self.pbx,
            zone,
            why,
        )

    def _read(self) -> ZoneState:
        if self.path is None:
            return ZoneState(self.base_url)
        try:
            data = orjson.loads(self.path.read_bytes())
            state = ZoneState(**data)
            if state.learned is not None:
                server_zone(state.learned)  # still a zone this machine knows
        except FileNotFoundError:
            return ZoneState(self.base_url)
        except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
            logger.warning(
                "PBX %r: ignoring the unreadable learned-zone state %s (%s)",
                self.pbx,
                self.path,
                type(exc).__name__,
            )
            return ZoneState(self.base_url)
        if state.base_url != self.base_url:  # another server: what was learned is not its
            return ZoneState(self.base_url)
        return state

    def _write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        temp.write_bytes(orjson.dumps(self.state.__dict__))
        with contextlib.suppress(FileNotFoundError):
            os.replace(temp, self.path)


def _state_path(state_dir: str, pbx: str) -> Path:
    name = pbx if _SAFE_NAME.match(pbx) else re.sub(r"[^a-z0-9_]", "_", pbx.lower())
    return Path(state_dir) / ZONE_SUBDIR / f"{name}.json"
