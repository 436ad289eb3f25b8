"""Audio file headers: which format a recording's bytes are (WAV or MP3), whether the header is
plausible for the file's size, and its duration.

Neutral ground for the vendor clients (which sniff the first bytes of a download to learn the
PBX's download format) and the archive (which verifies a whole file before it is kept). Knows
bytes and open binary files, not HTTP, vendors or where files live.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from cdr_assets.errors import RecordingCorrupt

CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
"""Stored format (= file extension) -> the MIME type recorded for it."""
ANNOUNCED_FORMATS = {
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mpeg3": "mp3",
    "audio/x-mpeg-3": "mp3",
    "audio/x-mp3": "mp3",
}
"""Content-Type media types that announce a format (others, e.g. octet-stream, announce none)."""

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


def announced_format(content_type: str | None) -> str | None:
    """'wav'/'mp3' when a Content-Type names one of them, else None (absent, octet-stream)."""
    if not content_type:
        return None
    return ANNOUNCED_FORMATS.get(content_type.split(";", 1)[0].strip().lower())


def inspect_audio(fh: BinaryIO, size: int) -> tuple[str, float | None]:
    """(format, duration_s) of an open file, or RecordingCorrupt when it is not plausible audio."""
    kind = detect_audio(_read_at(fh, 0, 64))
    if kind == "wav":
        return kind, _inspect_wav(fh, size)
    if kind == "mp3":
        return kind, _inspect_mp3(fh, size)
    raise RecordingCorrupt("content is neither WAV nor MP3 (unrecognised header)")
