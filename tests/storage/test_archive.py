"""RecordingArchive: verified atomic writes that store what the bytes are, corruption detection,
safe names and crash clean-up, on local disk and S3 alike."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import fsspec
import pytest

from cdr_assets.errors import RecordingCorrupt
from cdr_assets.storage import ArchivedFile
from cdr_assets.storage.archive import RecordingArchive, sanitize_component
from cdr_assets.storage.staging import STALE_TEMP_AGE_S, local_staging_dir
from tests.fixtures.s3 import S3Location
from tests.storage.helpers import MP3_FRAME_LEN, chunked, make_mp3, make_wav, run_probe

DAY = date(2026, 3, 8)


class Store:
    """An archive under test plus raw access to its backing store (local dir or S3 bucket)."""

    def __init__(self, root: str, storage_options: dict | None = None) -> None:
        self.archive = RecordingArchive(root, storage_options)
        self.archive_options = storage_options
        self.fs, self.root_path = fsspec.core.url_to_fs(root, **(storage_options or {}))

    def _path(self, uri: str) -> str:
        return self.fs._strip_protocol(uri)

    def read(self, uri: str) -> bytes:
        return self.fs.cat_file(self._path(uri))

    def overwrite(self, uri: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(uri), data)

    def write(self, cdr_id: str, data: bytes, **kwargs: Any) -> ArchivedFile:
        """Archive `data` (in 4 KiB chunks) as recording `cdr_id` of hq on DAY."""
        return self.archive.write_verified("hq", DAY, cdr_id, chunked(data), **kwargs)

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
    stored = store.write("cdr-1", data, content_length=len(data), expected_bytes=len(data))
    path = store.archive.path_for("hq", DAY, "cdr-1", "wav")
    assert stored.uri == path and path.endswith("/hq/2026/03/08/cdr-1.wav")
    assert stored.bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (stored.format, stored.content_type, stored.note) == ("wav", "audio/wav", None)
    assert stored.duration_s == pytest.approx(1.5)
    assert store.read(path) == data
    assert store.names() == [store._path(path)]
    assert store.archive.matches(stored.uri, stored.sha256, stored.bytes)


@pytest.mark.parametrize("id3", [False, True])
def test_mp3_frames_are_accepted_with_an_estimated_duration(store: Store, id3: bool) -> None:
    data = make_mp3(frames=200, id3=id3)
    stored = store.archive.write_verified(
        "hq", DAY, "cdr-2", chunked(data, 1000), content_length=len(data)
    )
    assert stored.uri.endswith("/hq/2026/03/08/cdr-2.mp3")
    assert (stored.format, stored.content_type) == ("mp3", "audio/mpeg")
    assert stored.duration_s == pytest.approx(200 * MP3_FRAME_LEN * 8 / 128_000, rel=0.02)
    assert store.read(stored.uri) == data


def test_an_mp3_announced_as_wav_is_stored_as_mp3_and_the_result_says_so(store: Store) -> None:
    data = make_mp3(frames=50)
    stored = store.write("cdr-x", data, content_length=len(data), announced_type="audio/x-wav")
    assert stored.uri == store.archive.path_for("hq", DAY, "cdr-x", "mp3")
    assert (stored.format, stored.content_type) == ("mp3", "audio/mpeg")
    assert stored.note is not None and "audio/x-wav" in stored.note and "MP3" in stored.note
    assert store.names() == [store._path(stored.uri)]


@pytest.mark.parametrize("announced", [None, "application/octet-stream", "audio/wav; q=1"])
def test_no_note_when_the_announcement_agrees_or_names_no_format(
    store: Store, announced: str | None
) -> None:
    stored = store.write("cdr-y", make_wav(), announced_type=announced)
    assert (stored.format, stored.note) == ("wav", None)


def test_a_recording_stored_under_another_extension_is_replaced_not_duplicated(
    store: Store,
) -> None:
    old = store.write("cdr-z", make_wav(seconds=1))
    new = store.write("cdr-z", make_mp3(frames=40))
    assert old.uri.endswith("cdr-z.wav") and new.uri.endswith("cdr-z.mp3")
    assert store.names() == [store._path(new.uri)]
    assert not store.archive.exists(old.uri) and store.archive.exists(new.uri)
    again = store.write("cdr-z", make_wav(seconds=2))  # and back again
    assert store.names() == [store._path(again.uri)] and again.uri == old.uri


def test_truncated_stream_is_corrupt_and_leaves_no_file(store: Store) -> None:
    data = make_wav(seconds=2)
    with pytest.raises(RecordingCorrupt, match="Content-Length"):
        store.write("cdr-3", data[:-100], content_length=len(data))
    assert store.names() == []


def test_size_other_than_the_vendors_without_content_length_is_corrupt(store: Store) -> None:
    data = make_wav()
    with pytest.raises(RecordingCorrupt, match="PBX said"):
        store.write("cdr-4", data, expected_bytes=len(data) + 1)
    assert store.names() == []


def test_size_other_than_the_vendors_but_as_content_length_said_is_stored_with_a_note(
    store: Store,
) -> None:
    data = make_wav(seconds=1)
    stored = store.write("cdr-4b", data, content_length=len(data), expected_bytes=len(data) + 7)
    assert stored.bytes == len(data) and store.read(stored.uri) == data
    assert stored.note is not None and str(len(data) + 7) in stored.note


def test_a_broken_header_is_corrupt_even_when_content_length_matches(store: Store) -> None:
    data = make_wav(seconds=2)[:-1000]  # the data chunk claims more than follows
    with pytest.raises(RecordingCorrupt, match="WAV"):
        store.write("cdr-4c", data, content_length=len(data), expected_bytes=len(data) + 1000)
    assert store.names() == []


def test_truncated_wav_without_any_stated_size_is_caught_by_its_header(store: Store) -> None:
    data = make_wav(seconds=2)
    with pytest.raises(RecordingCorrupt, match="WAV"):
        store.write("cdr-5", data[: len(data) // 2])
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
    with pytest.raises(RecordingCorrupt, match="cdr-6 of hq 2026-03-08"):
        store.archive.write_verified("hq", DAY, "cdr-6", [body], content_length=len(body))
    assert store.names() == []


def test_a_corrupt_redownload_leaves_the_good_file_untouched(store: Store) -> None:
    good = make_wav(seconds=1)
    stored = store.write("cdr-7", good, content_length=len(good))
    with pytest.raises(RecordingCorrupt):
        store.write("cdr-7", good[:-10], content_length=len(good))
    with pytest.raises(RecordingCorrupt):
        store.write("cdr-7", b"<html>expired</html>")
    assert store.read(stored.uri) == good
    assert store.names() == [store._path(stored.uri)]
    assert store.archive.matches(stored.uri, stored.sha256, stored.bytes)


def test_a_stream_error_propagates_and_leaves_no_file(store: Store) -> None:
    data = make_wav()

    def broken() -> Iterator[bytes]:
        yield data[:1000]
        raise ConnectionResetError("peer reset")

    with pytest.raises(ConnectionResetError):
        store.archive.write_verified("hq", DAY, "cdr-8", broken())
    assert store.names() == []


def test_matches_detects_a_flipped_byte_a_wrong_size_and_a_missing_file(store: Store) -> None:
    data = make_wav()
    stored = store.write("cdr-9", data)
    path = stored.uri
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
    stored = store.archive.write_verified("hq", DAY, cdr_id, [make_wav(seconds=0.1)])
    assert stored.uri == path
    assert store.names() == [store._path(stored.uri)]


def test_distinct_ids_never_share_a_file() -> None:
    ids = ["a/b", "a_b", "a\\b", "a b", "..", "_.", "", "_", "x" * 200, "x" * 201]
    assert len({sanitize_component(i) for i in ids}) == len(ids)
    assert sanitize_component("1a2b-3c_4.d") == "1a2b-3c_4.d"  # ordinary ids stay as they are


@pytest.mark.parametrize("pbx", ["../evil", "..", "/abs", ".staging"])
def test_a_hostile_pbx_name_stays_inside_the_root(store: Store, pbx: str) -> None:
    stored = store.archive.write_verified(pbx, DAY, "c1", [make_wav(seconds=0.1)])
    assert stored.uri.startswith(store.archive.root + "/")
    relative = stored.uri[len(store.archive.root) + 1 :]
    assert relative.split("/")[0] not in ("..", ".", "", ".staging")
    assert store.names() == [store._path(stored.uri)]


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
    stored = archive.write_verified("hq", DAY, "s", [data])
    assert stored.duration_s == pytest.approx(1.0)


_LARGE_RECORDING = textwrap.dedent(
    """
    import struct, sys, tracemalloc
    from datetime import date
    from cdr_assets.storage.archive import RecordingArchive
    from tests.storage.helpers import make_wav

    size_pcm = 64 * 1024 * 1024
    header = make_wav(seconds=0)[:44]
    header = header[:40] + struct.pack("<I", size_pcm)
    header = header[:4] + struct.pack("<I", 36 + size_pcm) + header[8:]
    chunk = b"\\x00\\x01" * 32768

    def body():
        yield header
        for _ in range(size_pcm // len(chunk)):
            yield bytes(chunk)

    archive = RecordingArchive(sys.argv[1])
    tracemalloc.start()
    size = 44 + size_pcm
    stored = archive.write_verified("hq", date(2026, 3, 8), "big", body(), content_length=size)
    _, peak = tracemalloc.get_traced_memory()
    print(stored.bytes, stored.duration_s, peak)
    """
)


def test_a_large_recording_streams_with_flat_memory(tmp_path: Path) -> None:
    """A 64 MiB recording, measured in a process of its own: tracemalloc counts every thread's
    allocations, and a test process also runs other tests' servers."""
    out = run_probe(_LARGE_RECORDING, str(tmp_path))
    size_pcm = 64 * 1024 * 1024
    assert (int(out[0]), float(out[1])) == (44 + size_pcm, pytest.approx(size_pcm / 16000))
    assert int(out[2]) < 4 * 1024 * 1024, f"Python peak {int(out[2]) / 2**20:.1f} MiB"


def test_old_part_files_of_the_older_naming_are_swept_by_age(tmp_path: Path) -> None:
    archive = RecordingArchive(str(tmp_path))
    day = date(2026, 6, 27)
    directory = Path(archive.path_for("hq", day, "call-1", "wav")).parent
    directory.mkdir(parents=True)
    stale = directory / ".call-1.wav.0123abcd.part"
    young = directory / ".call-2.wav.4567cdef.part"  # may be a running older version's
    for leftover in (stale, young):
        leftover.write_bytes(b"RIFF half")
    old = time.time() - STALE_TEMP_AGE_S - 60
    os.utime(stale, (old, old))
    stored = archive.write_verified("hq", day, "call-1", chunked(make_wav(1)))
    assert not stale.exists() and young.exists() and Path(stored.uri).exists()


_KILLED_DOWNLOAD = textwrap.dedent(
    """
    import json, sys, time
    from datetime import date
    from cdr_assets.storage.archive import RecordingArchive
    from tests.storage.helpers import make_wav

    def body():
        yield make_wav(seconds=1)[:2000]
        print("streaming", flush=True)
        time.sleep(600)  # a download stalled mid-body, then killed

    archive = RecordingArchive(sys.argv[1], json.loads(sys.argv[2]))
    archive.write_verified("hq", date(2026, 3, 8), "killed", body())
    """
)


def test_a_killed_download_leaves_nothing_once_that_day_is_archived_again(store: Store) -> None:
    options = store.archive_options
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_DOWNLOAD, store.archive.root, json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "streaming"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    if options is None:  # built in the archive's own staging area, same filesystem
        staging = Path(store.archive.root) / ".staging"
        (leftover,) = staging.rglob(f"*.{proc.pid}.*.part")
        assert leftover.parent == staging / "hq" / "2026" / "03" / "08"
    else:  # built locally, verified, then uploaded: the bucket never saw a byte
        (leftover,) = Path(local_staging_dir()).glob(f"*.{proc.pid}.*.part")
        assert store.names() == []
    other_day = store.archive.write_verified("hq", date(2026, 3, 9), "other", [make_wav(0.1)])
    if options is None:
        assert leftover.exists()  # another day's clean-up leaves this day alone
    stored = RecordingArchive(store.archive.root, options).write_verified(
        "hq", DAY, "next", [make_wav(0.1)]
    )
    assert not leftover.exists()
    assert store.names() == sorted(store._path(f.uri) for f in (other_day, stored))


def test_concurrent_downloads_of_one_day_all_land_and_leave_no_staging(tmp_path: Path) -> None:
    archive = RecordingArchive(str(tmp_path))
    data = make_wav(seconds=0.05)
    with ThreadPoolExecutor(8) as pool:
        stored = list(
            pool.map(lambda i: archive.write_verified("hq", DAY, f"c{i}", chunked(data)), range(64))
        )
    assert all(Path(s.uri).read_bytes() == data for s in stored)
    assert len({s.uri for s in stored}) == 64
    assert not (tmp_path / ".staging").exists()
