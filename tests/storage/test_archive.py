"""RecordingArchive: verified atomic writes, corruption detection and safe names, local and S3."""

from __future__ import annotations

import hashlib
import os
import struct
import time
import tracemalloc
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import fsspec
import pytest

from cdr_assets.errors import RecordingCorrupt
from cdr_assets.storage.archive import RecordingArchive, detect_audio, sanitize_component
from cdr_assets.storage.parquet import STALE_TEMP_AGE_S
from tests.fixtures.s3 import S3Location
from tests.storage.helpers import MP3_FRAME_LEN, chunked, make_mp3, make_wav

DAY = date(2026, 3, 8)


class Store:
    """An archive under test plus raw access to its backing store (local dir or S3 bucket)."""

    def __init__(self, root: str, storage_options: dict | None = None) -> None:
        self.archive = RecordingArchive(root, storage_options)
        self.fs, self.root_path = fsspec.core.url_to_fs(root, **(storage_options or {}))

    def _path(self, uri: str) -> str:
        return self.fs._strip_protocol(uri)

    def read(self, uri: str) -> bytes:
        return self.fs.cat_file(self._path(uri))

    def overwrite(self, uri: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(uri), data)

    def names(self) -> list[str]:
        """Every file under the root, hidden temporaries included (fresh listing)."""
        self.fs.invalidate_cache()
        if not self.fs.exists(self.root_path):
            return []
        return sorted(self.fs.find(self.root_path, withdirs=False))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "recordings"))
    location: S3Location = request.getfixturevalue("s3_bucket_url")
    return Store(location.url, location.storage_options)


def test_valid_wav_is_stored_with_hash_type_and_duration(store: Store) -> None:
    data = make_wav(seconds=1.5)
    path = store.archive.path_for("hq", DAY, "cdr-1", "wav")
    stored = store.archive.write_verified(
        path, chunked(data), content_length=len(data), expected_bytes=len(data)
    )
    assert stored.uri == path and path.endswith("/hq/2026/03/08/cdr-1.wav")
    assert stored.bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.content_type == "audio/wav"
    assert stored.duration_s == pytest.approx(1.5)
    assert store.read(path) == data
    assert store.names() == [store._path(path)]
    assert store.archive.matches(stored.uri, stored.sha256, stored.bytes)


@pytest.mark.parametrize("id3", [False, True])
def test_mp3_frames_are_accepted_with_an_estimated_duration(store: Store, id3: bool) -> None:
    data = make_mp3(frames=200, id3=id3)
    path = store.archive.path_for("hq", DAY, "cdr-2", "mp3")
    stored = store.archive.write_verified(path, chunked(data, 1000), content_length=len(data))
    assert stored.content_type == "audio/mpeg"
    assert stored.duration_s == pytest.approx(200 * MP3_FRAME_LEN * 8 / 128_000, rel=0.02)
    assert store.read(path) == data


def test_truncated_stream_is_corrupt_and_leaves_no_file(store: Store) -> None:
    data = make_wav(seconds=2)
    path = store.archive.path_for("hq", DAY, "cdr-3", "wav")
    with pytest.raises(RecordingCorrupt, match="Content-Length"):
        store.archive.write_verified(path, chunked(data[:-100]), content_length=len(data))
    assert store.names() == []


def test_size_other_than_the_vendors_is_corrupt(store: Store) -> None:
    data = make_wav()
    path = store.archive.path_for("hq", DAY, "cdr-4", "wav")
    with pytest.raises(RecordingCorrupt, match="PBX said"):
        store.archive.write_verified(path, chunked(data), expected_bytes=len(data) + 1)
    assert store.names() == []


def test_truncated_wav_without_any_stated_size_is_caught_by_its_header(store: Store) -> None:
    data = make_wav(seconds=2)
    path = store.archive.path_for("hq", DAY, "cdr-5", "wav")
    with pytest.raises(RecordingCorrupt, match="WAV"):
        store.archive.write_verified(path, chunked(data[: len(data) // 2]))
    assert store.names() == []


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Link expired</body></html>",
        b'{"errcode": 10004, "errmsg": "DATA NOT FOUND"}',
        b"\x00" * 4096,
        b"",
        b"RIFF\x24\x00\x00\x00WAVEjunk",
        bytes([0xFF, 0xFB, 0x90, 0x00]) + b"\x00" * 500,  # one frame sync, then garbage
    ],
)
def test_garbage_is_not_archived(store: Store, body: bytes) -> None:
    path = store.archive.path_for("hq", DAY, "cdr-6", "wav")
    with pytest.raises(RecordingCorrupt):
        store.archive.write_verified(path, [body], content_length=len(body))
    assert store.names() == []


def test_a_corrupt_redownload_leaves_the_good_file_untouched(store: Store) -> None:
    good = make_wav(seconds=1)
    path = store.archive.path_for("hq", DAY, "cdr-7", "wav")
    stored = store.archive.write_verified(path, chunked(good), content_length=len(good))
    with pytest.raises(RecordingCorrupt):
        store.archive.write_verified(path, chunked(good[:-10]), content_length=len(good))
    with pytest.raises(RecordingCorrupt):
        store.archive.write_verified(path, [b"<html>expired</html>"])
    assert store.read(path) == good
    assert store.names() == [store._path(path)]
    assert store.archive.matches(path, stored.sha256, stored.bytes)


def test_a_stream_error_propagates_and_leaves_no_file(store: Store) -> None:
    data = make_wav()

    def broken() -> Iterator[bytes]:
        yield data[:1000]
        raise ConnectionResetError("peer reset")

    path = store.archive.path_for("hq", DAY, "cdr-8", "wav")
    with pytest.raises(ConnectionResetError):
        store.archive.write_verified(path, broken())
    assert store.names() == []


def test_matches_detects_a_flipped_byte_a_wrong_size_and_a_missing_file(store: Store) -> None:
    data = make_wav()
    path = store.archive.path_for("hq", DAY, "cdr-9", "wav")
    stored = store.archive.write_verified(path, chunked(data))
    assert store.archive.matches(path, stored.sha256, stored.bytes)
    assert not store.archive.matches(path, stored.sha256, stored.bytes + 1)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    store.overwrite(path, bytes(flipped))
    assert not store.archive.matches(path, stored.sha256, stored.bytes)
    missing = store.archive.path_for("hq", DAY, "nope", "wav")
    assert not store.archive.matches(missing, stored.sha256, stored.bytes)


@pytest.mark.parametrize(
    "cdr_id",
    ["../../etc/passwd", "a/b/c", "..", ".", "", "a\x00b", "通话-1", "x" * 1000, "/abs", "a\\b"],
)
def test_names_from_vendor_data_cannot_escape_the_root(store: Store, cdr_id: str) -> None:
    path = store.archive.path_for("hq", DAY, cdr_id, "../../wav")
    prefix = store.archive.root + "/hq/2026/03/08/"
    assert path.startswith(prefix)
    name = path[len(prefix) :]
    assert "/" not in name and "\x00" not in name and not name.startswith(".")
    assert name.endswith(".wav") and len(name) <= 130
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    data = make_wav(seconds=0.1)
    stored = store.archive.write_verified(path, [data])
    assert store.names() == [store._path(stored.uri)]


def test_distinct_ids_never_share_a_file() -> None:
    ids = ["a/b", "a_b", "a\\b", "a b", "..", "_.", "", "_", "x" * 200, "x" * 201]
    assert len({sanitize_component(i) for i in ids}) == len(ids)
    assert sanitize_component("1a2b-3c_4.d") == "1a2b-3c_4.d"  # ordinary ids stay as they are


def test_paths_outside_the_root_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="outside"):
        store.archive.write_verified(store.archive.root + "/../evil.wav", [make_wav()])
    with pytest.raises(ValueError, match="outside"):
        store.archive.write_verified(store.archive.root + "-sibling/x.wav", [make_wav()])


def test_detect_audio_reads_headers() -> None:
    assert detect_audio(make_wav()[:64]) == "wav"
    assert detect_audio(make_mp3(2)[:64]) == "mp3"
    assert detect_audio(make_mp3(2, id3=True)[:64]) == "mp3"
    assert detect_audio(b"<html>") is None
    assert detect_audio(b"\xff\xff\xff\xff") is None  # reserved/bad bitrate fields
    assert detect_audio(b"") is None


def test_wav_with_extra_chunks_and_streamed_size_is_accepted(tmp_path: Path) -> None:
    pcm = b"\x00\x01" * 8000  # 1 s of 8 kHz mono 16-bit
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"LIST"
        + struct.pack("<I", 3)
        + b"abc\x00"  # odd size, padded
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
        + pcm
    )
    data = b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + body
    archive = RecordingArchive(str(tmp_path))
    stored = archive.write_verified(archive.path_for("hq", DAY, "s", "wav"), [data])
    assert stored.duration_s == pytest.approx(1.0)


def test_a_large_recording_streams_with_flat_memory(tmp_path: Path) -> None:
    header = make_wav(seconds=0)[:44]
    size_pcm = 64 * 1024 * 1024
    header = header[:40] + struct.pack("<I", size_pcm)
    header = header[:4] + struct.pack("<I", 36 + size_pcm) + header[8:]
    chunk = b"\x00\x01" * 32768

    def body() -> Iterator[bytes]:
        yield header
        for _ in range(size_pcm // len(chunk)):
            yield bytes(chunk)

    archive = RecordingArchive(str(tmp_path))
    tracemalloc.start()
    try:
        stored = archive.write_verified(
            archive.path_for("hq", DAY, "big", "wav"), body(), content_length=44 + size_pcm
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.bytes == 44 + size_pcm
    assert stored.duration_s == pytest.approx(size_pcm / 16000)
    assert peak < 4 * 1024 * 1024


def test_archiving_sweeps_old_part_files_a_killed_download_left(tmp_path: Path) -> None:
    archive = RecordingArchive(str(tmp_path))
    path = archive.path_for("hq", date(2026, 6, 27), "call-1", "wav")
    directory = Path(path).parent
    directory.mkdir(parents=True)
    stale = directory / ".call-1.wav.0123abcd.part"
    stale.write_bytes(b"RIFF half")
    old = time.time() - STALE_TEMP_AGE_S - 60
    os.utime(stale, (old, old))
    archive.write_verified(path, chunked(make_wav(1)))
    assert not stale.exists() and Path(path).exists()
