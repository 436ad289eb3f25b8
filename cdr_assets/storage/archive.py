"""The recording archive: verified, atomically placed audio files under one root.

This module owns the archive layout `<root>/<pbx>/<YYYY>/<MM>/<DD>/<cdr_id>.<ext>` on a local
path or an fsspec URL, and the rule that a file appears there only whole and verified: bytes are
streamed to a temporary file (flat memory whatever the size) while sha256 and the byte count are
computed, then the count is checked against the HTTP Content-Length and the vendor's stated size,
and the header must be plausible audio (WAV with a consistent data chunk, or MP3 frames). Any
failure deletes the temporary file, raises `RecordingCorrupt`, and leaves an existing good file
untouched; success swaps the file in atomically.

What is stored is what the bytes are: the extension and `content_type` come from the audio
header, not from the vendor's file name or the response's Content-Type (an MP3 served for a
`.wav` name is stored as `<cdr_id>.mp3`, `audio/mpeg`), and a file of the same recording under
the other extension is removed once the new one is in place. Disagreements that the bytes settle
are accepted and reported in `ArchivedFile.note`: the announced type, and a vendor size that
differs from a Content-Length the body matched.

Atomicity: locally the temporary file is built in `<root>/.staging/<pbx>/<YYYY>/<MM>/<DD>/` (same
filesystem, outside the layout) and `os.replace` swaps it in; leftovers of a killed download
are removed when that day is next archived (see `staging`). On a remote filesystem the bytes are
streamed to a local staging file, verified there, and uploaded with one `put_file` to the final
key; an object-store PUT (or a completed multipart upload) replaces the object as a whole, so no
reader sees a partial object and an unverified byte never reaches the bucket.

Names derived from vendor data are sanitized so nothing can escape the root. This module must
not know HTTP, vendors, or the manifest; callers hand it an iterable of byte chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cdr_assets.audio import CONTENT_TYPES, announced_format, inspect_audio
from cdr_assets.errors import RecordingCorrupt
from cdr_assets.storage.parquet import is_local, resolve_fs
from cdr_assets.storage.staging import (
    create_temp,
    local_staging_dir,
    prune_empty_dirs,
    remove_leftovers,
    staging_dir,
)

_PART_SUFFIX = ".part"
_LEGACY_PART = ".*.part"  # older versions built the file next to the final one
MAX_NAME_LEN = 120
MAX_EXT_LEN = 8
_HASH_BLOCK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ArchivedFile:
    """A recording as stored: where, how big, its sha256, detected type and duration."""

    uri: str
    bytes: int
    sha256: str
    content_type: str
    """MIME type of the format the bytes are (audio/wav, audio/mpeg)."""
    duration_s: float | None
    format: str
    """'wav' or 'mp3', from the audio header; also the file's extension."""
    note: str | None = None
    """What disagreed with the bytes and was settled by them (announced type, vendor's size)."""


# -- names --------------------------------------------------------------------------------------


def sanitize_component(value: str, *, max_len: int = MAX_NAME_LEN) -> str:
    """One safe path component: `[A-Za-z0-9._-]` only, never empty, `.`/`..` or hidden.

    Anything else (slashes, NUL, unicode, spaces) becomes `_`. When the value had to change, or
    is cut to `max_len`, a short hash of the original is appended so that two different vendor
    ids never land on the same file.
    """
    value = str(value)
    safe = _UNSAFE.sub("_", value)
    if safe.startswith("."):
        safe = "_" + safe[1:]  # no hidden files, no "." or "..", no clash with our temp names
    if not safe:
        safe = "_"
    if safe != value or len(safe) > max_len:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        safe = f"{safe[: max_len - 13]}-{digest}"
    return safe


def sanitize_extension(ext: str) -> str:
    """A file extension of ASCII letters and digits only, lower case; `bin` when nothing is left."""
    cleaned = re.sub(r"[^a-z0-9]", "", str(ext).lower().lstrip("."))[:MAX_EXT_LEN]
    return cleaned or "bin"


# -- the archive --------------------------------------------------------------------------------


class RecordingArchive:
    """Verified recording files under `root` (a local path or an fsspec URL such as s3://b/p).

    ```python
    archive = RecordingArchive("./data/recordings")
    stored = archive.write_verified(
        "hq", date(2026, 1, 2), cdr_id, stream.iter_chunks(),
        content_length=stream.content_length, expected_bytes=stream.expected_bytes,
        announced_type=stream.content_type,
    )
    assert archive.matches(stored.uri, stored.sha256, stored.bytes)
    ```

    Safe to share between threads.
    """

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        local_tmp_dir: str | None = None,
    ) -> None:
        self._fs, self._root = resolve_fs(root, storage_options)
        self._local = is_local(self._fs)
        self._tmp_dir = local_tmp_dir  # remote only: where downloads are verified before upload
        self.root = self._uri(self._root)
        self._swept: set[tuple[str, ...]] = set()  # days whose leftovers this instance removed
        self._swept_lock = threading.Lock()

    def _uri(self, path: str) -> str:
        return path if self._local else self._fs.unstrip_protocol(path)

    def _strip(self, uri: str) -> str:
        if self._local:
            return os.path.abspath(self._fs._strip_protocol(uri))
        return self._fs._strip_protocol(uri).rstrip("/")

    def path_for(self, pbx: str, call_date: date, cdr_id: str, ext: str) -> str:
        """`<root>/<pbx>/<YYYY>/<MM>/<DD>/<cdr_id>.<ext>`, every vendor-derived part sanitized."""
        name = f"{sanitize_component(cdr_id)}.{sanitize_extension(ext)}"
        parts = [self._root.rstrip("/"), *self._day_parts(pbx, call_date), name]
        return self._uri("/".join(parts))

    def _inside_root(self, uri: str) -> str:
        path = self._strip(uri)
        root = self._root.rstrip("/")
        norm = os.path.normpath(path) if self._local else path
        if not norm.startswith(root + "/") or "/../" in f"/{norm}/" or "\x00" in norm:
            raise ValueError(f"{uri!r} is outside the archive root {self.root!r}")
        return norm

    def write_verified(
        self,
        pbx: str,
        call_date: date,
        cdr_id: str,
        chunks: Iterable[bytes],
        *,
        content_length: int | None = None,
        expected_bytes: int | None = None,
        announced_type: str | None = None,
    ) -> ArchivedFile:
        """Stream `chunks` aside, verify them, and store them atomically as the recording of
        `cdr_id` at `path_for(pbx, call_date, cdr_id, <format of the bytes>)`.

        Raises `RecordingCorrupt` (nothing written, any existing file untouched) when the body is
        empty, differs from `content_length`, is not a plausible WAV/MP3, or differs from the
        PBX's `expected_bytes` without a `content_length` it matches. A body that matches its
        Content-Length and has a valid header is stored even when `expected_bytes` differs, and
        `note` says so; so does a format other than the one `announced_type` (the response's
        Content-Type) named. An exception from `chunks` itself (a network error) propagates as
        is, with the same clean-up.
        """
        day = self._day_parts(pbx, call_date)
        staging = staging_dir(self._root, *day) if self._local else self._remote_staging()
        self._remove_leftovers(day, staging)
        tmp = create_temp(staging, _PART_SUFFIX)
        where = f"recording {sanitize_component(cdr_id)} of {day[0]} {call_date.isoformat()}"
        try:
            size, sha256 = _stream_to(tmp, chunks)
            if size == 0:
                raise RecordingCorrupt(f"{where}: empty body")
            if content_length is not None and size != content_length:
                raise RecordingCorrupt(
                    f"{where}: received {size} bytes, Content-Length said {content_length}"
                )
            size_differs = expected_bytes is not None and size != expected_bytes
            if size_differs and content_length is None:
                raise RecordingCorrupt(
                    f"{where}: received {size} bytes, the PBX said the file has {expected_bytes}"
                )
            with open(tmp, "rb") as fh:
                try:
                    kind, duration = inspect_audio(fh, size)
                except RecordingCorrupt as exc:
                    raise RecordingCorrupt(f"{where}: {exc}") from None
                except struct.error:
                    raise RecordingCorrupt(f"{where}: audio header is truncated") from None
            notes = []
            announced = announced_format(announced_type)
            if announced is not None and announced != kind:
                notes.append(
                    f"the response announced {announced_type!r} but the bytes are {kind.upper()}"
                )
            if size_differs:
                notes.append(
                    f"the PBX said the file has {expected_bytes} bytes; received {size}, "
                    "as Content-Length said, with a valid header"
                )
            final = self._inside_root(self.path_for(pbx, call_date, cdr_id, kind))
            self._place(tmp, final)
            self._remove_other_formats(pbx, call_date, cdr_id, kind)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            if self._local:
                prune_empty_dirs(staging, staging_dir(self._root))
        return ArchivedFile(
            uri=self._uri(final),
            bytes=size,
            sha256=sha256,
            content_type=CONTENT_TYPES[kind],
            duration_s=round(duration, 3) if duration is not None else None,
            format=kind,
            note="; ".join(notes) or None,
        )

    def _day_parts(self, pbx: str, call_date: date) -> tuple[str, str, str, str]:
        return (
            sanitize_component(pbx),
            f"{call_date.year:04d}",
            f"{call_date.month:02d}",
            f"{call_date.day:02d}",
        )

    def _remote_staging(self) -> str:
        return self._tmp_dir or local_staging_dir()

    def _remove_leftovers(self, day: tuple[str, ...], staging: str) -> None:
        """Once per day and instance: what killed downloads of that day left behind."""
        with self._swept_lock:
            if day in self._swept:
                return
            self._swept.add(day)
        remove_leftovers(staging, f"*{_PART_SUFFIX}")
        if self._local:
            remove_leftovers("/".join([self._root.rstrip("/"), *day]), _LEGACY_PART)

    def _place(self, tmp: str, final: str) -> None:
        """Swap the verified file in: a rename locally, one whole-object PUT remotely."""
        if self._local:
            directory = os.path.dirname(final)
            os.makedirs(directory, exist_ok=True)
            os.replace(tmp, final)
            with contextlib.suppress(OSError):
                dir_fd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        else:
            self._fs.put_file(tmp, final)
            with contextlib.suppress(Exception):
                self._fs.invalidate_cache(final)

    def _remove_other_formats(self, pbx: str, call_date: date, cdr_id: str, kind: str) -> None:
        """One file per recording: an earlier copy stored under another format's extension."""
        for other in CONTENT_TYPES:
            if other == kind:
                continue
            path = self._strip(self.path_for(pbx, call_date, cdr_id, other))
            with contextlib.suppress(FileNotFoundError):
                self._fs.rm_file(path)
            if not self._local:
                with contextlib.suppress(Exception):
                    self._fs.invalidate_cache(path)

    def exists(self, uri: str) -> bool:
        """True when a file is stored at `uri`."""
        return bool(self._fs.exists(self._strip(uri)))

    def matches(self, uri: str, sha256: str, bytes: int) -> bool:  # noqa: A002 (manifest name)
        """True when the file at `uri` exists, has `bytes` bytes and hashes to `sha256`."""
        path = self._strip(uri)
        try:
            info = self._fs.info(path)
        except FileNotFoundError:
            return False
        if info.get("type") == "directory" or int(info.get("size") or 0) != bytes:
            return False
        digest = hashlib.sha256()
        with self._fs.open(path, "rb", block_size=_HASH_BLOCK) as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest() == sha256.lower()


def _stream_to(path: str, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write `chunks` to `path` (flushed to disk); returns (bytes written, hex sha256)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:
        for chunk in chunks:
            if not chunk:
                continue
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()
