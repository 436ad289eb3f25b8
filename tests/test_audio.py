"""Audio headers: which format bytes are, from their first bytes or a Content-Type."""

from __future__ import annotations

from cdr_assets.audio import announced_format, detect_audio
from tests.storage.helpers import make_mp3, make_wav


def test_announced_formats_come_from_the_media_type() -> None:
    assert announced_format("audio/mpeg") == "mp3"
    assert announced_format("Audio/X-WAV; charset=binary") == "wav"
    assert announced_format("application/octet-stream") is None
    assert announced_format(None) is None and announced_format("") is None


def test_detect_audio_reads_headers() -> None:
    assert detect_audio(make_wav()[:64]) == "wav"
    assert detect_audio(make_mp3(2)[:64]) == "mp3"
    assert detect_audio(make_mp3(2, id3=True)[:64]) == "mp3"
    assert detect_audio(b"<html>") is None
    assert detect_audio(b"\xff\xff\xff\xff") is None  # reserved/bad bitrate fields
    assert detect_audio(b"") is None
