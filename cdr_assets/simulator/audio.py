"""Recording bytes: playable WAV (8 kHz mono 16-bit PCM) and MP3-shaped frames, streamed.

Owns the audio format only: a deterministic per-call tone, the 44-byte RIFF header and chunked
generation whose cost does not grow with memory (a 200 MB recording streams at memory speed).
It must not know HTTP, links or faults.
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
from array import array
from collections.abc import Iterator
from functools import lru_cache

SAMPLE_RATE = 8000
BYTES_PER_SECOND = SAMPLE_RATE * 2  # mono, 16-bit
WAV_HEADER_SIZE = 44
CHUNK_SIZE = 64 * 1024

# MPEG-1 Layer III, 128 kbps, 44.1 kHz, no padding, joint stereo: 417-byte frames, 1152 samples.
MP3_FRAME_HEADER = b"\xff\xfb\x90\x64"
MP3_FRAME_SIZE = 417
MP3_FRAMES_PER_SECOND = 44100 / 1152
_MP3_FRAME = MP3_FRAME_HEADER + bytes(MP3_FRAME_SIZE - 4)  # zero side info: silence
_MP3_BLOCK_FRAMES = 157  # ~64 KiB per chunk

CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


def wav_size(seconds: int) -> int:
    return WAV_HEADER_SIZE + seconds * BYTES_PER_SECOND


def mp3_frames(seconds: int) -> int:
    return math.ceil(seconds * MP3_FRAMES_PER_SECOND)


def audio_size(fmt: str, seconds: int) -> int:
    """Exact byte count of a recording of `seconds` in format `fmt` ("wav" or "mp3")."""
    return wav_size(seconds) if fmt == "wav" else mp3_frames(seconds) * MP3_FRAME_SIZE


def wav_header(data_bytes: int) -> bytes:
    """Canonical 44-byte RIFF/WAVE header for 8 kHz mono 16-bit PCM."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        SAMPLE_RATE,
        BYTES_PER_SECOND,
        2,
        16,
        b"data",
        data_bytes,
    )


@lru_cache(maxsize=64)
def _tone_two_seconds(key: str) -> bytes:
    """Two identical seconds of a per-call two-tone signal (so any 1 s window is one slice)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    f1 = 220 + digest[0] * 3  # Hz, integral: exactly periodic within one second
    f2 = 440 + digest[1] * 4
    amp = 3000 + digest[2] * 30
    w1, w2 = 2 * math.pi * f1 / SAMPLE_RATE, 2 * math.pi * f2 / SAMPLE_RATE
    samples = array(
        "h", (int(amp * math.sin(w1 * t) + amp / 3 * math.sin(w2 * t)) for t in range(SAMPLE_RATE))
    )
    if sys.byteorder == "big":
        samples.byteswap()
    one = samples.tobytes()
    return one + one


def iter_wav(key: str, seconds: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The WAV file for `key` in chunks of about chunk_size bytes.

    Second s is the call's tone rotated by a per-second phase step: cheap (one slice per
    second) yet not a byte-identical loop.
    """
    two = memoryview(_tone_two_seconds(key))
    parts: list = [wav_header(seconds * BYTES_PER_SECOND)]
    pending = WAV_HEADER_SIZE
    for s in range(seconds):
        off = ((s * 2477) % SAMPLE_RATE) * 2
        parts.append(two[off : off + BYTES_PER_SECOND])
        pending += BYTES_PER_SECOND
        if pending >= chunk_size:
            yield b"".join(parts)
            parts.clear()
            pending = 0
    if parts:
        yield b"".join(parts)


def iter_mp3(seconds: int) -> Iterator[bytes]:
    """An MP3-shaped stream: valid frame headers with silent (zero) side info."""
    frames = mp3_frames(seconds)
    block = _MP3_FRAME * _MP3_BLOCK_FRAMES
    full, rest = divmod(frames, _MP3_BLOCK_FRAMES)
    for _ in range(full):
        yield block
    if rest:
        yield _MP3_FRAME * rest


def iter_audio(fmt: str, key: str, seconds: int) -> Iterator[bytes]:
    return iter_wav(key, seconds) if fmt == "wav" else iter_mp3(seconds)


def corrupt(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Same length, but the first 44 bytes are garbage (no RIFF, ID3 or frame sync)."""
    first = True
    for chunk in chunks:
        if first and chunk:
            n = min(WAV_HEADER_SIZE, len(chunk))
            chunk = (b"GARBAGE!" * 6)[:n] + chunk[n:]
            first = False
        yield chunk
