"""The recording archive: verified, atomically placed audio files under one root.

This module owns the archive layout `<root>/<pbx>/<YYYY>/<MM>/<DD>/<cdr_id>.<ext>` on a local
path or an fsspec URL, and the rule that a file appears there only whole and verified: bytes are
streamed to a temporary file (flat memory whatever the size) while sha256 and the byte count are
computed, then the count is checked against the HTTP Content-Length and the vendor's stated size,
and the header must be plausible audio (WAV with a consistent data chunk, or MP3 frames). Any
failure deletes the temporary file, raises `RecordingCorrupt`, and leaves an existing good file
untouched; success swaps the file in atomically.

Atomicity: locally the temporary file sits next to the target (`.<name>.<uuid>.part`) and
`os.replace` swaps it. On a remote filesystem the bytes are streamed to a local temporary file,
verified there, and uploaded with one `put_file` to the final key; an object-store PUT (or a
completed multipart upload) replaces the object as a whole, so no reader sees a partial object
and an unverified byte never reaches the bucket.

Names derived from vendor data are sanitized so nothing can escape the root. This module must
not know HTTP, vendors, or the manifest; callers hand it an iterable of byte chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, BinaryIO

from cdr_assets.errors import RecordingCorrupt
from cdr_assets.storage.parquet import is_local, remove_stale_temp_files, resolve_fs

CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
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
    duration_s: float | None


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


# -- audio headers ------------------------------------------------------------------------------

_MPEG_BITRATES = {  # (version_is_1, layer) -> kbit/s by index 1..14
    (True, 1): [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
    (True, 2): [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
    (True, 3): [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    (False, 1): [32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
    (False, 2): [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    (False, 3): [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
}
_MPEG_RATES = {3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000]}


@dataclass(frozen=True)
class _MpegFrame:
    version_bits: int  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
    layer: int  # 1, 2, 3
    bitrate: int  # bit/s
    sample_rate: int
    padding: int
    channel_mode: int

    @property
    def length(self) -> int:
        if self.layer == 1:
            return (12 * self.bitrate // self.sample_rate + self.padding) * 4
        factor = 72 if (self.layer == 3 and self.version_bits != 3) else 144
        return factor * self.bitrate // self.sample_rate + self.padding

    @property
    def samples(self) -> int:
        if self.layer == 1:
            return 384
        if self.layer == 3 and self.version_bits != 3:
            return 576
        return 1152


def _mpeg_frame(header: bytes) -> _MpegFrame | None:
    """Parse a 4-byte MPEG audio frame header; None when it is not a valid one."""
    if len(header) < 4 or header[0] != 0xFF or (header[1] & 0xE0) != 0xE0:
        return None
    version_bits = (header[1] >> 3) & 0x3
    layer_bits = (header[1] >> 1) & 0x3
    bitrate_idx = header[2] >> 4
    rate_idx = (header[2] >> 2) & 0x3
    if version_bits == 1 or layer_bits == 0 or bitrate_idx in (0, 15) or rate_idx == 3:
        return None
    layer = 4 - layer_bits
    kbps = _MPEG_BITRATES[(version_bits == 3, layer)][bitrate_idx - 1]
    return _MpegFrame(
        version_bits=version_bits,
        layer=layer,
        bitrate=kbps * 1000,
        sample_rate=_MPEG_RATES[version_bits][rate_idx],
        padding=(header[2] >> 1) & 0x1,
        channel_mode=header[3] >> 6,
    )


def _id3_size(header: bytes) -> int:
    """Bytes taken by a leading ID3v2 tag (0 when there is none)."""
    if len(header) < 10 or header[:3] != b"ID3":
        return 0
    size_bytes = header[6:10]
    if any(b & 0x80 for b in size_bytes):
        return 0
    size = 0
    for b in size_bytes:
        size = (size << 7) | b
    footer = 10 if header[5] & 0x10 else 0
    return 10 + size + footer


def detect_audio(header: bytes) -> str | None:
    """'wav' or 'mp3' from the first bytes of a file, None when neither is plausible."""
    if len(header) >= 12 and header[:4] == b"RIFF" and header[8:12] == b"WAVE":
        return "wav"
    if header[:3] == b"ID3" and _id3_size(header):
        return "mp3"
    if _mpeg_frame(header[:4]) is not None:
        return "mp3"
    return None


def _read_at(fh: BinaryIO, offset: int, n: int) -> bytes:
    fh.seek(offset)
    return fh.read(n)


def _inspect_wav(fh: BinaryIO, size: int) -> float | None:
    """Check the RIFF/WAVE structure against the file size; returns the duration in seconds."""
    riff = _read_at(fh, 0, 12)
    riff_size = struct.unpack("<I", riff[4:8])[0]
    if riff_size not in (0, 0xFFFFFFFF) and riff_size + 8 > size:
        raise RecordingCorrupt(f"WAV RIFF size {riff_size + 8} exceeds the file's {size} bytes")
    offset = 12
    fmt: tuple[int, int, int, int, int, int] | None = None
    while offset + 8 <= size:
        chunk_id, chunk_size = struct.unpack("<4sI", _read_at(fh, offset, 8))
        body = offset + 8
        if chunk_id == b"fmt ":
            if chunk_size < 16 or body + 16 > size:
                raise RecordingCorrupt("WAV fmt chunk is too short")
            fmt = struct.unpack("<HHIIHH", _read_at(fh, body, 16))
        elif chunk_id == b"data":
            if fmt is None:
                raise RecordingCorrupt("WAV data chunk before any fmt chunk")
            _, channels, rate, byte_rate, _, bits = fmt
            if channels == 0 or rate == 0:
                raise RecordingCorrupt(f"WAV fmt has {channels} channels at {rate} Hz")
            available = size - body
            if chunk_size in (0, 0xFFFFFFFF):  # streamed WAV: size not filled in
                chunk_size = available
            elif chunk_size > available:
                raise RecordingCorrupt(
                    f"WAV data chunk claims {chunk_size} bytes but only {available} follow"
                )
            if byte_rate == 0:
                byte_rate = channels * rate * bits // 8
            return chunk_size / byte_rate if byte_rate else None
        offset = body + chunk_size + (chunk_size & 1)
    raise RecordingCorrupt("WAV has no fmt/data chunk" if fmt is None else "WAV has no data chunk")


def _inspect_mp3(fh: BinaryIO, size: int) -> float | None:
    """Find the first MPEG frame (after an ID3v2 tag) and estimate the duration."""
    start = _id3_size(_read_at(fh, 0, 10))
    if start >= size:
        raise RecordingCorrupt("MP3 ID3 tag runs past the end of the file")
    head = _read_at(fh, start, 4)
    frame = _mpeg_frame(head)
    if frame is None:
        raise RecordingCorrupt(f"no MPEG audio frame sync at byte {start}")
    following = start + frame.length
    if (
        following + 4 <= size
        and _mpeg_frame(_read_at(fh, following, 4)) is None
        and _read_at(fh, following, 3) != b"TAG"  # an ID3v1 trailer may follow the only frame
    ):
        raise RecordingCorrupt(f"no second MPEG frame at byte {following}")
    # Xing/Info header (VBR): frame count gives an exact duration.
    side = (
        (17 if frame.channel_mode == 3 else 32)
        if frame.version_bits == 3
        else (9 if frame.channel_mode == 3 else 17)
    )
    xing = _read_at(fh, start + 4 + side, 12)
    if xing[:4] in (b"Xing", b"Info") and struct.unpack(">I", xing[4:8])[0] & 0x1:
        frames = struct.unpack(">I", xing[8:12])[0]
        return frames * frame.samples / frame.sample_rate
    audio_bytes = size - start - (128 if _read_at(fh, size - 128, 3) == b"TAG" else 0)
    return audio_bytes * 8 / frame.bitrate  # constant-bitrate estimate


def inspect_audio(fh: BinaryIO, size: int) -> tuple[str, float | None]:
    """(format, duration_s) of an open file, or RecordingCorrupt when it is not plausible audio."""
    kind = detect_audio(_read_at(fh, 0, 64))
    if kind == "wav":
        return kind, _inspect_wav(fh, size)
    if kind == "mp3":
        return kind, _inspect_mp3(fh, size)
    raise RecordingCorrupt("content is neither WAV nor MP3 (unrecognised header)")


# -- the archive --------------------------------------------------------------------------------


class RecordingArchive:
    """Verified recording files under `root` (a local path or an fsspec URL such as s3://b/p).

    ```python
    archive = RecordingArchive("./data/recordings")
    path = archive.path_for("hq", date(2026, 1, 2), cdr_id, "wav")
    stored = archive.write_verified(path, stream.iter_chunks(), content_length=n)
    assert archive.matches(stored.uri, stored.sha256, stored.bytes)
    ```
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

    def _uri(self, path: str) -> str:
        return path if self._local else self._fs.unstrip_protocol(path)

    def _strip(self, uri: str) -> str:
        if self._local:
            return os.path.abspath(self._fs._strip_protocol(uri))
        return self._fs._strip_protocol(uri).rstrip("/")

    def path_for(self, pbx: str, call_date: date, cdr_id: str, ext: str) -> str:
        """`<root>/<pbx>/<YYYY>/<MM>/<DD>/<cdr_id>.<ext>`, every vendor-derived part sanitized."""
        name = f"{sanitize_component(cdr_id)}.{sanitize_extension(ext)}"
        parts = [
            self._root.rstrip("/"),
            sanitize_component(pbx),
            f"{call_date.year:04d}",
            f"{call_date.month:02d}",
            f"{call_date.day:02d}",
            name,
        ]
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
        path: str,
        chunks: Iterable[bytes],
        *,
        content_length: int | None = None,
        expected_bytes: int | None = None,
    ) -> ArchivedFile:
        """Stream `chunks` aside, verify sizes and audio header, then swap into `path` atomically.

        Raises `RecordingCorrupt` (nothing written, any existing file untouched) when the byte
        count differs from `content_length` or `expected_bytes`, or the content is not a
        plausible WAV/MP3. An exception from `chunks` itself (a network error) propagates as is,
        with the same clean-up.
        """
        final = self._inside_root(path)
        if self._local:
            directory = os.path.dirname(final)
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".{os.path.basename(final)}.{uuid.uuid4().hex}.part")
        else:
            fd, tmp = tempfile.mkstemp(prefix="cdr_assets_rec_", suffix=".part", dir=self._tmp_dir)
            os.close(fd)
        try:
            digest = hashlib.sha256()
            size = 0
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    if not chunk:
                        continue
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            where = f"recording {os.path.basename(final)}"
            if size == 0:
                raise RecordingCorrupt(f"{where}: empty body")
            if content_length is not None and size != content_length:
                raise RecordingCorrupt(
                    f"{where}: received {size} bytes, Content-Length said {content_length}"
                )
            if expected_bytes is not None and size != expected_bytes:
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
            if self._local:
                os.replace(tmp, final)
                remove_stale_temp_files(
                    os.path.dirname(final), f".{os.path.basename(final)}.*.part"
                )
                with contextlib.suppress(OSError):
                    dir_fd = os.open(os.path.dirname(final), os.O_RDONLY)
                    try:
                        os.fsync(dir_fd)
                    finally:
                        os.close(dir_fd)
            else:
                self._fs.put_file(tmp, final)
                with contextlib.suppress(Exception):
                    self._fs.invalidate_cache(final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return ArchivedFile(
            uri=self._uri(final),
            bytes=size,
            sha256=digest.hexdigest(),
            content_type=CONTENT_TYPES[kind],
            duration_s=round(duration, 3) if duration is not None else None,
        )

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
