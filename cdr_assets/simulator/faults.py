"""Switchable faults and request statistics of a running simulator (both thread-safe).

Owns the switches tests flip (`sim.faults`) and the counters they assert on (`sim.stats`).
Vendor handlers and the server read them; nothing here knows HTTP or record contents.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

YEASTAR_API_PREFIX = "/openapi/v1.0/"


@dataclass
class FailRule:
    path_prefix: str
    status: int
    times: int
    retry_after: str | None
    body: bytes | None
    content_type: str


class Faults:
    """Fault switches; all off by default. Plain attributes may be assigned directly.

    - ``fail_next(prefix, status, ...)``: the next ``times`` requests under ``prefix`` get that
      response (before any auth check).
    - ``expire_tokens()``: every Yeastar access token issued so far expires now.
    - ``throttle_bytes_per_s``: cap on audio download speed.
    - ``truncate_next_recordings``: next N audio bodies stop after about half (full
      Content-Length sent, connection closed).
    - ``corrupt_next_recordings``: next N audio bodies get a garbage header (same length).
    - ``missing_recordings``: refs the CDR lists with a recording that cannot be downloaded.
    - ``withheld_recordings``: refs whose CDR shows no recording yet (remove to "appear late").
    - ``recording_seconds``: ref -> length in seconds overriding the talk time.
    - ``total_offset``: added to the reported totals (count mismatch).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FailRule] = []
        self.throttle_bytes_per_s: int | None = None
        self.truncate_next_recordings = 0
        self.corrupt_next_recordings = 0
        self.missing_recordings: set[str] = set()
        self.withheld_recordings: set[str] = set()
        self.recording_seconds: dict[str, int] = {}
        self.total_offset = 0
        self.token_generation = 0  # bumped by expire_tokens()

    def fail_next(
        self,
        path_prefix: str,
        status: int,
        times: int = 1,
        retry_after: str | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Answer the next `times` requests whose path starts with `path_prefix` with `status`."""
        if body is None:
            body = b'{"message":"Simulated failure."}'
        with self._lock:
            self._rules.append(FailRule(path_prefix, status, times, retry_after, body,
                                        content_type))

    def take_failure(self, path: str) -> FailRule | None:
        """Consume one pending failure matching `path`, if any."""
        with self._lock:
            for rule in self._rules:
                if path.startswith(rule.path_prefix) and rule.times > 0:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    return rule
        return None

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

    def clear(self) -> None:
        """Switch every fault off (token generation is kept: expired tokens stay expired)."""
        with self._lock:
            self._rules.clear()
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

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

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
            self.max_in_flight = self._in_flight
            self.max_concurrent_mp3 = self._mp3_in_flight
            self.audio_bytes_sent = 0
