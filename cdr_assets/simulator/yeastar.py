"""The simulated Yeastar P-Series OpenAPI v1.0 (`/openapi/v1.0/...` and `/api/download/...`).

Owns the vendor's semantics: tokens (get/refresh/expire, 8-token cap, IP block after 5 failed
logins), errors as HTTP 200 `{"errcode", "errmsg"}`, display-format time windows, paging,
recording links (stateless HMAC tokens) and the one-at-a-time mp3 rule. Records come from
`data.YeastarCalls`; transport-level faults are applied by `server.py`. Unfiltered CDR pages
are written as JSON text directly (`YeastarCalls.record_json`, equal to dumping the dicts) and
kept in the shared `PageCache`.

Choices where the vendor page is silent (documented here, mirrored in tests):
- wrong credentials on `get_token` -> errcode -1 "FAILURE"; the 5th consecutive failure from an
  IP blocks it and every later request from it gets 70004 "ACCOUNT IP BLOCKED";
- a malformed download token -> HTTP 404 `{"errcode":60001}`; an expired one -> HTTP 403
  `{"errcode":-1,"errmsg":"DOWNLOAD LINK EXPIRED"}`; a second concurrent mp3 download -> HTTP 503;
- `status=ANSWERED` also matches the firmware misspelling `ANSWERD` (and `NO ANSWER` matches
  `NO ANSWERED`): they are the same state, spelt differently on the wire;
- `cdr/list`, `recording/list` and a `cdr/search` without times cover the last `list_days`
  PBX-local days;
- `cdr/search` compares the PBX-local wall clock (what the CDR `time` shows), as a PBX whose
  database stores local times does: `start_time <= time <= end_time` (`< end_time` with
  `end_time_exclusive`). A bound inside a spring-forward gap (New York 02:30, Havana's or
  Santiago's skipped midnight) selects from / up to the jump; a window over a fall-back fold
  takes both passes of the wall times it covers (a bound inside the fold can make the window
  two instant intervals), so wall-clock windows partition the calls (`data.wall_range_instants`);
- `order="desc"` lists `cdr/search` and `cdr/list` newest first (`recording/list` stays oldest
  first); with `extra_keys`, successful list envelopes carry `"request_id"` and every CDR and
  recording item the undocumented keys of `api.extra_record_keys`.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as wall_time
from functools import lru_cache
from hashlib import sha256

from .api import RecordFilter, VendorApi, request_id
from .audio import audio_size, iter_audio
from .config import SimulatorConfig
from .data import (
    YEASTAR_EXTENSIONS,
    YEASTAR_STATUS_MATCH,
    DisplayFormat,
    Generated,
    YeastarCalls,
    extension_group,
    wall_range_instants,
)
from .faults import YEASTAR_API_PREFIX, Faults, Stats
from .pagecache import PageCache
from .protocol import Reply, Request

ERRORS = {
    -2: "INTERNAL SERVER ERROR",
    -1: "FAILURE",
    0: "SUCCESS",
    10001: "INTERFACE NOT EXISTED",
    10004: "TOKEN EXPIRED",
    40002: "PARAMETER ERROR",
    60001: "DATA NOT FOUND",
    60002: "MAX LIMITATION EXCEEDED",
    70004: "ACCOUNT IP BLOCKED",
}
MAX_PAGE_SIZE = 10_000
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_DOWNLOAD_RE = re.compile(r"^/api/download/Recording-([0-9a-f]+)-([0-9a-f]{32})\.(wav|mp3)$")
_NAME_NUM_RE = re.compile(r"<([^<>]*)>$")


def _new_token() -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(32))


@dataclass
class _Access:
    expires_at: float
    generation: int
    refresh: str


@dataclass
class _Refresh:
    expires_at: float
    access: str


class _BadParam(Exception):
    pass


def _int_param(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise _BadParam(name) from exc
    if not lo <= value <= hi:
        raise _BadParam(name)
    return value


def _number_of(record: dict, side: str) -> str:
    """The party number: call_from_number, else parsed from `Name<num>` or the plain number."""
    num = record.get(f"{side}_number")
    if num is not None:
        return num
    shown = record[side]
    m = _NAME_NUM_RE.search(shown)
    return m.group(1) if m else shown


class YeastarApi(VendorApi):
    """Request handlers of one simulated Yeastar PBX."""

    vendor = "yeastar"
    id_field = "uid"

    def __init__(
        self,
        config: SimulatorConfig,
        faults: Faults,
        stats: Stats,
        link_secret: bytes,
        cache: PageCache | None = None,
    ) -> None:
        self.cfg = config.yeastar
        super().__init__(config, faults, stats, cache)
        self.display = DisplayFormat(self.cfg.date_format, self.cfg.clock)
        self.reported = DisplayFormat(
            self.cfg.reported_date_format or self.cfg.date_format, self.cfg.clock
        )
        self.descending = self.cfg.order == "desc"
        self.calls = YeastarCalls(
            config.seed,
            self.cfg.timezone,
            config.calls_per_day,
            config.recording_ratio,
            self.display,
            self.cfg.record_file_ext,
        )
        self._secret = link_secret
        self._lock = threading.Lock()
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._failures: dict[str, int] = {}
        self._blocked: set[str] = set()
        self._started = time.time()
        self._recording_days = lru_cache(maxsize=64)(self._recordings_of_day)

    # ------------------------------------------------------------------ records

    def render(self, d: date, i: int) -> dict:
        """Record (d, i) as served now (a withheld recording is not shown yet)."""
        rec = self.generate(d, i).record
        withheld = self.faults.withheld_recordings
        if withheld and rec.get("record_file") in withheld:
            del rec["record_file"]
        return rec

    def without_recording(self, record: dict) -> dict:
        record.pop("record_file", None)
        return record

    def error(self, code: int, status: int = 200, errmsg: str | None = None) -> Reply:
        return self.reply(
            status, {"errcode": code, "errmsg": errmsg or ERRORS.get(code, "FAILURE")}
        )

    def recording_name(self, gen: Generated) -> str | None:
        return gen.record.get("record_file")

    # ------------------------------------------------------------------ dispatch

    def handle(self, req: Request) -> Reply:
        """Any request for a Yeastar path (`/openapi/v1.0/...` or `/api/download/...`)."""
        if req.client_ip in self._blocked:
            return self.error(70004)
        if not req.headers.get("User-Agent"):
            return self.error(40002)
        if req.path.startswith("/api/download/"):
            return self._download(req)
        name = req.path[len(YEASTAR_API_PREFIX) :]
        if name == "get_token":
            return self._get_token(req) if req.method == "POST" else self.error(10001)
        if name == "refresh_token":
            return self._refresh_token(req) if req.method == "POST" else self.error(10001)
        routes = {
            "del_token": self._del_token,
            "system/information": self._system_information,
            "cdr/search": self._cdr_search,
            "cdr/list": self._cdr_list,
            "recording/list": self._recording_list,
            "recording/download": self._recording_download,
        }
        handler = routes.get(name)
        if handler is None or req.method != "GET":
            return self.error(10001)
        if not self._token_valid(req.query.get("access_token", "")):
            return self.error(10004)
        try:
            return handler(req)
        except _BadParam:
            return self.error(40002)

    # ------------------------------------------------------------------ tokens

    def _token_valid(self, token: str) -> bool:
        with self._lock:
            entry = self._access.get(token)
            return (
                entry is not None
                and entry.expires_at > time.time()
                and entry.generation >= self.faults.token_generation
            )

    def _issue(self, now: float) -> dict:
        access, refresh = _new_token(), _new_token()
        self._access[access] = _Access(
            now + self.cfg.access_token_ttl, self.faults.token_generation, refresh
        )
        self._refresh[refresh] = _Refresh(now + self.cfg.refresh_token_ttl, access)
        return {
            "errcode": 0,
            "errmsg": "SUCCESS",
            "access_token_expire_time": self.cfg.access_token_ttl,
            "access_token": access,
            "refresh_token_expire_time": self.cfg.refresh_token_ttl,
            "refresh_token": refresh,
        }

    def _purge(self, now: float) -> None:
        gen = self.faults.token_generation
        dead = [t for t, e in self._access.items() if e.expires_at <= now or e.generation < gen]
        for tok in dead:
            del self._access[tok]
        for tok in [t for t, e in self._refresh.items() if e.expires_at <= now]:
            del self._refresh[tok]

    def _get_token(self, req: Request) -> Reply:
        try:
            body = _json_body(req)
            username, password = body["username"], body["password"]
        except (ValueError, KeyError, TypeError):
            return self.error(40002)
        ok = hmac.compare_digest(
            str(username).encode(), self.cfg.client_id.encode()
        ) & hmac.compare_digest(str(password).encode(), self.cfg.client_secret.encode())
        now = time.time()
        with self._lock:
            if not ok:
                failures = self._failures.get(req.client_ip, 0) + 1
                self._failures[req.client_ip] = failures
                if failures >= self.cfg.max_auth_failures:
                    self._blocked.add(req.client_ip)
                return self.error(-1)
            self._failures.pop(req.client_ip, None)
            self._purge(now)
            if len(self._access) >= self.cfg.max_tokens:
                return self.error(60002)
            return self.reply(200, self._issue(now))

    def _refresh_token(self, req: Request) -> Reply:
        try:
            token = str(_json_body(req)["refresh_token"])
        except (ValueError, KeyError, TypeError):
            return self.error(40002)
        now = time.time()
        with self._lock:
            entry = self._refresh.get(token)
            if entry is None or entry.expires_at <= now:
                return self.error(10004)
            del self._refresh[token]
            self._access.pop(entry.access, None)
            return self.reply(200, self._issue(now))

    def _del_token(self, req: Request) -> Reply:
        with self._lock:
            entry = self._access.pop(req.query.get("access_token", ""), None)
            if entry is not None:
                self._refresh.pop(entry.refresh, None)
        return self.error(0)

    def unblock_ips(self) -> None:
        with self._lock:
            self._blocked.clear()
            self._failures.clear()

    # ------------------------------------------------------------------ system

    def _system_information(self, req: Request) -> Reply:
        now = time.time()
        wall = datetime.fromtimestamp(now, self.calls.index.tz).replace(tzinfo=None)
        up = int(now - self._started)
        days, rest = divmod(up, 86400)
        hours, rest = divmod(rest, 3600)
        return self.reply(
            200,
            {
                "errcode": 0,
                "errmsg": "SUCCESS",
                "data": {
                    "device_name": "Yeastar P-Series (simulated)",
                    "model_name": "P570",
                    "sn": "3570A0000000001",
                    "firmware_version": "37.23.0.123",
                    "system_time": self.reported.format(wall),
                    "up_time": f"{days} days, {hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
                    "system_date_format": self.reported.date_format,
                    "system_time_format": self.display.time_format,
                    "timestamp": int(now),
                },
            },
        )

    # ------------------------------------------------------------------ CDR

    def list_days_range(self) -> tuple[date, date]:
        """First and last PBX-local day of `cdr/list` and `recording/list` (today included)."""
        today = self.calls.index.today()
        return today - timedelta(days=self.cfg.list_days - 1), today

    def list_window(self) -> tuple[int, int]:
        """[start, end) instants of the last `list_days` PBX-local days (today included)."""
        first, last = self.list_days_range()
        idx = self.calls.index
        return idx.day(first).start, idx.day(last).end

    def _window(self, req: Request) -> list[tuple[int, int]]:
        """Instant intervals of the calls whose wall time lies in the request's window."""
        first, last = self.list_days_range()
        lo = datetime.combine(first, wall_time())
        hi = datetime.combine(last + timedelta(days=1), wall_time())
        raw = req.query.get("start_time")
        if raw:
            parsed = self.display.parse(raw)
            if parsed is None:
                raise _BadParam("start_time")
            lo = parsed
        raw = req.query.get("end_time")
        if raw:
            parsed = self.display.parse(raw)
            if parsed is None:
                raise _BadParam("end_time")
            hi = parsed if self.cfg.end_time_exclusive else parsed + timedelta(seconds=1)
        return wall_range_instants(self.calls.index.tz, lo, hi)

    def _page(
        self,
        req: Request,
        intervals: list[tuple[int, int]],
        record_filter: RecordFilter | None = None,
    ) -> Reply:
        page = _int_param(req.query, "page", 1, 1, 10**9)
        size = _int_param(req.query, "page_size", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        total, _, text = self.list_page(
            intervals, page, size, descending=self.descending, record_filter=record_filter
        )
        entries: list[tuple[str, object]] = [
            ("errcode", 0),
            ("errmsg", "SUCCESS"),
            ("total_number", total + self.faults.total_offset),
            ("data", self.data(text)),
        ]
        if self.extra_keys:
            entries.append(("request_id", request_id()))
        return self.body_reply(entries)

    def _cdr_search(self, req: Request) -> Reply:
        return self._page(req, self._window(req), self._search_filter(req.query))

    def _search_filter(self, query: dict[str, str]) -> RecordFilter | None:
        call_from = query.get("call_from") or None
        call_to = query.get("call_to") or None
        status = query.get("status") or None
        if status is not None and status not in YEASTAR_STATUS_MATCH:
            raise _BadParam("status")
        group = query.get("extension_group") or None
        if group is not None:
            group = _int_param(query, "extension_group", 0, 0, 10**9)
        fuzzy = _int_param(query, "enable_fuzzy_search", 0, 0, 1) == 1
        if call_from is None and call_to is None and status is None and group is None:
            return None
        statuses = YEASTAR_STATUS_MATCH[status] if status else None

        def matches(rec: dict) -> bool:
            for side, wanted in (("call_from", call_from), ("call_to", call_to)):
                if wanted is None:
                    continue
                if fuzzy:
                    if wanted not in rec[side]:
                        return False
                elif _number_of(rec, side) != wanted:
                    return False
            if statuses is not None and rec["disposition"] not in statuses:
                return False
            if group is not None:
                numbers = (_number_of(rec, "call_from"), _number_of(rec, "call_to"))
                if not any(
                    n in YEASTAR_EXTENSIONS and extension_group(n) == group for n in numbers
                ):
                    return False
            return True

        return matches

    def _cdr_list(self, req: Request) -> Reply:
        return self._page(req, [self.list_window()])

    # ------------------------------------------------------------------ recordings

    def _recordings_of_day(self, d: date) -> tuple[tuple[int, str], ...]:
        out = []
        for i in range(self.calls.index.n):
            name = self.calls.generate(d, i).record.get("record_file")
            if name:
                out.append((i, name))
        return tuple(out)

    def _recording_list(self, req: Request) -> Reply:
        page = _int_param(req.query, "page", 1, 1, 10**9)
        size = _int_param(req.query, "page_size", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        idx = self.calls.index
        t0, t1 = self.list_window()
        withheld = self.faults.withheld_recordings
        items: list[tuple[date, int]] = []
        d = idx.day_of(t0)
        while idx.day(d).start < t1:
            items.extend((d, i) for i, name in self._recording_days(d) if name not in withheld)
            d += timedelta(days=1)
        data = []
        for d, i in items[(page - 1) * size : page * size]:
            gen = self.calls.generate(d, i)
            rec = gen.record
            name = rec["record_file"]
            seconds = self.faults.recording_seconds.get(name, gen.recording_seconds)
            data.append(
                self.decorate(
                    {
                        "id": rec["id"],
                        "time": rec["time"],
                        "uid": rec["uid"],
                        "call_from": rec["call_from"],
                        "call_to": rec["call_to"],
                        "duration": seconds,
                        "size": audio_size(self.cfg.recording_format, seconds),
                        "call_type": rec["call_type"],
                        "file": name,
                    }
                )
            )
        body: dict[str, object] = {
            "errcode": 0,
            "errmsg": "SUCCESS",
            "total_number": len(items) + self.faults.total_offset,
            "data": data,
        }
        if self.extra_keys:
            body["request_id"] = request_id()
        return self.reply(200, body)

    def _recording_download(self, req: Request) -> Reply:
        ref = req.query.get("file") or req.query.get("id") or ""
        found = self.recording(ref) if ref else None
        if found is None:
            return self.error(60001)
        d, i, gen, _ = found
        expires = int(time.time()) + self.cfg.link_ttl
        payload = f"{d.toordinal()}.{i}.{expires}".encode()
        sig = hmac.new(self._secret, payload, sha256).hexdigest()[:32]
        name = f"Recording-{payload.hex()}-{sig}.{self.cfg.recording_format}"
        return self.reply(
            200,
            {
                "errcode": 0,
                "errmsg": "SUCCESS",
                "file": gen.record["record_file"],
                "download_resource_url": f"{req.prefix}/api/download/{name}",
            },
        )

    def _download(self, req: Request) -> Reply:
        req.endpoint = "/api/download"
        if req.method != "GET":
            return self.error(10001)
        if not self._token_valid(req.query.get("access_token", "")):
            return self.error(10004)
        m = _DOWNLOAD_RE.match(req.path)
        if not m:
            return self.error(60001, status=404)
        try:
            payload = bytes.fromhex(m[1])
            ordinal, i, expires = (int(p) for p in payload.decode().split("."))
        except ValueError:
            return self.error(60001, status=404)
        good = hmac.new(self._secret, payload, sha256).hexdigest()[:32]
        if not hmac.compare_digest(good, m[2]) or m[3] != self.cfg.recording_format:
            return self.error(60001, status=404)
        if int(time.time()) > expires:  # valid through the whole second it names
            return self.error(-1, status=403, errmsg="DOWNLOAD LINK EXPIRED")
        d = date.fromordinal(ordinal)
        name = self.calls.generate(d, i).record.get("record_file", "")
        found = self.recording(name) if name else None
        if found is None:
            return self.error(60001, status=404)
        seconds = found[3]
        fmt = self.cfg.recording_format
        on_close = None
        if fmt == "mp3":
            if self.stats.mp3_enter() > 1:
                self.stats.mp3_leave()
                return self.error(-1, status=503, errmsg="TOO MANY CONCURRENT DOWNLOADS")
            on_close = self.stats.mp3_leave
        return Reply(
            200,
            content_type=self.audio_type(fmt),
            headers=[("Content-Disposition", f'attachment; filename="{name}"')],
            stream=iter_audio(fmt, self.audio_key(d, i), seconds),
            length=audio_size(fmt, seconds),
            audio=True,
            on_close=on_close,
        )


def _json_body(req: Request) -> dict:
    body = json.loads(req.body or b"null")
    if not isinstance(body, dict):
        raise ValueError("JSON object expected")
    return body
