"""The simulated Zorio PBX REST API (`/api/pbx/cdr...` and `/api/public/recordings/...`).

Owns the vendor's semantics: bearer auth (401 `{"message":"Unauthenticated."}`), Laravel-style
422 validation, date windows read in `date_timezone`, Laravel paging envelopes, detail records
with HMAC-signed recording URLs built from the request's Host, and the 302 to a fresh URL.
Records come from `data.ZorioCalls`; transport-level faults are applied by `server.py`.
Unfiltered list pages are written as JSON text directly (`ZorioCalls.record_json`, equal to
dumping the dicts) and kept in the shared `PageCache`.

Choices where the vendor page is silent: the window rule is `(to - from).days >= max_window_days
-> 422` for explicit dates; omitted dates default to now-30d / now (in `date_timezone`) and a
defaulted window is only rejected when it exceeds `max_window_days`. Signature checks run before
the recording lookup, as Laravel's `signed` middleware does.

Server styles: `envelope="laravel"` sends Laravel's full paginator (`laravel.py`) and writes
every Zorio JSON reply as PHP's `json_encode` does (`\\/`, `\\uXXXX`); with `extra_keys` list
and detail envelopes carry `"meta": {"request_id": ...}` and records the undocumented keys of
`api.extra_record_keys`. Signed URLs use `recording_base_url` when set (a second host serving
them), and the audio endpoint can 302 to `audio_redirect_base_url` (a CDN) after checking the
signature. A call drift deleted is 404 in the detail too; one it inserted has a detail.
"""

from __future__ import annotations

import hmac
import re
import time
from datetime import date, datetime, timedelta
from hashlib import sha256
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from . import laravel
from .api import RecordFilter, VendorApi, request_id
from .audio import iter_wav, wav_size
from .config import SimulatorConfig
from .data import (
    UUID_RE,
    ZORIO_DIRECTIONS,
    Generated,
    ZorioCalls,
    iso_utc,
    local_midnight,
)
from .faults import Faults, Stats
from .pagecache import PageCache
from .protocol import Reply, Request

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DETAIL_RE = re.compile(r"^/api/pbx/cdr/([^/]+)(/recording)?/?$")
_AUDIO_RE = re.compile(r"^/api/public/recordings/([^/]+)/audio$")
NOT_FOUND = {"message": "Not found."}


class ZorioApi(VendorApi):
    """Request handlers of one simulated Zorio PBX account."""

    vendor = "zorio"
    id_field = "uuid"

    def __init__(
        self,
        config: SimulatorConfig,
        faults: Faults,
        stats: Stats,
        cache: PageCache | None = None,
    ) -> None:
        self.cfg = config.zorio
        self.laravel = self.cfg.envelope == "laravel"
        super().__init__(config, faults, stats, cache, php_json=self.laravel)
        self.calls = ZorioCalls(
            config.seed, self.cfg.timezone, config.calls_per_day, config.recording_ratio
        )
        self.date_tz = ZoneInfo(self.cfg.date_timezone)
        self._key = self.cfg.signing_key.encode()

    # ------------------------------------------------------------------ records

    def render(self, d: date, i: int) -> dict:
        """Record (d, i) as listed now (a withheld recording is not available yet)."""
        rec = self.generate(d, i).record
        withheld = self.faults.withheld_recordings
        if withheld and rec["recording_available"] and rec["uuid"] in withheld:
            rec["recording_available"] = False
        return rec

    def without_recording(self, record: dict) -> dict:
        record["recording_available"] = False
        return record

    def find(self, uuid: str) -> tuple[date, int] | None:
        """(day, index) of the call a uuid names, if it is served now (drift included)."""
        decoded = self.calls.decode_uuid(uuid)
        if decoded is None:
            m = UUID_RE.match(uuid)
            if m is None:
                return None
            try:
                d = datetime.strptime(m[1], "%Y%m%d").date()
            except ValueError:
                return None
            i = int(m[2], 16)
            if (
                i < self.calls.index.n
                or not self.exists(d, i)
                or self.generate(d, i).record["uuid"] != uuid
            ):
                return None
            decoded = d, i
        return decoded if self.exists(*decoded) else None

    def recording_name(self, gen: Generated) -> str | None:
        return gen.record["uuid"] if gen.recording_seconds else None

    def sign(self, rec_id: int, expires: int) -> str:
        return hmac.new(self._key, f"{rec_id}:{expires}".encode(), sha256).hexdigest()

    def signed_url(self, req: Request, rec_id: int) -> str:
        """A fresh signed audio URL on `recording_base_url`, else where the request came in
        (its Host, and a fleet PBX's path prefix)."""
        expires = int(time.time()) + self.cfg.link_ttl
        base = (self.cfg.recording_base_url or req.origin).rstrip("/")
        return (
            f"{base}/api/public/recordings/{rec_id}/audio"
            f"?expires={expires}&signature={self.sign(rec_id, expires)}"
        )

    # ------------------------------------------------------------------ dispatch

    def handle(self, req: Request) -> Reply:
        """Any request for a Zorio path (`/api/pbx/...` or `/api/public/recordings/...`)."""
        m = _AUDIO_RE.match(req.path)
        if m:
            req.endpoint = "/api/public/recordings/{id}/audio"
            return self._audio(req, m[1]) if req.method == "GET" else self._not_allowed(req)
        if req.path.rstrip("/") == "/api/pbx/cdr":
            req.endpoint = "/api/pbx/cdr"
            handler = self._list
            args: tuple = ()
        else:
            m = _DETAIL_RE.match(req.path)
            if not m:
                return self.reply(404, NOT_FOUND)
            req.endpoint = "/api/pbx/cdr/{uuid}" + ("/recording" if m[2] else "")
            handler = self._redirect if m[2] else self._detail
            args = (m[1],)
        auth = req.headers.get("Authorization") or ""
        token = auth[7:] if auth[:7].lower() == "bearer " else ""
        if not token or not hmac.compare_digest(token.encode(), self.cfg.api_token.encode()):
            return self.reply(401, {"message": "Unauthenticated."})
        if req.method != "GET":
            return self._not_allowed(req)
        return handler(req, *args)

    def _not_allowed(self, req: Request) -> Reply:
        return self.reply(
            405, {"message": f"The {req.method} method is not supported for route {req.path}."}
        )

    # ------------------------------------------------------------------ list

    def _validate(self, q: dict[str, str]) -> tuple[dict[str, list[str]], dict]:
        errors: dict[str, list[str]] = {}
        out: dict = {}
        today = datetime.now(self.date_tz).date()
        for name in ("from", "to"):
            raw = q.get(name)
            if raw is None or raw == "":
                continue
            try:
                if not _DATE_RE.match(raw):
                    raise ValueError(raw)
                out[name] = date.fromisoformat(raw)
            except ValueError:
                errors[name] = [f"The {name} field must be a valid date."]
        explicit = "from" in out and "to" in out
        start = out.get("from", today - timedelta(days=30))
        end = out.get("to", today)
        if "from" not in errors and "to" not in errors:
            span = (end - start).days
            limit = self.cfg.max_window_days
            if end < start:
                errors["to"] = ["The to field must be a date after or equal to from."]
            elif span >= limit if explicit else span > limit:
                errors["to"] = [f"The date range may not exceed {limit} days."]
        direction = q.get("direction")
        if direction and direction not in ZORIO_DIRECTIONS:
            errors["direction"] = ["The selected direction is invalid."]
        extension = q.get("extension")
        if extension and not 3 <= len(extension) <= 20:
            errors["extension"] = ["The extension field must be between 3 and 20 characters."]
        phone = q.get("phone")
        if phone and len(phone) > 50:
            errors["phone"] = ["The phone field must not be greater than 50 characters."]
        for name, lo, hi, default in (("page", 1, None, 1), ("per_page", 1, 200, 50)):
            raw = q.get(name)
            if raw is None or raw == "":
                out[name] = default
                continue
            try:
                value = int(raw)
            except ValueError:
                errors[name] = [f"The {name} field must be an integer."]
                continue
            if value < lo or (hi is not None and value > hi):
                errors[name] = [
                    f"The {name} field must be at least {lo}."
                    if hi is None
                    else f"The {name} field must be between {lo} and {hi}."
                ]
            out[name] = value
        out.update(
            start=start,
            end=end,
            direction=direction or None,
            extension=extension or None,
            phone=phone or None,
        )
        return errors, out

    def _list(self, req: Request) -> Reply:
        errors, p = self._validate(req.query)
        if errors:
            first = next(iter(errors.values()))[0]
            more = sum(len(v) for v in errors.values()) - 1
            if more:
                first += f" (and {more} more error{'s' if more > 1 else ''})"
            return self.reply(422, {"message": first, "errors": errors})
        t0 = local_midnight(self.date_tz, p["start"])
        t1 = local_midnight(self.date_tz, p["end"] + timedelta(days=1))
        page, per_page = p["page"], p["per_page"]
        total, count, text = self.list_page(
            [(t0, t1)], page, per_page, record_filter=self._filter(p)
        )
        total += self.faults.total_offset
        if self.laravel:
            path = f"{req.origin}/api/pbx/cdr"
            entries = laravel.paginator_fields(path, page, per_page, total, count)
            entries[1] = ("data", self.data(text))
        else:
            offset = (page - 1) * per_page
            entries = [
                ("current_page", page),
                ("data", self.data(text)),
                ("from", offset + 1 if count else None),
                ("last_page", laravel.last_page(total, per_page)),
                ("per_page", per_page),
                ("to", offset + count if count else None),
                ("total", total),
            ]
        if self.extra_keys:
            entries.append(("meta", {"request_id": request_id()}))
        return self.body_reply(entries)

    @staticmethod
    def _filter(p: dict) -> RecordFilter | None:
        direction, extension, phone = p["direction"], p["extension"], p["phone"]
        if direction is None and extension is None and phone is None:
            return None

        def matches(rec: dict) -> bool:
            return (
                (direction is None or rec["direction"] == direction)
                and (
                    extension is None
                    or extension in (rec["extension_number"], rec["agent_extension"])
                )
                and (phone is None or phone in (rec["caller_number"], rec["destination_number"]))
            )

        return matches

    # ------------------------------------------------------------------ detail / recordings

    def _detail(self, req: Request, uuid: str) -> Reply:
        decoded = self.find(uuid)
        if decoded is None:
            return self.reply(404, NOT_FOUND)
        d, i = decoded
        rec = self.decorate(self.render(d, i))
        found = self.recording(uuid)
        if found is not None and self.cfg.detail_recording == "object":
            _, _, gen, seconds = found
            rec["recording"] = {
                "duration": seconds,
                "file_size": wav_size(seconds) + self.cfg.file_size_delta,
                "recorded_at": iso_utc(gen.answer_ts or 0),
                "url": self.signed_url(req, self.calls.index.numeric_id(d, i)),
                "expires_in_seconds": self.cfg.link_ttl,
            }
        body: dict[str, object] = {"data": rec}
        if self.extra_keys:
            body["meta"] = {"request_id": request_id()}
        return self.reply(200, body)

    def _redirect(self, req: Request, uuid: str) -> Reply:
        found = self.recording(uuid)
        if found is None:
            return self.reply(404, NOT_FOUND)
        d, i, _, _ = found
        url = self.signed_url(req, self.calls.index.numeric_id(d, i))
        return Reply(302, b"", "text/plain", [("Location", url)])

    def _audio(self, req: Request, rec_id: str) -> Reply:
        expires_raw = req.query.get("expires", "")
        signature = req.query.get("signature", "")
        invalid = self.reply(403, {"message": "Invalid signature."})
        if not rec_id.isdigit() or not expires_raw.isdigit():
            return invalid
        expires = int(expires_raw)
        good = self.sign(int(rec_id), expires)
        # Laravel's ValidateSignature: valid through the whole second `expires` names
        if not hmac.compare_digest(good, signature) or int(time.time()) > expires:
            return invalid
        found = self.recording(rec_id)
        if found is None:
            return self.reply(404, NOT_FOUND)
        if self.cfg.audio_redirect_base_url:
            location = (
                f"{self.cfg.audio_redirect_base_url.rstrip('/')}{req.path}?{urlencode(req.query)}"
            )
            return Reply(302, b"", "text/plain", [("Location", location)])
        d, i, gen, seconds = found
        return Reply(
            200,
            content_type=self.audio_type("wav"),
            headers=[("Content-Disposition", f'attachment; filename="{gen.record["uuid"]}.wav"')],
            stream=iter_wav(self.audio_key(d, i), seconds),
            length=wav_size(seconds),
            audio=True,
        )
