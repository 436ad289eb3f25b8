"""Archive a partition's recordings: the policy between a vendor client and the archive.

Owns what "never lose a recording" means in practice: a link is minted immediately before each
download and minted again when the download finds it expired; bytes are verified before they are
kept; a re-run skips what is already archived and intact, repairs what is missing or corrupt on
disk, retries what failed, and stops asking after `missing_rechecks` runs for what the PBX says
does not exist. It knows neither HTTP details (the client's job) nor file formats (the archive's).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Protocol

from cdr_assets.errors import (
    CdrAssetsError,
    PbxApiError,
    PbxAuthError,
    RecordingLinkExpired,
    RecordingMissing,
)
from cdr_assets.storage.archive import RecordingArchive
from cdr_assets.storage.manifest import ManifestRow
from cdr_assets.vendors.base import PbxClient

_SECRET_QUERY = re.compile(
    r"((?:access_token|refresh_token|token|signature|expires|password)=)[^&\s'\"]+", re.I
)


@dataclass(frozen=True)
class RecordingTask:
    """One CDR of the partition that has a recording."""

    cdr_id: str
    recording_ref: str
    call_date: date


@dataclass
class ArchiveOutcome:
    """What a run did, for the manifest and the materialization metadata."""

    rows: list[ManifestRow]
    downloaded: int
    skipped: int
    bytes_downloaded: int
    seconds: float

    @property
    def counts(self) -> Counter[str]:
        return Counter(row.status for row in self.rows)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_downloaded / 1e6 / self.seconds if self.seconds > 0 else 0.0


class ProgressLog(Protocol):
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None: ...


def describe_error(exc: BaseException) -> str:
    """A manifest/log-safe description: our errors are built secret-free; others get redacted."""
    if isinstance(exc, CdrAssetsError):
        return str(exc)
    return _SECRET_QUERY.sub(r"\1***", f"{type(exc).__name__}: {exc}")[:500]


class _Progress:
    """Thread-safe counters logged at most every `every_s` seconds."""

    def __init__(self, total: int, log: ProgressLog, label: str, every_s: float) -> None:
        self.total, self.log, self.label, self.every_s = total, log, label, every_s
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._lock = threading.Lock()

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.done += 1
            self.bytes += nbytes
            now = time.monotonic()
            if now - self._last_log < self.every_s and self.done != self.total:
                return
            self._last_log = now
            elapsed = max(now - self.started, 1e-9)
            self.log.info(
                "%s: recordings %d/%d, %.1f MB, %.2f MB/s",
                self.label,
                self.done,
                self.total,
                self.bytes / 1e6,
                self.bytes / 1e6 / elapsed,
            )


class RecordingArchiver:
    """Archives one PBX's recordings with bounded, vendor-respecting concurrency."""

    def __init__(
        self,
        client: PbxClient,
        archive: RecordingArchive,
        *,
        pbx: str,
        concurrency: int = 4,
        max_attempts: int = 3,
        missing_rechecks: int = 3,
        retry_pause_s: float = 0.5,
        log: ProgressLog | None = None,
        progress_every_s: float = 10.0,
    ) -> None:
        self.client = client
        self.archive = archive
        self.pbx = pbx
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.missing_rechecks = missing_rechecks
        self.retry_pause_s = retry_pause_s
        self.log: ProgressLog = log or logging.getLogger(__name__)
        self.progress_every_s = progress_every_s

    def archive_partition(
        self,
        tasks: list[RecordingTask],
        previous: dict[str, ManifestRow],
        *,
        on_row: Callable[[ManifestRow], None] | None = None,
    ) -> ArchiveOutcome:
        """Bring every task to a manifest row; returns rows in task order. `on_row` hears each
        row as it is settled (in this thread), e.g. to checkpoint the manifest.

        Verifying an archived file (a full sha256 read) runs in the same worker pool as the
        downloads, so a re-run over a large archive is as parallel as a first run.
        """
        started = time.monotonic()
        label = f"{self.pbx} {tasks[0].call_date}" if tasks else self.pbx
        progress = _Progress(len(tasks), self.log, label, self.progress_every_s)
        work = [(task, previous.get(task.cdr_id)) for task in tasks]
        done: dict[str, tuple[ManifestRow, bool]] = {}
        for cdr_id, settled in self._run_bounded(work, progress):
            done[cdr_id] = settled
            if on_row is not None:
                on_row(settled[0])
        rows = [done[task.cdr_id][0] for task in tasks]
        skipped = sum(1 for _, kept in done.values() if kept)
        if skipped:
            self.log.info("%s: %d recordings already archived and intact", label, skipped)
        return ArchiveOutcome(
            rows=rows,
            downloaded=len(tasks) - skipped,
            skipped=skipped,
            bytes_downloaded=progress.bytes,
            seconds=time.monotonic() - started,
        )

    def _still_good(self, prior: ManifestRow | None) -> bool:
        """Archived and intact on disk, or reported missing often enough to stop asking."""
        if prior is None:
            return False
        if prior.status == "missing":
            return prior.attempts >= self.missing_rechecks
        if prior.status == "archived" and prior.uri and prior.sha256 and prior.bytes is not None:
            if self.archive.matches(prior.uri, prior.sha256, prior.bytes):
                return True
            self.log.warning(
                "%s: %s is missing or corrupt on disk; downloading again", self.pbx, prior.uri
            )
        return False

    def _settle(
        self, task: RecordingTask, prior: ManifestRow | None, progress: _Progress
    ) -> tuple[ManifestRow, bool]:
        """(row, kept): the prior row if it still holds, else the outcome of a download."""
        if prior is not None and self._still_good(prior):
            progress.add(0)
            return prior, True
        return self._archive_one(task, prior, progress), False

    def _run_bounded(
        self, work: list[tuple[RecordingTask, ManifestRow | None]], progress: _Progress
    ) -> Iterator[tuple[str, tuple[ManifestRow, bool]]]:
        """Keep at most 2×concurrency futures alive so a huge day doesn't queue a million;
        on an error that ends the run (a refused credential), queued work is cancelled."""
        pending: set[Future[tuple[ManifestRow, bool]]] = set()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"rec-{self.pbx}")
        try:
            for task, prior in work:
                pending.add(pool.submit(self._settle, task, prior, progress))
                if len(pending) >= 2 * self.concurrency:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        row, kept = future.result()
                        yield row.cdr_id, (row, kept)
            for future in pending:
                row, kept = future.result()
                yield row.cdr_id, (row, kept)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _archive_one(
        self, task: RecordingTask, prior: ManifestRow | None, progress: _Progress
    ) -> ManifestRow:
        """Mint a link, download, verify; on expiry or damage mint again, up to max_attempts.

        A refused credential (`PbxAuthError`) ends the whole archive run: the client's breaker
        would refuse every other recording too, and retrying it is what gets an IP blocked. An
        answer a retry cannot change (a refused link, a non-audio body) fails the recording at
        once; its row says why and the next run tries again.
        """
        attempts_before = prior.attempts if prior else 0
        error = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            try:
                with (
                    self.client.download_slot(task.recording_ref),
                    self.client.open_recording(task.recording_ref) as stream,
                ):
                    stored = self.archive.write_verified(
                        self.pbx,
                        task.call_date,
                        task.cdr_id,
                        stream.iter_chunks(),
                        content_length=stream.content_length,
                        expected_bytes=stream.expected_bytes,
                        announced_type=stream.content_type,
                    )
                progress.add(stored.bytes)
                if stored.note:
                    self.log.warning("%s: %s archived: %s", self.pbx, task.cdr_id, stored.note)
                return self._row(
                    task,
                    status="archived",
                    attempts=attempts_before + attempt,
                    uri=stored.uri,
                    bytes=stored.bytes,
                    sha256=stored.sha256,
                    content_type=stored.content_type,
                    duration_s=stored.duration_s,
                    recorded_at=stream.recorded_at,
                    error=stored.note,
                )
            except PbxAuthError:
                raise
            except RecordingMissing as exc:
                progress.add(0)
                self.log.warning("%s: recording of %s is missing: %s", self.pbx, task.cdr_id, exc)
                return self._row(
                    task,
                    status="missing",
                    attempts=attempts_before + attempt,
                    error=describe_error(exc),
                )
            except RecordingLinkExpired as exc:
                error = describe_error(exc)
                self.log.info("%s: link for %s expired; minting a fresh one", self.pbx, task.cdr_id)
            except PbxApiError as exc:
                error = describe_error(exc)
                self.log.warning(
                    "%s: attempt %d for %s failed: %s", self.pbx, attempt, task.cdr_id, error
                )
                if not exc.transient:
                    progress.add(0)
                    return self._row(
                        task, status="failed", attempts=attempts_before + attempt, error=error
                    )
                time.sleep(self.retry_pause_s * attempt)
            except (CdrAssetsError, OSError) as exc:  # corrupt bytes, requests' stream errors
                error = describe_error(exc)
                self.log.warning(
                    "%s: attempt %d for %s failed: %s", self.pbx, attempt, task.cdr_id, error
                )
                time.sleep(self.retry_pause_s * attempt)
        progress.add(0)
        return self._row(
            task, status="failed", attempts=attempts_before + self.max_attempts, error=error
        )

    def _row(
        self, task: RecordingTask, *, status: str, attempts: int, **fields: object
    ) -> ManifestRow:
        base = ManifestRow(
            pbx=self.pbx,
            vendor=self.client.vendor,
            cdr_id=task.cdr_id,
            call_date=task.call_date,
            status=status,
            uri=None,
            bytes=None,
            sha256=None,
            content_type=None,
            duration_s=None,
            archived_at=datetime.now(UTC),
            attempts=attempts,
            error=None,
        )
        return replace(base, **fields)
