"""The auth circuit breaker: a refused credential is not offered to the PBX again.

A PBX blocks the client's IP after a few failed logins (Yeastar: five), and a run is retried in a
new process by Dagster's step retries and started twice by one schedule tick, so remembering a
refusal in memory is not enough. This module owns the breaker's state: one small JSON file per
PBX in a local state directory (or, without one, a process-wide memory), a cross-process
`fcntl.flock` lock held around each auth attempt, and the fingerprint that tells whether the
credential changed (a salted PBKDF2 of URL and credential, truncated; never the secret). It
decides whether an attempt may go to the PBX; it must not send requests or know any vendor's
endpoints: the resources call `attempt()` around their auth requests and `trip()` on a refusal
seen elsewhere. `python -m cdr_assets.auth_breaker` shows and resets the state.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
import orjson

from cdr_assets.errors import PbxApiError, PbxAuthError

logger = dg.get_dagster_logger(__name__)

#: PBKDF2-HMAC-SHA256 rounds of the fingerprint (OWASP's figure): a state file is no cheap oracle.
FINGERPRINT_ITERATIONS = 600_000
#: Hex digits of the fingerprint kept (64 bits: enough to tell credentials apart, no more).
FINGERPRINT_HEX_DIGITS = 16
#: Hex digits `show` prints.
FINGERPRINT_SHOWN = 8
#: Sub-directory of the state dir holding the breaker files.
BREAKER_SUBDIR = "auth_breaker"
#: How long an attempt waits for another process's attempt to finish before giving up.
LOCK_WAIT_S = 600.0
RESET_COMMAND = "python -m cdr_assets.auth_breaker reset --pbx {pbx}"

_SAFE_NAME = re.compile(r"^[a-z0-9_\-]+$")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def format_utc(instant: datetime) -> str:
    """`2026-06-15 10:00:00 UTC`: how the breaker names instants in messages."""
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True)
class BreakerState:
    """An open breaker: who refused what, when, and until when no attempt is made."""

    pbx: str
    fingerprint: str  # truncated PBKDF2 of base_url + credential, hex
    salt: str  # hex
    opened_at: datetime
    cooldown_until: datetime
    endpoint: str
    errcode: int | None
    http_status: int | None
    reason: str  # the refusal's message (built from redacted parts)

    def to_json(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["opened_at"] = self.opened_at.isoformat()
        data["cooldown_until"] = self.cooldown_until.isoformat()
        return orjson.dumps(data, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> BreakerState:
        data = orjson.loads(raw)
        return cls(
            pbx=str(data["pbx"]),
            fingerprint=str(data["fingerprint"]),
            salt=str(data["salt"]),
            opened_at=_utc(data["opened_at"]),
            cooldown_until=_utc(data["cooldown_until"]),
            endpoint=str(data["endpoint"]),
            errcode=data.get("errcode"),
            http_status=data.get("http_status"),
            reason=str(data["reason"]),
        )

    def cooling_down(self, now: datetime) -> bool:
        """True while attempts are refused; after it, one attempt may go (half-open)."""
        return now < self.cooldown_until

    def label(self, now: datetime) -> str:
        return "open" if self.cooling_down(now) else "half-open"


class BreakerStore(Protocol):
    """Where breaker states live; `locked(pbx)` serialises attempts across threads/processes."""

    def locked(self, pbx: str) -> contextlib.AbstractContextManager[None]: ...

    def read(self, pbx: str) -> BreakerState | None: ...

    def write(self, state: BreakerState) -> None: ...

    def clear(self, pbx: str) -> bool: ...

    def states(self) -> list[BreakerState]: ...


def _file_key(pbx: str) -> str:
    """A file name for `pbx` that cannot leave the directory (config names already are safe)."""
    if _SAFE_NAME.match(pbx):
        return pbx
    digest = hashlib.sha256(pbx.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^a-z0-9_-]', '_', pbx.lower())[:40]}-{digest}"


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(key: str) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


class FileBreakerStore:
    """Breaker states as `<state_dir>/auth_breaker/<pbx>.json`, locked with `<pbx>.lock`."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(state_dir) / BREAKER_SUBDIR

    def _path(self, pbx: str, suffix: str) -> Path:
        return self.directory / f"{_file_key(pbx)}{suffix}"

    @contextlib.contextmanager
    def locked(self, pbx: str) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(pbx, ".lock")
        with _thread_lock(str(path)):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                deadline = time.monotonic() + LOCK_WAIT_S
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise PbxApiError(
                                pbx,
                                "auth breaker",
                                f"another process held the auth lock {path} for over "
                                f"{LOCK_WAIT_S:.0f} s",
                                transient=True,
                            ) from None
                        time.sleep(0.05)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def read(self, pbx: str) -> BreakerState | None:
        path = self._path(pbx, ".json")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return BreakerState.from_json(raw)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Fail safe: an unreadable state must not let a refused secret through.
            raise PbxAuthError(
                pbx,
                "auth breaker",
                f"the auth breaker state {path} is unreadable; check it, then "
                f"`{RESET_COMMAND.format(pbx=pbx)}`",
            ) from None

    def write(self, state: BreakerState) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(state.pbx, ".json")
        temp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        with open(temp, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(state.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)

    def clear(self, pbx: str) -> bool:
        try:
            self._path(pbx, ".json").unlink()
        except FileNotFoundError:
            return False
        return True

    def states(self) -> list[BreakerState]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                found.append(BreakerState.from_json(path.read_bytes()))
        return found


class MemoryBreakerStore:
    """Breaker states in this process only (a resource built without `auth_state_dir`)."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}

    @contextlib.contextmanager
    def locked(self, pbx: str) -> Iterator[None]:
        with _thread_lock(f"memory:{pbx}"):
            yield

    def read(self, pbx: str) -> BreakerState | None:
        return self._states.get(pbx)

    def write(self, state: BreakerState) -> None:
        self._states[state.pbx] = state

    def clear(self, pbx: str) -> bool:
        return self._states.pop(pbx, None) is not None

    def states(self) -> list[BreakerState]:
        return list(self._states.values())


#: The store of every breaker without a state directory, shared by this process.
PROCESS_STORE = MemoryBreakerStore()


def store_for(state_dir: str | None) -> BreakerStore:
    """The file store under `state_dir`, or the process-wide memory store for None."""
    return PROCESS_STORE if state_dir is None else FileBreakerStore(state_dir)


def fingerprint(material: Sequence[str], salt: bytes) -> str:
    """Truncated salted PBKDF2 of `material` (URL and credential parts): tells credentials
    apart without storing anything a secret could be recovered from cheaply."""
    joined = "\0".join(material).encode()
    digest = hashlib.pbkdf2_hmac("sha256", joined, salt, FINGERPRINT_ITERATIONS)
    return digest.hex()[:FINGERPRINT_HEX_DIGITS]


class AuthBreaker:
    """The breaker of one PBX and credential.

    `attempt()` wraps each auth request: it takes the cross-process lock, fails at once with
    `PbxAuthError` while a refusal of this credential is cooling down, and lets exactly one
    attempt through after the cool-down (the lock keeps the others waiting for its outcome).
    Inside, call `accepted()` when the PBX took the credential (closes the breaker) or raise
    `refused(error)` when it refused it (opens it). `trip(error)` opens it from outside an
    attempt (an IP block reported by an ordinary call).
    """

    def __init__(
        self,
        pbx: str,
        base_url: str,
        credential: Sequence[str],
        *,
        state_dir: str | None,
        cooldown: timedelta,
    ) -> None:
        self.pbx = pbx
        self.cooldown = cooldown
        self.store = store_for(state_dir)
        self._material = (base_url, *credential)
        self._fingerprints: dict[str, str] = {}
        self._fingerprint_lock = threading.Lock()

    def _fingerprint(self, salt_hex: str) -> str:
        with self._fingerprint_lock:
            value = self._fingerprints.get(salt_hex)
            if value is None:
                value = fingerprint(self._material, bytes.fromhex(salt_hex))
                self._fingerprints[salt_hex] = value
            return value

    def _is_ours(self, state: BreakerState) -> bool:
        """True if `state` was opened for this URL and credential (not an older one)."""
        return hmac.compare_digest(self._fingerprint(state.salt), state.fingerprint)

    @contextlib.contextmanager
    def attempt(self) -> Iterator[AuthAttempt]:
        """Hold around one auth request; see the class docstring."""
        with self.store.locked(self.pbx):
            state = self.store.read(self.pbx)
            if state is not None and self._is_ours(state):
                if state.cooling_down(datetime.now(UTC)):
                    raise self._suspended(state)
                logger.warning(
                    "PBX %r: the auth breaker's cool-down is over; making one attempt",
                    self.pbx,
                )
            yield AuthAttempt(self, state)

    def trip(self, error: PbxAuthError) -> PbxAuthError:
        """Open the breaker for `error` (a refusal seen outside `attempt()`); returns the error
        to raise, which says until when attempts are suspended and how to reset."""
        with self.store.locked(self.pbx):
            return self._open(error)

    def _open(self, error: PbxAuthError) -> PbxAuthError:
        now = datetime.now(UTC)
        salt = secrets.token_hex(16)
        state = BreakerState(
            pbx=self.pbx,
            fingerprint=self._fingerprint(salt),
            salt=salt,
            opened_at=now,
            cooldown_until=now + self.cooldown,
            endpoint=error.endpoint,
            errcode=error.errcode,
            http_status=error.http_status,
            reason=error.detail[:500],
        )
        self.store.write(state)
        logger.error(
            "PBX %r: %s refused the credential; auth attempts suspended until %s",
            self.pbx,
            error.endpoint,
            format_utc(state.cooldown_until),
        )
        return PbxAuthError(
            self.pbx,
            error.endpoint,
            f"{error.detail}. Not retried: further attempts are suspended until "
            f"{format_utc(state.cooldown_until)} or until the credential changes; to retry "
            f"sooner, fix it and run `{RESET_COMMAND.format(pbx=self.pbx)}`",
            errcode=error.errcode,
            http_status=error.http_status,
        )

    def _suspended(self, state: BreakerState) -> PbxAuthError:
        what = ", ".join(
            part
            for part in (
                f"HTTP {state.http_status}" if state.http_status is not None else "",
                f"errcode {state.errcode}" if state.errcode is not None else "",
            )
            if part
        )
        return PbxAuthError(
            self.pbx,
            state.endpoint,
            f"authentication is suspended by the auth breaker until "
            f"{format_utc(state.cooldown_until)}, so nothing was sent: {state.endpoint} refused "
            f"this credential at {format_utc(state.opened_at)}"
            f"{f' ({what})' if what else ''}: {state.reason}. Fix the credential (a changed "
            f"one is tried at once), wait for the cool-down, or reset: "
            f"`{RESET_COMMAND.format(pbx=self.pbx)}`",
            errcode=state.errcode,
            http_status=state.http_status,
        )


class AuthAttempt:
    """One auth request under the breaker's lock (from `AuthBreaker.attempt()`)."""

    def __init__(self, breaker: AuthBreaker, state: BreakerState | None) -> None:
        self._breaker = breaker
        self._state = state

    def accepted(self) -> None:
        """The PBX took the credential: close the breaker (after a cool-down or a change)."""
        if self._state is not None:
            self._breaker.store.clear(self._breaker.pbx)
            logger.info("PBX %r: credential accepted; auth breaker closed", self._breaker.pbx)
            self._state = None

    def refused(self, error: PbxAuthError) -> PbxAuthError:
        """The PBX refused the credential: open the breaker; returns the error to raise."""
        return self._breaker._open(error)


def list_states(state_dir: str | None) -> list[BreakerState]:
    """Every open breaker in `state_dir` (None: this process's memory)."""
    return store_for(state_dir).states()


def reset(state_dir: str | None, pbx: str) -> bool:
    """Close `pbx`'s breaker; True if one was open. Waits for an attempt in progress."""
    store = store_for(state_dir)
    with store.locked(pbx):
        return store.clear(pbx)
